"""The documentation: README.md is a front door of at most 200 lines without commit revisions, every relative link in
README.md and docs/ reaches a file (and a heading, where it names one), and docs/configuration.md is what
`cpm.config_reference` generates from the dataclasses in cpm/config.py, with a description for every key."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from cpm import config_reference
from cpm.config import Config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)\)")


def test_the_configuration_reference_is_up_to_date():
    page = (ROOT / config_reference.PAGE).read_text(encoding="utf-8")
    assert page == config_reference.render(), (
        "docs/configuration.md is out of date with cpm/config.py: run `make docs` and commit the page")


def test_every_config_key_has_a_description_in_cpm_config():
    missing = config_reference.undocumented()
    assert not missing, ("keys without a comment in cpm/config.py (a comment above the field or at the end of its "
                         f"line describes it in docs/configuration.md): {', '.join(missing)}")


def test_the_reference_holds_every_key_of_the_config_with_its_default():
    def flatten(table: dict, prefix: str) -> dict[str, object]:
        keys = {}
        for key, value in table.items():
            keys[f"{prefix}{key}"] = value
            if isinstance(value, dict):
                keys.update(flatten(value, f"{prefix}{key}."))
        return keys

    expected = flatten(dataclasses.asdict(Config()), "")
    expected = {key: value for key, value in expected.items() if "." in key}  # the sections are headings
    rows = {key.name: key for key in config_reference.all_keys()}
    assert set(rows) == set(expected)
    for name, value in expected.items():
        assert rows[name].default == config_reference.toml(value), name
    assert rows["model.stages"].allowed == "1 to 6" and rows["train.epochs"].allowed == ">= 1"
    assert rows["train.amp"].allowed == "`auto`, `bf16`, `fp16`, `off`"
    assert rows["data.depth"].type == "table" and rows["data.scale_range"].type == "list[float]"
    page = config_reference.render()
    for heading in ("## [data]", "## [data.depth]", "## [data.pose_mix]", "## [model]", "## [train]", "## [eval]",
                    "## [skeleton]"):
        assert f"\n{heading}\n" in page


def test_descriptions_are_the_comments_above_and_beside_each_field(tmp_path, monkeypatch):
    source = tmp_path / "documented_settings.py"
    source.write_text('''
from dataclasses import dataclass, field


@dataclass
class Settings:
    """Settings of a test.

    Second paragraph."""

    plain: int = 1  # beside the field
    # above the field,
    # over two lines
    above: str = "x"
    # above
    both: float = 0.5  # and beside, with a | bar and <angle>

    spread: list[int] = field(
        default_factory=lambda: [1, 2],  # beside a line of a field written over several
    )
    bare: bool = False
''', encoding="utf-8")
    spec = importlib.util.spec_from_file_location("documented_settings", source)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "documented_settings", module)
    spec.loader.exec_module(module)
    assert config_reference.field_descriptions(module.Settings) == {
        "plain": "beside the field",
        "above": "above the field, over two lines",
        "both": "above and beside, with a | bar and <angle>",
        "spread": "beside a line of a field written over several",
        "bare": "",
    }
    assert config_reference.class_text(module.Settings) == "Settings of a test.\n\nSecond paragraph."
    rows = {key.name: key for key in config_reference.keys(module.Settings, "test")}
    assert rows["test.spread"].type == "list[int]" and rows["test.spread"].default == "[1, 2]"
    assert rows["test.above"].default == '"x"' and rows["test.bare"].default == "false"
    assert config_reference._cell(rows["test.both"].description) == "above and beside, with a \\| bar and &lt;angle&gt;"


def test_the_generator_writes_the_page_it_renders(tmp_path, capsys):
    out = tmp_path / "configuration.md"
    assert config_reference.main(["--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == config_reference.render()
    assert config_reference.main([]) == 0
    assert capsys.readouterr().out == config_reference.render()


def test_readme_is_a_front_door_of_at_most_200_lines():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: move the detail into docs/ and link to it"


def test_readme_names_no_commit_revisions():
    text = README.read_text(encoding="utf-8")
    revisions = [word for word in re.findall(r"\b[0-9a-f]{7,40}\b", text)
                 if re.search(r"\d", word) and re.search(r"[a-f]", word)]
    assert not revisions, f"README.md names revisions {revisions}: results records in experiments/results/ hold them"


def _without_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown page's headings (lowercase, punctuation dropped, spaces as hyphens; a repeated
    heading gets -1, -2, ...)."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", _without_code(page.read_text(encoding="utf-8")), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_reaches_a_file_and_its_heading(page):
    broken = []
    for match in LINK.finditer(_without_code(page.read_text(encoding="utf-8"))):
        target = match.group(1)
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target} (no heading #{anchor} in {file.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {', '.join(broken)}"

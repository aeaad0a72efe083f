"""The end of ``cpm train``: the per-stage table per pose source (procedural, held-out mocap subjects, K2HPD test)
of a synthetic-data run, on at most `TRAIN_END_FRAMES` held-out frames each, a note for each source skipped, and
``--no-pose-sources`` to leave it out."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from cpm.cli import main
from cpm.cli.eval import TRAIN_END_FRAMES, pose_sources_after_training
from tests.helpers import POSE_SOURCES, tiny_overrides

PROCEDURAL = str(Path(__file__).resolve().parents[1] / "experiments" / "procedural.toml")  # no pose mixture


def train(tmp_path, *arguments: str, sets: tuple[str, ...] = (), config: str | None = None) -> int:
    """A tiny run of ``config`` (make train's, experiments/default.toml, when None)."""
    overrides = [*tiny_overrides(tmp_path), *sets]
    return main(["train", *([config] if config else []), "--no-progress",
                 *sum((["--set", s] for s in overrides), []), *arguments])


def stage_rows(text: str, title: str) -> list[str]:
    """The rows of the per-stage table that follows ``title`` in ``text``."""
    after = text.split(title, 1)[1]
    return re.findall(r"^\| \d+ \|.*\|$", after.split("held-out samples", 1)[0], flags=re.MULTILINE)


def test_train_ends_with_a_table_per_pose_source(tmp_path, shared_data, capsys):
    assert train(tmp_path, "--pose-sources", str(shared_data), config=PROCEDURAL) == 0
    printed = capsys.readouterr().out
    run_dir = tmp_path / "runs" / "tiny"
    assert f"Per-stage PCK per pose source ({run_dir / 'best.pt'}), each on its 16 held-out frames:" in printed
    for source in ("procedural:", "mocap held-out subjects (", "K2HPD test ("):
        assert f"\n{source}" in printed
    # one epoch: best.pt is the model of the held-out table, and the procedural frames are the run's held-out frames
    held_out = stage_rows(printed, "Per-stage PCK on the held-out split")
    assert len(held_out) == 4 and stage_rows(printed, "\nprocedural:") == held_out
    final = {line.split(" | ")[0][2:]: line for line in printed.splitlines()
             if line.startswith("| ") and not line.startswith(("| stage", "| pose source"))
             and not line[2].isdigit()}
    assert list(final) == POSE_SOURCES
    assert final["procedural"].split(" | ")[1:] == held_out[-1].split(" | ")[1:]
    # the same numbers as cpm eval --pose-sources of best.pt
    assert main(["eval", str(run_dir / "best.pt"), "--json", "--no-progress", "--pose-sources", str(shared_data)]) == 0
    sources = json.loads(capsys.readouterr().out)["sources"]
    for name, result in sources.items():
        assert final[name] == (f"| {name} | {100 * result['pck']['0.1'][-1]:.2f} | "
                               f"{100 * result['pck']['0.2'][-1]:.2f} |")


def test_train_says_which_source_it_skipped_and_why(tmp_path, capsys):
    empty = tmp_path / "data"
    (empty / "mocap" / "cmu").mkdir(parents=True)
    assert train(tmp_path, "--pose-sources", str(empty)) == 0
    printed = capsys.readouterr().out
    assert printed.rstrip().splitlines()[-4:] == [
        f"pose sources: mocap held-out subjects: skipped, no .bvh clips in {empty / 'mocap' / 'cmu'}",
        f"pose sources: K2HPD test: skipped, no {empty / 'k2hpd' / 'k2hpd_keypoints_test.mat'}",
        f"pose sources: LSP test poses: skipped, no {empty / 'lsp' / 'lsp-joints-PC.mat'}",
        f"pose sources: MPII validation poses: skipped, no {empty / 'mpii' / 'tompson_valid_detections.mat'}"]
    assert "per pose source" not in printed  # the procedural frames alone: the held-out table says it


def test_no_pose_sources_ends_with_the_held_out_table(tmp_path, capsys):
    assert train(tmp_path, "--no-pose-sources") == 0
    printed = capsys.readouterr().out
    assert "pose source" not in printed
    assert printed.rstrip().endswith("16 held-out samples, torso-normalised PCK in %")


def test_a_missing_data_folder_is_refused_before_training(tmp_path, capsys):
    assert train(tmp_path, "--pose-sources", str(tmp_path / "nowhere")) == 2
    assert capsys.readouterr().err.strip() == f"cpm train: error: --pose-sources {tmp_path / 'nowhere'}: no such folder"
    assert not (tmp_path / "runs").exists()
    with pytest.raises(SystemExit):  # one or the other
        main(["train", "--pose-sources", str(tmp_path), "--no-pose-sources"])


def test_at_most_a_few_hundred_frames_per_source(tmp_path, shared_data):
    assert TRAIN_END_FRAMES == 500  # make train's whole held-out split per source (data.val_samples)
    assert train(tmp_path, "--no-pose-sources", sets=("data.val_samples=12",)) == 0
    text = pose_sources_after_training(tmp_path / "runs" / "tiny", str(shared_data), frames=5, progress=False)
    checkpoint = tmp_path / "runs" / "tiny" / "best.pt"
    assert (f"({checkpoint}), each on the first 5 of its 12 held-out frames; `cpm eval {checkpoint} --pose-sources` "
            "measures them all:") in text
    assert text.count("\n5 held-out samples, torso-normalised PCK in %") == 5
    assert "12 held-out samples" not in text


def test_a_run_on_a_real_dataset_prints_nothing_about_pose_sources(tmp_path):
    import torch

    from cpm.config import load_config
    from cpm.runtime.checkpoint import save_checkpoint

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    config = load_config(None, ['data.source="lsp"', f'data.root="{tmp_path}"'])
    save_checkpoint({"model": {"w": torch.zeros(1)}, "config": config.to_dict()}, run_dir / "last.pt")
    assert pose_sources_after_training(run_dir, str(tmp_path)) == ""


def test_missing_pose_files_give_their_weight_to_the_procedural_prior_in_one_line_each(tmp_path, shared_data):
    from cpm.config import load_config
    from cpm.data.synthetic.sources import drop_missing_pose_files

    bank = shared_data / "k2hpd" / "k2hpd_keypoints_train.mat"
    mix = ["data.pose_mix.procedural=0.5", "data.pose_mix.bvh=0.25", "data.pose_mix.bank=0.25",
           f"data.bvh_files='{tmp_path / 'nowhere'}'", f"data.bank_files='{bank}'"]
    said: list[str] = []
    strict = load_config(None, mix)
    assert drop_missing_pose_files(strict, said.append) is strict and said == []  # "error": the dataset says it
    config = drop_missing_pose_files(load_config(None, [*mix, "data.missing_pose_files='procedural'"]), said.append)
    assert said == [f"data.pose_mix.bvh: {tmp_path / 'nowhere'} is not there; its weight 0.25 goes to the procedural "
                    "prior (data.missing_pose_files = 'procedural')"]
    assert (config.data.pose_mix.procedural, config.data.pose_mix.bvh, config.data.pose_mix.bank) == (0.75, 0, 0.25)
    assert config.data.bvh_files == "" and config.data.bank_files == str(bank)
    # nothing there: the plain procedural stream, the make-train data of a machine without ../shared/data
    said.clear()
    gone = [*mix[:3], f"data.bvh_files='{tmp_path / 'a'}'", f"data.bank_files='{tmp_path / 'b_train.mat'}'",
            "data.missing_pose_files='procedural'"]
    config = drop_missing_pose_files(load_config(None, gone), said.append)
    assert len(said) == 2 and config.data == load_config(None, ["data.missing_pose_files='procedural'"]).data


def test_a_run_without_the_pose_files_trains_on_what_is_there_and_saves_that_mixture(tmp_path, capsys):
    from cpm.config import load_config

    sets = ("data.pose_mix.procedural=0.5", "data.pose_mix.bvh=0.5", f"data.bvh_files='{tmp_path / 'nowhere'}'",
            "data.missing_pose_files='procedural'")
    assert train(tmp_path, "--no-pose-sources", sets=sets) == 0
    assert "data.pose_mix.bvh: " in capsys.readouterr().out
    saved = load_config(tmp_path / "runs" / "tiny" / "config.toml")
    assert (saved.data.pose_mix.bvh, saved.data.bvh_files) == (0, "")
    # the default of config.py (not of make train's config), "error": one line naming the key
    assert train(tmp_path, "--no-pose-sources", sets=sets[:3], config=PROCEDURAL) == 2
    assert "data.bvh_files" in capsys.readouterr().err


def test_the_entry_points_outside_training_draw_what_is_there_once(tmp_path, capsys):
    """`build_datasets` builds a config as it stands; an entry point that reads a config (``cpm rf`` here; ``cpm
    eval``, the benchmarks, the notebooks) first gives a missing source's weight to the procedural prior, in one line
    on stderr, as training does, in a folder without ../shared/data."""
    from cpm.config import ConfigError, load_config
    from cpm.data.synthetic.sources import drop_missing_pose_files
    from cpm.evaluation.receptive_field import receptive_field_report
    from cpm.runtime.build import build_datasets

    sets = ["data.pose_mix.procedural=0.5", "data.pose_mix.bvh=0.5", f"data.bvh_files='{tmp_path / 'nowhere'}'",
            "data.val_samples=2", "data.train_samples=2"]
    said = [f"data.pose_mix.bvh: {tmp_path / 'nowhere'} is not there; its weight 0.5 goes to the procedural prior "
            "(data.missing_pose_files = 'procedural')"]
    config = load_config(None, [*sets, "data.missing_pose_files='procedural'"])
    with pytest.raises(ConfigError, match="data.bvh_files"):
        build_datasets(config)  # the config as it stands
    _, val_set = build_datasets(drop_missing_pose_files(config))
    assert capsys.readouterr().err.splitlines() == said
    _, plain = build_datasets(load_config(None, ["data.val_samples=2", "data.train_samples=2"]))
    assert torch.equal(val_set[1]["image"], plain[1]["image"])  # all procedural: the default stream's frames
    tiny = [s for s in tiny_overrides(tmp_path) if not s.startswith(("data.val_samples", "data.train_samples"))]
    table = receptive_field_report(None, [*sets, *tiny, "data.missing_pose_files='procedural'"], samples=1)
    assert "| stage |" in table and capsys.readouterr().err.splitlines() == said
    strict = load_config(None, sets)  # the default, "error": nothing is dropped, the dataset names the key
    assert drop_missing_pose_files(strict) is strict
    with pytest.raises(ConfigError, match="data.bvh_files"):
        build_datasets(strict)

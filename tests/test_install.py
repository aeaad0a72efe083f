"""Install: a distribution name free on the package index that still gives `import cpm` and the `cpm` command;
runtime dependencies apart from the extras; `cpm --version`; `make help`; `make train` installs only what training
needs while `make test` installs '.[dev]'."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

import cpm
from cpm.cli import main

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGE_LISTS = Path("/work/.library/env/packages/pypi.tsv")  # what the index holds, where this machine has it


def test_the_distribution_keeps_the_import_and_the_command_under_a_free_name():
    project = PYPROJECT["project"]
    assert project["name"] == "cpm-pose"
    assert project["scripts"] == {"cpm": "cpm.cli:main"}
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "cpm.__version__"}
    if PACKAGE_LISTS.is_file():  # the name is not on the index; "cpm" is (another project)
        names = subprocess.run(["cut", "-f1", str(PACKAGE_LISTS)], capture_output=True, text=True, check=True).stdout
        normalised = {re.sub(r"[-_.]+", "-", name.lower()) for name in names.splitlines()}
        assert "cpm" in normalised and "cpm-pose" not in normalised


def test_runtime_dependencies_train_and_predict_and_the_extras_hold_the_rest():
    project = PYPROJECT["project"]
    runtime = {re.split(r"[<>=\[ ]", d)[0] for d in project["dependencies"]}
    assert {"torch", "torchvision", "numpy", "opencv-python-headless", "scipy", "tensorboard", "tqdm",
            "matplotlib", "pycocotools"} == runtime
    assert "pycocotools==2.0.11" in project["dependencies"]  # COCO keypoint AP: pinned, the number is its
    extras = project["optional-dependencies"]
    assert {"onnx", "notebooks", "itop", "dev"} <= set(extras)
    assert [d.split(">")[0] for d in extras["itop"]] == ["h5py"]
    assert "onnxruntime>=1.18" in extras["onnx"]
    (own,) = [d for d in extras["dev"] if d.startswith("cpm-pose[")]  # dev: the tools and every other extra
    assert set(own[len("cpm-pose["):-1].split(",")) == set(extras) - {"dev"}
    assert not runtime & {"onnx", "onnxruntime", "hypothesis", "pytest", "nbclient", "h5py"}


def test_cpm_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"cpm {cpm.__version__}"
    assert re.fullmatch(r"\d+\.\d+\.\d+", cpm.__version__)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_help_lists_every_target_on_one_line():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    phony = set()
    for block in re.findall(r"^\.PHONY:((?:.*\\\n)*.*)$", makefile, flags=re.M):
        phony |= set(block.replace("\\\n", " ").split())
    result = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True)
    lines = result.stdout.splitlines()
    listed = [line.split()[1] for line in lines]
    assert sorted(listed) == sorted(phony), set(listed) ^ phony
    assert all(len(line.split(None, 2)) == 3 for line in lines)  # every target has its line of text
    plain = subprocess.run(["make", "-s"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert plain.stdout == result.stdout  # `make` alone prints the same list


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_train_installs_only_what_training_needs_and_make_test_the_dev_tools(tmp_path):
    def dry_run(target: str) -> str:
        return subprocess.run(["make", "-n", "-B", target, f"VENV={tmp_path / 'venv'}"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout

    train = dry_run("train")
    assert re.search(r"pip install .*-e \.$", train, flags=re.M) and "[dev]" not in train
    assert "cpm train experiments/default.toml" in train
    assert "-e '.[dev]'" in dry_run("test")
    assert "-e '.[onnx]'" in dry_run("bench") and "[dev]" not in dry_run("bench")


def test_a_built_wheel_is_cpm_pose_with_import_cpm_and_the_extras(tmp_path):
    """Build the wheel from a copy of the sources (no downloads: the installed setuptools) and read its metadata."""
    source = tmp_path / "src"
    shutil.copytree(ROOT / "cpm", source / "cpm", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                            str(tmp_path / "dist"), str(source)], capture_output=True, text=True)
    if build.returncode and "No module named" in build.stderr:
        pytest.skip(f"cannot build wheels here: {build.stderr.strip().splitlines()[-1]}")
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    assert wheel.name.startswith(f"cpm_pose-{cpm.__version__}-")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(info).decode()
        entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert "cpm/__init__.py" in names and "cpm/inference/predictor.py" in names
    assert "Name: cpm-pose" in metadata and f"Version: {cpm.__version__}" in metadata
    for extra in PYPROJECT["project"]["optional-dependencies"]:
        assert f"Provides-Extra: {extra}" in metadata
    assert 'Requires-Dist: h5py>=3.8; extra == "itop"' in metadata
    assert "cpm = cpm.cli:main" in entry_points

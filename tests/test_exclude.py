"""``data.exclude``: a `cpm data check` CSV or a plain list of sample indices / image paths leaves samples out
of a real dataset, through `build_datasets`; bad lists end in one line naming the key and the file."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cpm.cli import main
from cpm.config import load_config
from cpm.data.datasets.exclude import read_exclude_list
from cpm.data.datasets.readers import split_dataset
from cpm.data.quality.cleaning import write_flags
from cpm.errors import ConfigError
from cpm.runtime.build import build_datasets
from tests.helpers import tiny_overrides

IMAGES = 8  # im0.png .. im7.png; with data.val_samples = 3, indices 0-4 train and 5-7 are held out


def make_dataset(root, names=None, list_name="list.csv"):
    """A 15-joint CSV list under ``root`` with images in ``root/images``; joint j of sample n at (10 + j, 20 + n)."""
    names = names or [f"im{n}.png" for n in range(IMAGES)]
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for n, name in enumerate(names):
        cv2.imwrite(str(root / "images" / name), np.full((40, 50, 3), 10 * n, np.uint8))
        rows.append(",".join([name] + [f"{10 + j},{20 + n},2" for j in range(15)]))
    (root / list_name).write_text("\n".join(rows) + "\n")
    return root


def split(root, exclude, **kwargs):
    kwargs = {"source": "list", "annotations": "list.csv", "val_samples": 3, "skeleton": "itop15", **kwargs}
    train, val = split_dataset(root=root, exclude=exclude, **kwargs)
    return train.indices, val.indices


def test_the_csv_that_data_check_writes_drops_its_indices_from_training_and_held_out(tmp_path):
    root = make_dataset(tmp_path / "data")
    images = [str((root / "images" / f"im{n}.png").resolve()) for n in range(IMAGES)]  # as cpm data check names them
    flags = [{}] * IMAGES
    flags[1], flags[6] = {"swap": "left_knee<->right_knee"}, {"nan": "head"}
    assert write_flags(tmp_path / "flags.csv", flags, images) == 2
    assert [(e.index, e.image) for e in read_exclude_list(tmp_path / "flags.csv")] == [(1, images[1]), (6, images[6])]
    assert split(root, tmp_path / "flags.csv") == ([0, 2, 3, 4], [5, 7])  # the split is made before excluding
    assert split(root, "") == ([0, 1, 2, 3, 4], [5, 6, 7])

    # The same through the config key and the training entry point (no training is run).
    config = load_config(None, tiny_overrides(tmp_path, **{
        "data.source": "list", "data.root": str(root), "data.annotations": "list.csv", "data.val_samples": 3,
        "data.exclude": str(tmp_path / "flags.csv")}))
    train_set, val_set = build_datasets(config)
    assert train_set.source.indices == [0, 2, 3, 4] and len(train_set) == 4
    assert val_set.source.indices == [5, 7]
    kept = train_set.source[1]
    assert kept["index"] == 2 and kept["keypoints"][0, 1] == 22  # sample 2's own label


def test_a_moved_dataset_still_matches_the_csv_images(tmp_path):
    root = make_dataset(tmp_path / "moved")
    (tmp_path / "flags.csv").write_text("index,image,reasons,details\n3,/old/place/images/im3.png,bone,bone:x\n")
    assert split(root, tmp_path / "flags.csv") == ([0, 1, 2, 4], [5, 6, 7])


def test_a_plain_list_of_indices_and_image_paths(tmp_path):
    root = make_dataset(tmp_path / "data")
    (tmp_path / "bad.txt").write_text(
        "# labels to leave out\n"
        "\n"
        "3\n"
        "im0.png\n"  # relative to the images folder
        "  images/im5.png  \n"  # relative to data.root, spaces around
        f"{(root / 'images' / 'im7.png').resolve()}\n"  # absolute
    )
    entries = read_exclude_list(tmp_path / "bad.txt")
    assert [(e.line, e.index, e.image) for e in entries] == [
        (3, 3, ""), (4, None, "im0.png"), (5, None, "images/im5.png"),
        (6, None, str((root / "images" / "im7.png").resolve()))]
    assert split(root, tmp_path / "bad.txt") == ([1, 2, 4], [6])


def test_image_paths_also_leave_out_samples_of_the_held_out_file_and_indices_count_the_training_file(tmp_path):
    root = make_dataset(tmp_path / "data")
    make_dataset(root, names=["v0.png", "v1.png", "v2.png"], list_name="val.csv")
    (tmp_path / "bad.txt").write_text("v1.png\n2\n")
    assert split(root, tmp_path / "bad.txt", val_annotations="val.csv") == ([0, 1, 3, 4, 5, 6, 7], [0, 2])


def test_an_image_path_drops_every_sample_of_that_image(tmp_path):
    root = make_dataset(tmp_path / "data", names=["a.png", "b.png", "a.png", "c.png", "d.png", "e.png"])
    (tmp_path / "bad.txt").write_text("a.png\n")
    assert split(root, tmp_path / "bad.txt", val_samples=2) == ([1, 3], [4, 5])


@pytest.mark.parametrize("case, text, message", [
    ("missing", None, "no such file"),
    ("past_the_end", "1\n8\n", "line 2: index 8 matches no sample (8 samples in the dataset, 0..7)"),
    ("negative", "-1\n", "line 1: -1 is not a sample index"),
    ("no_such_image", "im1.png\nnowhere.png\n", "line 2: image 'nowhere.png' matches no sample"),
    ("csv_index", "index,image\n1,\nx,im1.png\n", "line 3: index 'x' is not a sample index"),
    ("csv_other_dataset", "index,image,reasons,details\n2,/data/images/im4.png,nan,nan:head\n",
     "line 2: sample 2 is"),
    ("everything", "\n".join(map(str, range(5))) + "\n", "leaves no training samples"),
])
def test_bad_exclude_lists_name_the_key_and_the_file_on_one_line(tmp_path, case, text, message):
    root = make_dataset(tmp_path / "data")
    path = tmp_path / f"{case}.txt"
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        split(root, path)
    line = str(error.value)
    assert line.startswith(f"data.exclude: {path}") and "\n" not in line


def test_cpm_train_with_a_missing_exclude_list_exits_2_naming_key_and_file(tmp_path, capfd):
    root = make_dataset(tmp_path / "data")
    experiment = tmp_path / "experiment.toml"  # a real-data config (make train's own is synthetic)
    experiment.write_text('[data]\nsource = "list"\nannotations = "list.csv"\n')
    overrides = tiny_overrides(tmp_path, **{"data.root": str(root), "data.val_samples": 3,
                                            "data.exclude": str(tmp_path / "flags.csv")})
    assert main(["train", str(experiment), *sum((["--set", o] for o in overrides), [])]) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert lines == [f"cpm train: error: data.exclude: {tmp_path / 'flags.csv'}: no such file"]


def test_cpm_data_check_flags_on_real_photographs_are_left_out_of_training(tmp_path, shared_data, capsys):
    root = shared_data / "lspet400"
    assert main(["data", "check", "--source", "lsp", "--root", str(root), "--out", str(tmp_path / "flags.csv")]) == 0
    flagged = {entry.index for entry in read_exclude_list(tmp_path / "flags.csv")}
    assert 0 < len(flagged) < 400
    train, val = split_dataset(source="lsp", root=root, val_samples=100, skeleton="lsp14",
                               exclude=tmp_path / "flags.csv")
    assert set(train.indices) == set(range(300)) - flagged and set(val.indices) == set(range(300, 400)) - flagged


def test_an_exclude_list_with_synthetic_data_is_refused(tmp_path):
    (tmp_path / "cfg.toml").write_text('[data]\nexclude = "flags.csv"\n')
    with pytest.raises(ConfigError, match="data.exclude: .*'synthetic' has none"):
        load_config(tmp_path / "cfg.toml")

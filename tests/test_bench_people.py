"""python -m cpm.bench.people: top-down against bottom-up time per frame by the number of people."""

from __future__ import annotations

from cpm.bench.people import format_table, frame_times, main
from cpm.data.datasets.coco_files import read_coco_file
from tests.test_bottomup_eval import paf_checkpoint, scenes  # noqa: F401  (the module's scenes fixture)
from tests.test_topdown import tiny_checkpoint


def test_every_frame_is_timed_once_with_its_people_and_boxes(scenes, tmp_path):  # noqa: F811
    paf_checkpoint(scenes, tmp_path / "paf.pt")
    topdown = tiny_checkpoint(tmp_path / "td.pt", tmp_path)
    times = frame_times(topdown, tmp_path / "paf.pt")
    coco = read_coco_file(scenes / "val" / "annotations.json")
    assert len(times) == len(coco.images) == 3
    labeled = sorted(int((image.keypoints[:, :, 2] > 0).any(axis=1).sum()) for image in coco.images)
    assert sorted(row["boxes"] for row in times) == labeled  # one crop per labeled person: top-down's batch
    assert all(row["topdown_ms"] > 0 and row["bottomup_ms"] > 0 for row in times)
    assert len(frame_times(topdown, tmp_path / "paf.pt", frames=2)) == 2


def test_the_table_gives_medians_and_frames_per_second_by_people():
    times = [{"people": 2, "topdown_ms": 10.0, "bottomup_ms": 20.0}, {"people": 2, "topdown_ms": 30.0,
                                                                        "bottomup_ms": 20.0},
             {"people": 1, "topdown_ms": 5.0, "bottomup_ms": 25.0}]
    lines = format_table(times).splitlines()
    assert lines[2] == "| 1 | 1 | 5.0 | 25.0 | 200.0 | 40.0 |"
    assert lines[3] == "| 2 | 2 | 20.0 | 20.0 | 50.0 | 50.0 |"


def test_swapped_checkpoints_fail_in_one_line(scenes, tmp_path, capsys):  # noqa: F811
    paf_checkpoint(scenes, tmp_path / "paf.pt")
    topdown = tiny_checkpoint(tmp_path / "td.pt", tmp_path)
    assert main(["--topdown", str(tmp_path / "paf.pt"), "--bottomup", str(tmp_path / "paf.pt")]) == 2
    assert "--topdown" in capsys.readouterr().err
    assert main(["--topdown", str(topdown), "--bottomup", str(topdown)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--bottomup" in err

"""training/live.py: the curves in dvclive's layout, the same bytes whether a training ran through
or was killed and resumed, and readable by DVC's plots."""

from __future__ import annotations

import json

from slimnet.console.progress import Reporter
from slimnet.training.live import LiveCurves, write_empty

ROWS = [
    {"epoch": 1, "train_loss": 2.1, "val_acc": 41.5, "val_loss": 1.9},
    {"epoch": 2, "train_loss": 1.2, "val_acc": 63.25, "val_loss": 1.1},
    {"epoch": 3, "train_loss": 0.9, "val_acc": 70.0, "val_loss": 0.8},
]


def files(directory) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_every_epoch_is_a_row_and_the_summary_is_the_last_epochs_headline(tmp_path):
    live = LiveCurves(tmp_path / "live")
    live.log(ROWS, headline=("val_acc",), run="uniform")
    written = files(tmp_path / "live")
    assert sorted(written) == [
        "metrics.json",
        "plots/metrics/train_loss.tsv",
        "plots/metrics/val_acc.tsv",
        "plots/metrics/val_loss.tsv",
    ]
    assert written["plots/metrics/val_acc.tsv"].decode() == "step\tval_acc\n1\t41.5\n2\t63.25\n3\t70.0\n"
    assert json.loads(written["metrics.json"]) == {"val_acc": 70.0, "epoch": 3}


def test_a_resumed_training_ends_with_the_bytes_of_an_unbroken_one(tmp_path):
    unbroken = LiveCurves(tmp_path / "unbroken")
    for row in ROWS:  # as the loop logs them: one epoch at a time
        unbroken.log([row], headline=("val_acc",), run="uniform")
    killed = LiveCurves(tmp_path / "resumed")
    killed.log(ROWS[:2], headline=("val_acc",), run="uniform")
    (tmp_path / "resumed" / "plots" / "metrics" / "val_acc.tsv").open("a").write("3\t99.0\n")  # an epoch the kill lost
    resumed = LiveCurves(tmp_path / "resumed")  # the stage restarts: the checkpoint held two epochs
    resumed.log(ROWS[:2], headline=("val_acc",), run="uniform")
    resumed.log(ROWS[2:], headline=("val_acc",), run="uniform")
    assert files(tmp_path / "resumed") == files(tmp_path / "unbroken")


def test_nested_runs_keep_each_draw_under_its_name(tmp_path):
    live = LiveCurves(tmp_path / "live", nested=True)
    report = Reporter(None, live)
    report.epochs(ROWS[:1], ("val_acc",), "random-0")
    report.epochs(ROWS[:2], ("val_acc",), "random-1")
    written = files(tmp_path / "live")
    assert "plots/metrics/random-0/val_acc.tsv" in written and "plots/metrics/random-1/val_acc.tsv" in written
    assert written["plots/metrics/random-1/val_acc.tsv"].decode() == "step\tval_acc\n1\t41.5\n2\t63.25\n"
    assert json.loads(written["metrics.json"]) == {"random-0": {"val_acc": 41.5}, "random-1": {"val_acc": 63.25}, "epoch": 2}


def test_a_training_that_did_not_run_leaves_a_folder_git_keeps(tmp_path):
    write_empty(tmp_path / "live")
    written = files(tmp_path / "live")
    assert json.loads(written["metrics.json"]) == {}
    assert written["plots/metrics/not_trained.tsv"] == b"step\tnot_trained\n"

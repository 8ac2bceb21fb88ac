"""The exploration and training-aid commands: explore, lr_find, sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from lr_from_scratch import demo, explore, lr_find, sweep
from lr_from_scratch.errors import UserError

from .conftest import REPO, assert_one_line_error


def test_explore_writes_figures_and_a_summary(tmp_path, capsys):
    assert explore.main(["--out", str(tmp_path), "--no-progress"]) == 0
    summary = (tmp_path / "summary.md").read_text()
    assert "Pixel mean 0.1307 and standard deviation 0.3081" in summary
    assert "80.9% of the pixels are 0" in summary
    for name in explore.FIGURES.values():
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name
        assert f"({name})" in summary


def test_lr_range_test_suggests_a_range_around_the_fastest_descent(tmp_path, capsys):
    assert lr_find.main(["--steps", "150", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "lr_find.json").read_text())
    low, high = result["suggested_range"]
    assert 1e-5 < low == result["steepest_lr"] < high < result["lowest_loss_lr"] < 10
    assert result["losses"][-1] > min(result["losses"])  # the sweep went past the best rate
    assert (tmp_path / "lr_find.png").exists()


def test_a_span_too_narrow_for_a_range_says_so_and_suggests_none(tmp_path, capsys):
    """Fastest descent and lowest loss within a factor of 3: the range once came out inverted (0.0109 to 0.00667)."""
    assert lr_find.main(["--start", "0.01", "--end", "0.02", "--steps", "50", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "lr_find.json").read_text())
    assert result["suggested_range"] is None and result["lowest_loss_lr"] < 3 * result["steepest_lr"]
    line = capsys.readouterr().out.splitlines()[0]
    assert line.endswith("no range to suggest, they lie within a factor of 3; test a wider span (a lower --start, "
                         "a higher --end)")  # fmt: skip


def test_batch_size_sweep(tmp_path, capsys):
    assert sweep.main(["--batch-sizes", "256,1024", "--epochs", "1", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "batch_sweep.json").read_text())
    assert [r["batch_size"] for r in rows] == [256, 1024]
    assert all(0.85 < r["test_accuracy"] < 1 and r["train_seconds"] > 0 for r in rows)
    assert (tmp_path / "batch_sweep.png").exists()


@pytest.mark.parametrize("stopped_in", [1024, 256])
def test_an_interrupted_sweep_writes_the_batch_sizes_it_finished(tmp_path, capsys, monkeypatch, stopped_in):
    """Ctrl-C in the third size's training: the first two are written (figure and JSON), the exit status is 130,
    and the line says which sizes the files hold; in the first size's, nothing is written, and the line says so."""
    fit = sweep.fit

    def fit_and_interrupt(model, config, **kwargs):
        if config.batch_size == stopped_in:
            os.kill(os.getpid(), signal.SIGINT)
        return fit(model, config, **kwargs)

    monkeypatch.setattr(sweep, "fit", fit_and_interrupt)
    code = sweep.main(["--batch-sizes", "256,512,1024", "--epochs", "1", "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    if stopped_in == 256:
        assert code == 130 and err == "interrupted: no batch size had finished: nothing was saved\n"
        assert list(tmp_path.iterdir()) == []
        return
    assert code == 130 and err == f"interrupted: wrote {tmp_path}/ for the batch sizes finished first (256, 512)\n"
    assert [r["batch_size"] for r in json.loads((tmp_path / "batch_sweep.json").read_text())] == [256, 512]
    assert (tmp_path / "batch_sweep.png").exists()


@pytest.mark.parametrize("command", [explore, lr_find, sweep, demo])
def test_the_default_out_is_a_folder_git_ignores(command):
    """A user's run of an analysis command never rewrites a tracked file (the demo's default was the docs' own
    examples, which a model of one's own then replaced under the docs' model)."""
    args = [str(REPO / "docs" / "figures" / "training")] if command is demo else []
    out = command.build_parser().parse_args(args).out
    ignored = subprocess.run(["git", "check-ignore", "-q", str(out / "any-file")], cwd=REPO)
    assert ignored.returncode == 0, f"{out} is not ignored by git"


@pytest.mark.parametrize("command", [explore, lr_find, sweep])
def test_no_progress_reaches_the_download(tmp_path, capsys, monkeypatch, command):
    """Each command takes --no-progress, and passes it on to the data loading (the download's progress bar)."""
    asked = []

    def load_mnist(data_dir=None, download=True, progress=True):
        asked.append(progress)
        raise UserError("loaded")

    monkeypatch.setattr(command, "load_mnist", load_mnist)
    for args in (["--no-progress"], []):
        assert command.main([*args, "--out", str(tmp_path / "x")]) == 1
        assert capsys.readouterr().err == "error: loaded\n"
    assert asked == [False, True]


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        (lr_find, ["--start", "0"], "need 0 < --start < --end < infinity, got --start 0.0"),
        (lr_find, ["--end", "inf"], "need 0 < --start < --end < infinity, got --start 1e-05 and --end inf"),
        (lr_find, ["--start", "1", "--end", "0.1"], "need 0 < --start < --end"),
        (lr_find, ["--end", "1e308"], "--end / --start overflows (--start 1e-05, --end 1e+308): narrow the range"),
        (lr_find, ["--start", "1e-320"], "--end / --start overflows (--start 1e-320, --end 10.0)"),
        (lr_find, ["--steps", "3"], "--steps must be an integer >= 10, got 3"),
        (sweep, ["--batch-sizes", "64,lots"], "--batch-sizes must be comma-separated integers"),
        (sweep, ["--batch-sizes", "64,0"], "--batch-sizes must be integers >= 1, got 64,0"),
        (sweep, ["--batch-sizes", "64,64"], "--batch-sizes names a size twice, got 64,64"),
        (sweep, ["--epochs", "0"], "--epochs must be an integer >= 1, got 0"),
    ],
)
def test_bad_options_are_one_line(tmp_path, capsys, command, args, expected):
    code = command.main([*args, "--out", str(tmp_path / "x")])
    assert_one_line_error((code, capsys.readouterr().err), 2, expected)
    assert not (tmp_path / "x").exists()

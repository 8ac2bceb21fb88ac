"""`python -m lr_from_scratch.train`: what a user runs, what it writes, and every bad input."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest
from numba import cuda

from lr_from_scratch.backends import make_backend
from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import prepare, scale_images
from lr_from_scratch.errors import TrainingDiverged
from lr_from_scratch.metrics import evaluate
from lr_from_scratch.saved import load_checkpoint, load_model, save_checkpoint
from lr_from_scratch.train import main
from lr_from_scratch.trainer import TrainingInterrupted, TrainState, fit

from .conftest import REPO, assert_one_line_error, run_module

QUICK = ["--limit", "3000", "--epochs", "3", "--no-progress"]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, mnist):
    """The README's first command, with defaults, into a fresh folder."""
    out = tmp_path_factory.mktemp("runs") / "default"
    result = run_module("lr_from_scratch.train", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr
    return out, result


def test_defaults_reach_92_percent_and_report_it(default_run):
    out, result = default_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.92, metrics
    assert f"test accuracy {metrics['test_accuracy']:.2%}" in result.stdout
    assert {"test_loss", "best_epoch", "epochs_run", "train_seconds", "samples_per_second"} <= metrics.keys()
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"] <= 20
    assert "54,000 train / 6,000 validation / 10,000 test" in result.stdout
    assert result.stdout.count("samples/s") == metrics["epochs_run"] + 1  # a line per epoch, and the summary


def test_run_folder_holds_every_output(default_run, mnist):
    out, _ = default_run
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "curves.png", "history.csv", "metrics.json", "model.npz", "status.json",
    ]  # fmt: skip
    status = json.loads((out / "status.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert status == {"status": "finished", "epochs_done": metrics["epochs_run"],
                      "detail": f"test accuracy {metrics['test_accuracy']:.2%}"}  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config == TrainConfig().to_dict()
    rows = list(csv.DictReader((out / "history.csv").open()))
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(rows) == metrics["epochs_run"] and rows[0]["epoch"] == "1"
    assert float(rows[metrics["best_epoch"] - 1]["val_loss"]) == min(float(r["val_loss"]) for r in rows)
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_model_npz_is_self_contained(default_run, mnist):
    out, _ = default_run
    saved = load_model(out / "model.npz")
    assert saved.weight.shape == (10, 784) and saved.bias.shape == (10,)
    assert (saved.mean, saved.std) == (0.1307, 0.3081)
    assert saved.config["batch_size"] == 64
    x = scale_images(mnist.test_images, saved.mean, saved.std, saved.weight.dtype)
    _, accuracy = evaluate(saved.weight, saved.bias, x, mnist.test_labels.astype(np.int64))
    assert accuracy == json.loads((out / "metrics.json").read_text())["test_accuracy"]


def test_no_validation_split_trains_on_everything_without_early_stopping(tmp_path, capsys):
    code = main(["--val-split", "0", "--epochs", "2", "--no-normalize", "--out", str(tmp_path / "r"), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "60,000 train / 0 validation" in out
    rows = list(csv.DictReader((tmp_path / "r" / "history.csv").open()))
    assert [r["val_loss"] for r in rows] == ["", ""]
    saved = load_model(tmp_path / "r")
    assert (saved.mean, saved.std) == (0.0, 1.0)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["best_epoch"] == 2 and metrics["test_accuracy"] > 0.88


def test_float64_and_options_reach_the_config(tmp_path, capsys):
    args = ["--dtype", "float64", "--init", "zeros", "--nesterov", "--weight-decay", "1e-4", "--lr-step", "1"]
    assert main([*QUICK, *args, "--out", str(tmp_path / "r")]) == 0
    saved = load_model(tmp_path / "r")
    assert saved.weight.dtype == np.float64
    assert saved.config["nesterov"] is True and saved.config["init"] == "zeros"
    rows = list(csv.DictReader((tmp_path / "r" / "history.csv").open()))
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.01, 0.001, 0.0001])


BAD_ARGS = {
    "batch zero": (["--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    "batch too big for the split": (
        ["--batch-size", "2701"],
        "--batch-size 2701 is more than the 2700 training samples that --val-split 0.1 leaves of 3000",
    ),
    "batch too big": (
        ["--batch-size", "3001"],
        "--batch-size must be between 1 and the 2700 training samples, got 3001: lower --batch-size or raise --limit",
    ),
    "lr beyond float32": (["--lr", "1e39"], "--lr must be at most 3.403e+38, the largest float32, got 1e+39"),
    "lr zero": (["--lr", "0"], "--lr must be a number > 0"),
    "lr negative": (["--lr", "-0.1"], "got -0.1"),
    "lr nan": (["--lr", "nan"], "--lr must be a number > 0, such as 0.01, got nan"),
    "lr text": (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
    "momentum one": (["--momentum", "1"], "--momentum must be a number in [0, 1)"),
    "momentum negative": (["--momentum", "-0.5"], "got -0.5"),
    "nesterov alone": (
        ["--nesterov", "--momentum", "0"],
        "--nesterov needs --momentum > 0",
        "set --momentum 0.9, or drop --nesterov",
    ),
    "nesterov dampened": (
        ["--nesterov", "--dampening", "1"],
        "got momentum 0.9 and dampening 1.0",
        "set --dampening 0, or drop --nesterov",
    ),
    "nesterov with neither": (
        ["--nesterov", "--momentum", "0", "--dampening", "0.5"],
        "set --momentum 0.9 and --dampening 0, or drop --nesterov",
    ),
    "val split one": (["--val-split", "1"], "--val-split must be a fraction in [0, 1)"),
    "val split negative": (["--val-split", "-0.1"], "got -0.1"),
    "val split empty": (["--val-split", "0.0001"], "leaves no validation sample"),
    "val split all": (["--val-split", "0.9999999"], "--val-split 0.9999999 leaves none of the 3000 samples"),
    "lr zero in float32": (["--lr", "1e-50"], "--lr must be at least 1.4e-45, the smallest float32 above 0", "1e-50"),
    "limit zero": (["--limit", "0"], "--limit must be an integer >= 1, got 0"),
    "limit too big": (["--limit", "60001"], "--limit must be between 1 and 60000"),
    "epochs zero": (["--epochs", "0"], "--epochs must be an integer >= 1"),
    "bad init": (["--init", "he"], "argument --init: invalid choice: 'he'"),
    "unknown flag": (["--learning-rate", "3"], "unrecognized arguments: --learning-rate 3"),
}


@pytest.mark.parametrize("case", BAD_ARGS)
def test_bad_option_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    args, *expected = BAD_ARGS[case]
    base = ["--limit", "3000", "--no-progress"] if "--limit" not in args else ["--no-progress"]
    code = main([*base, *args, "--out", str(tmp_path / "run")])
    assert_one_line_error((code, capsys.readouterr().err), 2, *expected)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("watched", [False, True])
def test_progress_bars_go_to_a_terminal_and_never_into_a_log(tmp_path, watched):
    """Without --no-progress, a run's stderr redirected to a file (here a pipe) gets no bar, whose every update
    is a carriage-return line there; a terminal (here a pseudo-terminal) still gets them."""
    reader, writer = pty.openpty() if watched else os.pipe()
    if watched:  # a new pseudo-terminal is 0 columns wide, in which tqdm draws nothing
        fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    args = [sys.executable, "-m", "lr_from_scratch.train", "--limit", "3000", "--epochs", "1", "--out", str(tmp_path)]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=writer, stdin=subprocess.DEVNULL)
    os.close(writer)
    err = b""
    with contextlib.suppress(OSError):  # a pseudo-terminal's reader fails (EIO) once the writer has gone
        while chunk := os.read(reader, 1 << 16):
            err += chunk
    os.close(reader)
    assert proc.wait(timeout=300) == 0, err
    assert (b"epoch 1/1:" in err and b"\r" in err) == watched, err


def test_bad_option_from_the_shell_has_no_traceback(tmp_path):
    result = run_module("lr_from_scratch.train", "--lr", "-1", "--out", str(tmp_path / "run"))
    assert_one_line_error(result, 2, "--lr must be a number > 0")
    assert result.stdout == ""


def test_out_folder_holding_a_run_is_refused(tmp_path, capsys):
    assert main([*QUICK, "--epochs", "1", "--out", str(tmp_path)]) == 0
    before = (tmp_path / "model.npz").read_bytes()
    capsys.readouterr()
    code = main([*QUICK, "--out", str(tmp_path)])
    assert_one_line_error((code, capsys.readouterr().err), 2, f"--out {tmp_path} holds a finished run (test accuracy")
    assert (tmp_path / "model.npz").read_bytes() == before


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_divergence_is_one_line_naming_the_epoch(tmp_path, backend):
    args = [*QUICK, "--lr", "1e38", "--no-normalize", "--backend", backend, "--out", str(tmp_path / "r")]
    result = run_module("lr_from_scratch.train", *args)
    assert_one_line_error(result, 1, "became NaN or infinite in epoch 1", "Try a lower --lr")
    assert not (tmp_path / "r" / "model.npz").exists()


class NaNAfter:
    """Wraps a backend; its losses turn NaN from call ``n`` on (the loss, not the weights: enough for the loop)."""

    def __init__(self, backend, n):
        self.backend, self.calls, self.n = backend, 0, n
        self.steps_per_call = backend.steps_per_call

    def run_steps(self, order, batches, lr):
        self.calls += 1
        loss, correct = self.backend.run_steps(order, batches, lr)
        return (float("nan") if self.calls >= self.n else loss), correct

    def __getattr__(self, name):
        return getattr(self.backend, name)


def small_setup(mnist, **options):
    config = TrainConfig(limit=1000, batch_size=32, **options)
    splits = prepare(mnist, config)
    return config, splits, make_backend(config, splits)


def test_divergence_keeps_the_last_good_epoch(mnist):
    config, splits, backend = small_setup(mnist, epochs=5, backend="numpy")  # 4 calls an epoch
    calls_per_epoch = -(-len(splits.train) // (32 * backend.steps_per_call))
    wrapped = NaNAfter(backend, calls_per_epoch + 2)
    state = TrainState()
    with pytest.raises(TrainingDiverged, match=r"in epoch 2 \(after .* samples\).*kept the weights of epoch 1"):
        fit(wrapped, config, state, progress=False, log=None)
    assert state.best_epoch == 1 and len(state.history) == 1
    assert np.isfinite(state.best_weight).all()


def run_to_end(mnist, stop_after=None, tmp_path=None, stops_at=None, **options):
    """Train; if ``stop_after``, interrupt at that many polls, check the run ``stops_at`` (epoch, batch), checkpoint
    to disk, and resume in a new backend."""
    config, splits, backend = small_setup(mnist, **options)
    if stop_after is None:
        return fit(backend, config, progress=False, log=None), backend
    calls = iter(range(1, 10**9))
    state = TrainState()
    with pytest.raises(TrainingInterrupted):
        fit(backend, config, state, progress=False, log=None, should_stop=lambda: next(calls) >= stop_after)
    assert (state.epoch, state.batch) == stops_at
    save_checkpoint(tmp_path / "checkpoint.npz", backend.state(), state)
    arrays, state = load_checkpoint(tmp_path / "checkpoint.npz")
    _, _, fresh = small_setup(mnist, **options)
    fresh.load_state(arrays)
    return fit(fresh, config, state, progress=False, log=None), fresh


# 900 samples in batches of 32: NumPy takes 8 batches a call, 4 calls an epoch, polled before each epoch and after
# each call but an epoch's last (stop inside epoch 1, at its end, inside epoch 2); Numba 64 (a call is an epoch,
# polled before each: stop after epoch 1 and 2)
@pytest.mark.parametrize(
    ("backend", "stop_after", "stops_at"),
    [("numpy", 2, (0, 8)), ("numpy", 5, (1, 0)), ("numpy", 7, (1, 16)), ("numba", 2, (1, 0)), ("numba", 3, (2, 0))],
)
@pytest.mark.parametrize("options", [dict(momentum=0.9, nesterov=True), dict(dtype="float64", lr_step=1)], ids=str)
def test_interrupted_and_resumed_run_ends_with_identical_weights(
    mnist, tmp_path, backend, stop_after, stops_at, options
):
    whole, whole_backend = run_to_end(mnist, epochs=4, patience=2, backend=backend, **options)
    resumed, resumed_backend = run_to_end(
        mnist, stop_after, tmp_path, stops_at, epochs=4, patience=2, backend=backend, **options
    )
    np.testing.assert_array_equal(resumed.best_weight, whole.best_weight)
    np.testing.assert_array_equal(resumed_backend.state()["weight"], whole_backend.state()["weight"])
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in whole.history]
    assert (resumed.best_epoch, resumed.stopped_early) == (whole.best_epoch, whole.stopped_early)


def test_ctrl_c_saves_a_checkpoint_and_resume_matches_an_uninterrupted_run(tmp_path):
    # the NumPy backend at batch 1 is slow enough (about 0.1 s an epoch) for the signal to land mid-run
    args = ["--limit", "3000", "--batch-size", "1", "--epochs", "40", "--patience", "0", "--backend", "numpy"]
    args.append("--no-progress")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lr_from_scratch.train", *args, "--out", str(tmp_path / "a")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    for line in proc.stdout:
        if line.startswith("epoch "):  # the first epoch is done: interrupt the second
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "checkpoint saved" in err and f"--resume {tmp_path / 'a'}" in err and "Traceback" not in err
    assert (tmp_path / "a" / "checkpoint.npz").exists() and not (tmp_path / "a" / "model.npz").exists()

    resumed = run_module("lr_from_scratch.train", "--resume", str(tmp_path / "a"), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert not (tmp_path / "a" / "checkpoint.npz").exists()
    whole = run_module("lr_from_scratch.train", *args, "--out", str(tmp_path / "b"))
    assert whole.returncode == 0, whole.stderr
    a, b = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.bias, b.bias)


def test_resume_refusals(tmp_path, capsys):
    assert main([*QUICK, "--epochs", "1", "--out", str(tmp_path / "done")]) == 0
    capsys.readouterr()
    cases = [
        (["--resume", str(tmp_path / "done")], "nothing to resume: it holds a finished run"),
        (["--resume", str(tmp_path / "nowhere")], "no config.json there"),
        (["--resume", str(tmp_path / "done" / "model.npz")], "is a file: expected the folder of an unfinished run"),
        (["--resume", str(tmp_path / "done"), "--lr", "0.1"], "--lr cannot be combined with --resume"),
    ]
    for args, expected in cases:
        code = main(args)
        assert_one_line_error((code, capsys.readouterr().err), 2, expected)


def test_the_curves_are_drawn_at_150_dpi(default_run):
    """10 x 4 inches at 150 dots per inch: 1500 x 600 pixels (the PNG header's width and height)."""
    header = (default_run[0] / "curves.png").read_bytes()[16:24]
    assert (int.from_bytes(header[:4], "big"), int.from_bytes(header[4:], "big")) == (1500, 600)


@pytest.mark.skipif(cuda.is_available(), reason="this machine has a GPU: the refusal cannot happen")
def test_the_cuda_backend_without_a_gpu_is_one_line_exit_2(tmp_path, capsys):
    code = main([*QUICK, "--backend", "cuda", "--out", str(tmp_path / "r")])
    assert_one_line_error((code, capsys.readouterr().err), 2, "--backend cuda: Numba sees no CUDA GPU here")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("backend", "simulated", "compiled", "cache", "expected"),
    [
        ("numba", False, True, True, "numba kernels compiled (cached for later runs) in 2.5 s"),
        ("numba", False, False, True, "numba kernels loaded from the cache in 2.5 s"),
        ("numba", False, True, False, "numba kernels compiled (no writable cache folder: set NUMBA_CACHE_DIR"),
        # Numba keeps no CUDA kernel on disk; in its simulator there is nothing to compile, or to load
        ("cuda", False, True, True, "CUDA kernels compiled in 2.5 s (Numba keeps no CUDA kernel between runs)"),
        ("cuda", True, False, True, "CUDA kernels in Numba's simulator (NUMBA_ENABLE_CUDASIM=1): nothing to compile"),
    ],
)
def test_the_compile_line_says_what_became_of_the_kernels(monkeypatch, backend, simulated, compiled, cache, expected):
    from numba import config as numba_config

    from lr_from_scratch.kernels import llvm
    from lr_from_scratch.train import compile_line

    monkeypatch.setattr(numba_config, "ENABLE_CUDASIM", simulated)
    monkeypatch.setattr(llvm, "CACHE", cache)
    assert compile_line(backend, compiled, 2.5).startswith(expected)

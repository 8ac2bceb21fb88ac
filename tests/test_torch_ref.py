"""``python -m torch_ref.train``, the same command as lr_from_scratch's in PyTorch, and the textbook script."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import MNIST_MEAN, MNIST_STD, batch_slices, default_data_dir, epoch_order, prepare
from lr_from_scratch.errors import ConfigError
from lr_from_scratch.runs import RunFolder
from lr_from_scratch.saved import load_checkpoint, load_model, save_checkpoint
from lr_from_scratch.trainer import TrainingInterrupted, TrainState, epoch_lr, fit, train_epoch
from torch_ref import textbook
from torch_ref.backend import TorchBackend
from torch_ref.model import to_arrays
from torch_ref.textbook import LogisticRegression
from torch_ref.train import main

from .conftest import REPO, assert_one_line_error, run_module, run_python

QUICK = ["--limit", "3000", "--epochs", "3", "--no-progress"]
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_run_folder_holds_the_shared_outputs_and_a_state_dict(tmp_path, capsys):
    assert main([*QUICK, "--lr-step", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "torch on cpu, tensor loader" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json", "curves.png", "history.csv", "metrics.json", "model.npz", "model.pt", "status.json",
    ]  # fmt: skip
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["backend"] == "torch" and metrics["device"] == "cpu" and metrics["loader"] == "tensor"
    assert metrics["tf32"] is False
    model = LogisticRegression()
    model.load_state_dict(torch.load(tmp_path / "model.pt"))
    saved = load_model(tmp_path)
    np.testing.assert_array_equal(to_arrays(model)[0], saved.weight)
    assert json.loads((tmp_path / "config.json").read_text())["backend"] == "torch"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the refusal cannot happen")
def test_cuda_without_cuda_is_one_line_exit_2(tmp_path, capsys):
    code = main([*QUICK, "--device", "cuda", "--out", str(tmp_path / "r")])
    assert_one_line_error((code, capsys.readouterr().err), 2, "--device cuda: this torch sees no CUDA device")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--lr", "0"], "--lr must be a number > 0"),
        (["--loader", "ffcv"], "argument --loader: invalid choice: 'ffcv'"),
        (["--backend", "numpy"], "unrecognized arguments: --backend numpy"),
    ],
)
def test_bad_options(tmp_path, capsys, args, expected):
    code = main([*QUICK, *args, "--out", str(tmp_path / "r")])
    assert_one_line_error((code, capsys.readouterr().err), 2, expected)


def test_a_torch_run_resumes_only_with_torch_ref(tmp_path, capsys):
    from lr_from_scratch.train import main as scratch_main

    assert main([*QUICK, "--out", str(tmp_path)]) == 0
    (tmp_path / "metrics.json").unlink()  # now it looks like an interrupted run
    (tmp_path / "status.json").unlink()
    save_checkpoint(tmp_path / "checkpoint.npz", {"weight": np.zeros((10, 784)), "bias": np.zeros(10)}, TrainState())
    capsys.readouterr()
    code = scratch_main(["--resume", str(tmp_path)])
    assert_one_line_error((code, capsys.readouterr().err), 2, "resume it with python -m torch_ref.train")


@pytest.mark.parametrize("loader", ["tensor", "dataloader"])
def test_interrupted_and_resumed_torch_run_ends_with_identical_weights(mnist, tmp_path, loader):
    config = TrainConfig(limit=1000, batch_size=32, epochs=3, lr_step=1, momentum=0.9, dtype="float64")
    splits = prepare(mnist, config)

    def backend():
        return TorchBackend(config, splits, torch.device("cpu"), loader)

    whole = backend()
    fit(whole, config, progress=False, log=None)
    first = backend()
    state, calls = TrainState(), iter(range(1, 1000))
    with pytest.raises(TrainingInterrupted):  # 29 batches of 32 are 2 calls an epoch: stop inside epoch 2
        fit(first, config, state, progress=False, log=None, should_stop=lambda: next(calls) >= 3)
    save_checkpoint(tmp_path / "checkpoint.npz", first.state(), state)
    arrays, state = load_checkpoint(tmp_path / "checkpoint.npz")
    resumed = backend()
    resumed.load_state(arrays)
    fit(resumed, config, state, progress=False, log=None)
    np.testing.assert_array_equal(resumed.params()[0], whole.params()[0])
    assert resumed.optimizer.param_groups[0]["lr"] == whole.optimizer.param_groups[0]["lr"]


def test_the_textbook_script_takes_the_same_steps_as_the_torch_backend(mnist, mnist_dir):
    """Same initial weights, same order: one epoch of the textbook loop ends where torch_ref.train's does."""
    config = TrainConfig(epochs=1, val_split=0, dtype="float64")
    backend = TorchBackend(config, prepare(mnist, config), torch.device("cpu"), "tensor")
    initial = backend.params()
    fit(backend, config, progress=False, log=None)

    model, loss_fn, optimizer, _ = textbook.build("cpu", torch.float64)
    with torch.no_grad():
        model.linear.weight.copy_(torch.from_numpy(initial[0]))
        model.linear.bias.copy_(torch.from_numpy(initial[1]))
    images, labels = (
        textbook.read_idx(mnist_dir, f"train-{kind}") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
    )
    dataset = textbook.MNISTDataset(images, labels, dtype=torch.float64)
    order = epoch_order(len(dataset), config.seed, 0).tolist()
    textbook.train_epoch(model, DataLoader(dataset, batch_size=textbook.BATCH_SIZE, sampler=order), loss_fn, optimizer)
    for name, mine, theirs in zip(("weight", "bias"), to_arrays(model), backend.params(), strict=True):
        diff = np.abs(mine - theirs).max()
        print(f"{name}: max |textbook - TorchBackend| = {diff:.2e}")
        assert diff <= 1e-12, f"{name}: max |textbook - TorchBackend| = {diff:.2e}"


def test_the_textbook_defaults_and_schedule_are_the_shared_ones():
    """Its constants are lr_from_scratch's, and StepLR gives the shared schedule's rate in every epoch, exactly."""
    config = TrainConfig()
    ours = (config.batch_size, config.lr, config.momentum, config.epochs, config.lr_step, config.lr_gamma)
    assert ours == (textbook.BATCH_SIZE, textbook.LR, textbook.MOMENTUM, textbook.EPOCHS, textbook.LR_STEP,
                    textbook.LR_GAMMA)  # fmt: skip
    assert (MNIST_MEAN, MNIST_STD, default_data_dir()) == (textbook.MEAN, textbook.STD, textbook.DATA_DIR.expanduser())
    _, _, optimizer, scheduler = textbook.build()
    rates = []
    for _ in range(35):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == [epoch_lr(config, epoch) for epoch in range(35)]


def test_the_textbook_script_runs_by_itself_and_imports_no_lr_from_scratch(mnist_dir):
    result = run_module("torch_ref.textbook", "--epochs", "1", "--device", "cpu", "--data-dir", str(mnist_dir))
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert line.startswith("epoch 1/1  test loss ")
    assert float(line.split("test accuracy ")[1].rstrip("%")) > 90
    code = "import sys, torch_ref.textbook; print(sorted(m for m in sys.modules if m.startswith('lr_from_scratch')))"
    assert run_python(code, dict(os.environ)).stdout.strip() == "[]"


def test_the_textbook_script_reads_a_torchvision_download_as_lr_from_scratch_does(tmp_path, mnist_dir):
    """``--data-dir`` of a torchvision download (``DIR/MNIST/raw``), which lr_from_scratch reads: the textbook
    refused it ("cannot read MNIST"). Files in the folder itself come first, as in lr_from_scratch."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for path in mnist_dir.iterdir():
        (raw / path.name).symlink_to(path)
    assert textbook.mnist_folder(tmp_path) == raw and textbook.mnist_folder(mnist_dir) == mnist_dir
    ours, theirs = textbook.load(textbook.mnist_folder(tmp_path), "t10k"), textbook.load(mnist_dir, "t10k")
    assert all(np.array_equal(a, b) for a, b in zip(ours, theirs, strict=True))
    (tmp_path / MNIST_FILES[0]).write_bytes(b"")  # one in the folder itself: that folder is the one read
    assert textbook.mnist_folder(tmp_path) == tmp_path


MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TRAIN_LABELS = MNIST_FILES[1]
# The training labels broken as a disk, a download or a hand breaks them: the name and bytes of the file that takes
# their place, made from the real file's bytes.
BROKEN_LABELS = {
    "empty": lambda real: (TRAIN_LABELS, b""),
    "three_bytes": lambda real: (TRAIN_LABELS, real[:3]),  # a header cut short
    "cut_short": lambda real: (TRAIN_LABELS, real[:1000]),  # the header promises 60,000 labels
    "corrupt_gz": lambda real: (f"{TRAIN_LABELS}.gz", gzip.compress(real)[:10] + b"\xff" * 64),  # zlib.error
    "not_gz": lambda real: (f"{TRAIN_LABELS}.gz", b"not gzip"),
    "label_200": lambda real: (TRAIN_LABELS, real[:13] + bytes([200]) + real[14:]),  # the 6th image's label
}


def mnist_folder(folder: Path, mnist_dir: Path, swap: dict[str, str | tuple[str, bytes]]) -> Path:
    """``folder`` with links to ``mnist_dir``'s four files, but a name in ``swap`` links to another of them
    (``str``), or is replaced by a file of the given name and bytes."""
    folder.mkdir()
    for name in MNIST_FILES:
        target = swap.get(name, name)
        if isinstance(target, tuple):
            (folder / target[0]).write_bytes(target[1])
            continue
        suffix = "" if (mnist_dir / target).exists() else ".gz"  # gpu.sh's folder holds the .gz files
        (folder / (name + suffix)).symlink_to(mnist_dir / (target + suffix))
    return folder


def real_bytes(mnist_dir: Path, name: str) -> bytes:
    path = mnist_dir / name
    return path.read_bytes() if path.exists() else gzip.decompress(path.with_name(f"{name}.gz").read_bytes())


def broken_mnist(tmp_path: Path, mnist_dir: Path) -> dict[str, Path]:
    """A folder for each of :data:`BROKEN_LABELS`, and ``mixed``: one whose training labels are the test set's."""
    real = real_bytes(mnist_dir, TRAIN_LABELS)
    folders = {case: mnist_folder(tmp_path / case, mnist_dir, {TRAIN_LABELS: broken(real)})
               for case, broken in BROKEN_LABELS.items()}  # fmt: skip
    return folders | {"mixed": mnist_folder(tmp_path / "mixed", mnist_dir, {TRAIN_LABELS: "t10k-labels-idx1-ubyte"})}


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["--epochs", "0"], 2, "--epochs must be at least 1, got 0"),
        (["--data-dir", "{missing}"], 1, "cannot read MNIST in {missing}"),
        (["--data-dir", "{mixed}"], 1, "(60000 train images but 10000 labels: the files do not belong together)"),
        (["--batch", "3"], 2, "unrecognized arguments: --batch 3"),
        (["--data-dir", "~nouser/mnist"], 2, "~nouser/mnist: this machine has no user 'nouser'; write ~/ for yours"),
        (["--data-dir", "{empty}"], 1, "(train-labels-idx1-ubyte has no IDX header of uint8 data (it starts empty))"),
        (["--data-dir", "{three_bytes}"], 1, "has no IDX header of uint8 data (it starts 00 00 08)"),
        (["--data-dir", "{cut_short}"], 1, "holds 1000 bytes, the wrong number for its header's shape (60000,)"),
        (["--data-dir", "{corrupt_gz}"], 1, "train-labels-idx1-ubyte.gz is not a whole gzip file (Error -3 while"),
        (["--data-dir", "{not_gz}"], 1, "train-labels-idx1-ubyte.gz is not a whole gzip file (Not a gzipped file"),
        (["--data-dir", "{label_200}"], 1, "(a train label is 200, but MNIST's labels are the digits 0 to 9)"),
    ],
)
def test_the_textbook_script_reports_bad_input_in_one_line(tmp_path, mnist_dir, args, code, expected):
    """Broken files are found as they are read, not by torch mid-training (``Target 200 is out of bounds``); the
    line names the files a folder given with --data-dir must hold (lr_from_scratch.train fills only its own)."""
    paths = {"missing": tmp_path / "missing", **broken_mnist(tmp_path, mnist_dir)}
    result = run_module("torch_ref.textbook", "--device", "cpu", "--epochs", "1", *(a.format(**paths) for a in args))
    line = assert_one_line_error(result, code, expected.format(**paths))
    assert result.stdout == ""
    if code == 1:
        assert line.endswith("; expected MNIST's " + ", ".join(MNIST_FILES) + " (or .gz) there"), line


def test_the_textbook_script_sends_to_lr_from_scratch_train_only_for_its_own_folder(tmp_path, mnist_dir):
    """The default folder (here ``$LR_FROM_SCRATCH_DATA``) is the one ``python -m lr_from_scratch.train`` fetches
    and verifies MNIST into: there, running it is the fix."""
    env = os.environ | {"LR_FROM_SCRATCH_DATA": str(broken_mnist(tmp_path, mnist_dir)["label_200"])}
    result = run_module("torch_ref.textbook", "--device", "cpu", "--epochs", "1", env=env)
    line = assert_one_line_error(result, 1, "(a train label is 200, but MNIST's labels are the digits 0 to 9)")
    assert line.endswith("; run python -m lr_from_scratch.train once"), line


def test_ctrl_c_stops_the_textbook_script_in_one_line(mnist_dir):
    """Once it trains (its first epoch printed), a Ctrl-C ends it with one line and the shell's 130."""
    command = [sys.executable, "-m", "torch_ref.textbook", "--device", "cpu", "--epochs", "50", "--data-dir",
               str(mnist_dir)]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO) as proc:
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=120)
    assert first.startswith("epoch 1/50  test loss ") and proc.returncode == 130
    assert err == "interrupted by Ctrl-C\n" and "epoch 50/50" not in rest


# As a user's shell runs it: stdout to a pipe or a file is block-buffered unless the script flushes its lines.
BUFFERED = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}


def test_sigterm_stops_the_textbook_script_in_one_line(mnist_dir):
    """``kill``, a scheduler's time limit, ``docker stop``: one line and 143, as Ctrl-C is one line and 130."""
    command = [sys.executable, "-m", "torch_ref.textbook", "--device", "cpu", "--epochs", "10", "--data-dir",
               str(mnist_dir)]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                          env=BUFFERED) as proc:  # fmt: skip
        first = proc.stdout.readline()
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=120)
    assert first.startswith("epoch 1/10  test loss ") and proc.returncode == 143
    assert err == "terminated by SIGTERM\n" and "epoch 10/10" not in rest


def test_the_textbook_script_stops_quietly_when_its_reader_goes(mnist_dir):
    """``... | head -1``: the reader has its line and closes the pipe; the next line ends the script as a closed
    pipe ends Unix tools, with nothing on stderr (not a BrokenPipeError, nor Python's failed last flush)."""
    command = [sys.executable, "-m", "torch_ref.textbook", "--device", "cpu", "--epochs", "3", "--data-dir",
               str(mnist_dir)]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                          env=BUFFERED) as proc:  # fmt: skip
        first = proc.stdout.readline()
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=120)
    assert first.startswith("epoch 1/3  test loss ")
    assert (proc.returncode, err) == (141, "")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full on this system")
def test_the_textbook_script_on_a_full_disk_is_one_line(mnist_dir):
    command = [sys.executable, "-m", "torch_ref.textbook", "--device", "cpu", "--epochs", "1", "--data-dir",
               str(mnist_dir)]  # fmt: skip
    with open("/dev/full", "w") as full:
        result = subprocess.run(command, stdout=full, stderr=subprocess.PIPE, text=True, cwd=REPO, env=BUFFERED)
    expected = "error: cannot write to standard output (No space left on device); free some space or send it elsewhere"
    assert (result.returncode, result.stderr) == (1, expected + "\n")


# A real SIGINT in the middle of torch's import: sent by an import hook the moment torch asks for its C extension.
CTRL_C_WHILE_TORCH_LOADS = """
import os, runpy, signal, sys
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "torch._C":
            os.kill(os.getpid(), signal.SIGINT)
sys.meta_path.insert(0, CtrlC())
sys.argv = ["textbook.py", "--device", "cpu"]
runpy.run_module("torch_ref.textbook", run_name="__main__")
"""


def test_a_ctrl_c_while_the_textbook_script_loads_torch_is_one_line():
    """Before its first line runs, the script spends seconds in ``import torch``; Python's own Ctrl-C there is a
    traceback from deep inside torch."""
    result = subprocess.run([sys.executable, "-c", CTRL_C_WHILE_TORCH_LOADS], capture_output=True, text=True, cwd=REPO)
    assert (result.returncode, result.stderr, result.stdout) == (130, "interrupted by Ctrl-C\n", "")


def test_a_compiled_run_prints_no_warning_of_torchs(tmp_path):
    """torch.compile of the optimizer's step logs a warning that nothing is wrong: a user's run leaves it out."""
    result = run_module("torch_ref.train", "--compile", "--epochs", "1", "--limit", "700", "--no-progress",
                        "--device", "cpu", "--out", str(tmp_path / "r"))  # fmt: skip
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "compiled -> " in result.stdout and "test accuracy" in result.stdout
    assert result.stdout.startswith("torch.compile compiled the step in ")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_the_compiled_step_takes_the_steps_of_the_eager_one_and_compiles_before_training(mnist, device):
    """``--compile`` runs each step through torch.compile: the same arithmetic, fused (float64, to rounding). It
    compiles while the backend is built: a new learning rate each epoch, the short last batch and a loaded
    checkpoint then compile nothing, neither again nor anew (a number for the rate compiled the update again at
    each one and, after eight, ran it eagerly; a loaded checkpoint's new momentum tensors compiled it again)."""
    config = TrainConfig(limit=700, epochs=3, dtype="float64", lr_step=1, nesterov=True)  # 630 to train: 64s, 54
    splits = prepare(mnist, config)
    eager, compiled = (TorchBackend(config, splits, torch.device(device), compile=c) for c in (False, True))
    frames = torch._dynamo.utils.counters["frames"]["total"]  # what torch has compiled (or tried to) so far
    with torch._dynamo.config.patch(error_on_recompile=True):
        for backend in (eager, compiled):
            fit(backend, config, progress=False, log=None)
            backend.load_state(backend.state())  # as a resumed run does
            train_epoch(backend, config, TrainState(epoch=config.epochs), batch_slices(backend.n_train, 64))
    assert torch._dynamo.utils.counters["frames"]["total"] == frames
    for ours, theirs in zip(compiled.params(), eager.params(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    assert compiled.info["compiled"] and not eager.info["compiled"]
    assert compiled.info["compile_seconds"] > 0 and "compile_seconds" not in eager.info


def test_backends_compiled_in_one_process_each_keep_their_compiled_step(mnist):
    """Each backend compiles graphs of its own for the same code, bound to its optimizer: two here (the batch
    shape and the short last one). Past torch's default of eight, the fifth backend would have run eagerly."""
    config = TrainConfig(limit=700)
    splits = prepare(mnist, config)
    with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
        for _ in range(5):
            backend = TorchBackend(config, splits, torch.device("cpu"), compile=True)
            train_epoch(backend, config, TrainState(), batch_slices(backend.n_train, config.batch_size))


def test_a_resumed_run_gives_its_backend_the_data_folder_it_recorded(tmp_path, monkeypatch, mnist_dir):
    """``--loader torchvision`` reads the files of ``--data-dir`` itself: resumed without the option, the backend
    gets the folder the run was started with, as the shared loader does (not the default folder)."""
    import torch_ref.train as command

    given = []

    def recording(config, splits, device, loader, data_dir, *rest):
        given.append(data_dir)
        return TorchBackend(config, splits, device, loader, data_dir, *rest)

    monkeypatch.setattr(command, "TorchBackend", recording)
    end_epoch = RunFolder.end_epoch

    def end_epoch_then_ctrl_c(self, *args):
        end_epoch(self, *args)
        os.kill(os.getpid(), signal.SIGINT)

    with monkeypatch.context() as patch:
        patch.setattr(RunFolder, "end_epoch", end_epoch_then_ctrl_c)
        assert main([*QUICK, "--data-dir", str(mnist_dir), "--out", str(tmp_path / "r")]) == 130
    assert main(["--resume", str(tmp_path / "r"), "--no-progress"]) == 0
    assert [Path(d).resolve() for d in given] == [mnist_dir.resolve()] * 2


def test_tf32_on_the_cpu_says_it_changes_nothing(tmp_path, capsys):
    with tf32_as_it_was():
        assert main([*QUICK, "--device", "cpu", "--tf32", "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("note: --tf32 changes CUDA's float32 matrix products only; this run is on the cpu")
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["tf32"] is True  # as asked, and recorded


def test_cuda_graphs_on_the_cpu_are_one_line_exit_2(tmp_path, capsys):
    code = main([*QUICK, "--device", "cpu", "--cuda-graphs", "--out", str(tmp_path / "r")])
    expected = "--cuda-graphs needs a CUDA device, but this run is on the cpu: run it where PyTorch sees a GPU"
    assert_one_line_error((code, capsys.readouterr().err), 2, expected)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("options", "expected"),
    [(dict(loader="dataloader"), "got --loader dataloader: drop --loader"), (dict(compile=True), "one of the two")],
)
def test_cuda_graphs_refuse_what_they_cannot_replay(mnist, options, expected):
    """Refused before anything touches a GPU, so the refusal holds on any machine."""
    config = TrainConfig(limit=100)
    with pytest.raises(ConfigError, match=expected):
        TorchBackend(config, prepare(mnist, config), torch.device("cuda"), cuda_graphs=True, **options)


@CUDA
@pytest.mark.parametrize(("dtype", "atol"), [("float64", 1e-12), ("float32", 1e-6)])
def test_cuda_graphs_take_the_steps_of_the_eager_step(mnist, dtype, atol):
    """Replayed blocks are the eager steps: momentum, Nesterov and weight decay, a short last batch, a learning
    rate that changes every 2 epochs (recorded again) and a checkpoint loaded into a running backend (recordings
    dropped, then made again)."""
    config = TrainConfig(limit=3000, val_split=0, epochs=4, lr_step=2, momentum=0.9, nesterov=True,
                         weight_decay=1e-3, dtype=dtype)  # fmt: skip
    splits = prepare(mnist, config)
    eager, graphed = (TorchBackend(config, splits, torch.device("cuda"), cuda_graphs=g) for g in (False, True))
    histories = [fit(backend, config, progress=False, log=None).history for backend in (eager, graphed)]
    for mine, theirs in zip(histories[1], histories[0], strict=True):  # the totals the replays return
        assert mine["train_accuracy"] == theirs["train_accuracy"]
        assert mine["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-12 if dtype == "float64" else 1e-6)
    # 3000 images: 46 batches of 64 and one of 56, in calls of 16: two shapes of block, both recorded
    assert sorted(len(sizes) for sizes in graphed._graphs.recordings) == [15, 16]
    for mine, theirs in zip(graphed.params(), eager.params(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=atol)

    graphed.load_state(eager.state())
    assert not graphed._graphs.recordings
    batches = batch_slices(graphed.n_train, config.batch_size)
    for epoch in range(config.epochs, config.epochs + 2):
        for backend in (eager, graphed):
            train_epoch(backend, config, TrainState(epoch=epoch), batches)
    assert len(graphed._graphs.recordings) == 2
    for mine, theirs in zip(graphed.params(), eager.params(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=atol)


@contextlib.contextmanager
def tf32_as_it_was():
    """TF32 off while the body runs, and as it was after (``--tf32`` sets it for the whole process)."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_a_resumed_run_keeps_the_commands_own_options(tmp_path, monkeypatch, capsys):
    """``--device``, ``--loader``, ``--tf32``, ``--compile`` and ``--cuda-graphs`` shape a run as the shared options
    do (TF32 changes its float32 products, the loader what it measures): ``config.json`` records them, ``--resume``
    restores them and refuses them given again. Before, a resumed run quietly took the defaults."""
    import torch_ref.train as command

    given = []

    def recording(config, splits, device, loader, data_dir, compile, cuda_graphs):
        given.append((device.type, loader, compile, cuda_graphs, torch.backends.cuda.matmul.allow_tf32))
        return TorchBackend(config, splits, device, loader, data_dir, compile, cuda_graphs)

    monkeypatch.setattr(command, "TorchBackend", recording)
    end_epoch = RunFolder.end_epoch

    def end_epoch_then_ctrl_c(self, *args):
        end_epoch(self, *args)
        os.kill(os.getpid(), signal.SIGINT)

    run = tmp_path / "r"
    with monkeypatch.context() as patch, tf32_as_it_was():
        patch.setattr(RunFolder, "end_epoch", end_epoch_then_ctrl_c)
        assert main([*QUICK, "--device", "cpu", "--loader", "dataloader", "--tf32", "--out", str(run)]) == 130
    recorded = json.loads((run / "config.json").read_text())["command_options"]
    assert recorded == {"device": "cpu", "loader": "dataloader", "tf32": True, "compile": False, "cuda_graphs": False}
    capsys.readouterr()
    for flag in (["--loader", "tensor"], ["--tf32"], ["--device", "cpu"]):
        code = main(["--resume", str(run), *flag])
        assert_one_line_error((code, capsys.readouterr().err), 2, f"{flag[0]} cannot be combined with --resume")
    with tf32_as_it_was():  # off, as a new process starts
        assert main(["--resume", str(run), "--no-progress"]) == 0
    assert "the textbook DataLoader" in capsys.readouterr().out
    assert given == [("cpu", "dataloader", False, False, True)] * 2


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"loader": "bogus"}, "its command option loader is 'bogus', expected one of tensor, dataloader, torchvision"),
        ({"tf32": "yes"}, "its command option tf32 is 'yes', expected a bool"),
        ({"threads": 4}, "unknown command option 'threads'"),
    ],
)
def test_a_hand_edited_command_option_is_refused_in_one_line(tmp_path, capsys, monkeypatch, options, expected):
    end_epoch = RunFolder.end_epoch

    def end_epoch_then_ctrl_c(self, *args):
        end_epoch(self, *args)
        os.kill(os.getpid(), signal.SIGINT)

    run = tmp_path / "r"
    with monkeypatch.context() as patch:
        patch.setattr(RunFolder, "end_epoch", end_epoch_then_ctrl_c)
        assert main([*QUICK, "--device", "cpu", "--out", str(run)]) == 130
    saved = json.loads((run / "config.json").read_text())
    saved["command_options"].update(options)
    (run / "config.json").write_text(json.dumps(saved))
    capsys.readouterr()
    assert_one_line_error((main(["--resume", str(run)]), capsys.readouterr().err), 1, expected)
    assert (run / "checkpoint.npz").is_file()  # nothing lost: put the option back and resume

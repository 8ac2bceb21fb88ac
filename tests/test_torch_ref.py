"""``python -m torch_ref.train``: the same command as lr_from_scratch's, in PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import prepare
from lr_from_scratch.runs import load_checkpoint, load_model, save_checkpoint
from lr_from_scratch.trainer import TrainingInterrupted, TrainState, fit
from torch_ref.backend import TorchBackend
from torch_ref.model import LogisticRegression
from torch_ref.train import main

from .conftest import assert_one_line_error

QUICK = ["--limit", "3000", "--epochs", "3", "--no-progress"]


def test_run_folder_holds_the_shared_outputs_and_a_state_dict(tmp_path, capsys):
    assert main([*QUICK, "--lr-step", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "torch on cpu, tensor loader" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json", "curves.png", "history.csv", "metrics.json", "model.npz", "model.pt",
    ]  # fmt: skip
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["backend"] == "torch" and metrics["device"] == "cpu" and metrics["loader"] == "tensor"
    assert metrics["tf32"] is False
    model = LogisticRegression()
    model.load_state_dict(torch.load(tmp_path / "model.pt"))
    saved = load_model(tmp_path)
    np.testing.assert_array_equal(model.arrays()[0], saved.weight)
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
    (tmp_path / "metrics.json").unlink()
    save_checkpoint(tmp_path / "checkpoint.npz", {"weight": np.zeros((10, 784)), "bias": np.zeros(10)}, TrainState())
    capsys.readouterr()
    code = scratch_main(["--resume", str(tmp_path)])
    assert_one_line_error((code, capsys.readouterr().err), 2, "resume it with python -m torch_ref.train")


@pytest.mark.parametrize("loader", ["tensor", "dataloader"])
def test_interrupted_and_resumed_torch_run_ends_with_identical_weights(mnist, tmp_path, loader):
    config = TrainConfig(limit=1000, batch_size=32, epochs=3, lr_step=1, momentum=0.9, dtype="float64")
    splits = prepare(mnist, config)
    n = len(splits.train)

    def backend():
        return TorchBackend(config, splits, torch.device("cpu"), loader)

    whole = backend()
    fit(whole, config, n, progress=False, log=None)
    first = backend()
    state, calls = TrainState(), iter(range(1, 1000))
    with pytest.raises(TrainingInterrupted):  # 29 batches of 32 are 2 calls an epoch: stop inside epoch 2
        fit(first, config, n, state, progress=False, log=None, should_stop=lambda: next(calls) >= 3)
    save_checkpoint(tmp_path / "checkpoint.npz", first.state(), state)
    arrays, state = load_checkpoint(tmp_path / "checkpoint.npz")
    resumed = backend()
    resumed.load_state(arrays)
    fit(resumed, config, n, state, progress=False, log=None)
    np.testing.assert_array_equal(resumed.params()[0], whole.params()[0])
    assert resumed.optimizer.param_groups[0]["lr"] == whole.optimizer.param_groups[0]["lr"]

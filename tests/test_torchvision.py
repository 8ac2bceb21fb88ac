"""``python -m torch_ref.train --loader torchvision``: torchvision's own MNIST pipeline over the verified files.

torchvision does not import beside the CPU torch that ``make test`` installs, so these run in a second
environment: ``make test-vision`` (torch 2.14.1 and torchvision 0.29.1), which CI runs too. Each test runs in
the environment that has what it needs, and says so where it skips.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import prepare
from lr_from_scratch.trainer import fit
from torch_ref.backend import TorchBackend
from torch_ref.train import main

from .conftest import assert_one_line_error


def torchvision_imports() -> bool:
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:
        import torchvision  # noqa: F401
    except Exception:  # built for another torch
        return False
    return True


HAS_TORCHVISION = torchvision_imports()
with_torchvision = pytest.mark.skipif(not HAS_TORCHVISION, reason="no torchvision here: make test-vision runs this")
without_torchvision = pytest.mark.skipif(HAS_TORCHVISION, reason="torchvision imports here")


@with_torchvision
def test_torchvision_takes_the_same_steps_as_the_textbook_dataloader(mnist, mnist_dir):
    config = TrainConfig(limit=3000, epochs=2, momentum=0.9)
    splits = prepare(mnist, config)
    params = {}
    for loader in ("dataloader", "torchvision"):
        backend = TorchBackend(config, splits, torch.device("cpu"), loader, mnist_dir)
        fit(backend, config, progress=False, log=None)
        params[loader] = (*backend.params(), backend.evaluate("test"))
    np.testing.assert_array_equal(params["torchvision"][0], params["dataloader"][0])
    np.testing.assert_array_equal(params["torchvision"][1], params["dataloader"][1])
    assert params["torchvision"][2] == params["dataloader"][2]


@with_torchvision
def test_the_command_trains_with_torchvision_from_the_verified_files(tmp_path, capsys, mnist_dir):
    from torchvision.datasets import MNIST

    code = main(["--loader", "torchvision", "--limit", "2000", "--epochs", "1", "--no-progress",
                 "--data-dir", str(mnist_dir), "--out", str(tmp_path / "r")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "torchvision loader" in capsys.readouterr().out
    assert len(MNIST(mnist_dir, train=False, download=False)) == 10_000  # torchvision finds its layout there


@with_torchvision
def test_torchvision_with_float64_is_one_line(tmp_path, capsys):
    code = main(["--loader", "torchvision", "--dtype", "float64", "--out", str(tmp_path / "r")])
    assert_one_line_error((code, capsys.readouterr().err), 2, "--loader torchvision gives float32")


@without_torchvision
def test_without_torchvision_the_loader_is_one_line_exit_2(tmp_path, capsys):
    code = main(["--loader", "torchvision", "--out", str(tmp_path / "r")])
    assert_one_line_error((code, capsys.readouterr().err), 2, "--loader torchvision: torchvision does not import")
    assert not (tmp_path / "r").exists()

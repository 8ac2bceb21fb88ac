"""lr_from_scratch against PyTorch: the same forward, gradients, optimizer steps, trajectory and accuracy.

Every comparison prints the largest absolute difference per named tensor (run ``pytest -s`` to see them), in
the manner of llm.c's test_gpt2. Tolerances: float64 agrees to rounding (1e-12 on the forward pass, 1e-10 on
gradients and 100 optimizer steps, 1e-8 on weights after a whole epoch); float32 agrees to 1e-5 relative on
the forward pass and gradients (a few units in the last place of float32's 7 digits), and after a whole epoch
to 1e-4 on the weights and 0.05 points of test accuracy.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from lr_from_scratch.backends import make_backend
from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import prepare, scale_images
from lr_from_scratch.functional import cross_entropy, linear, softmax
from lr_from_scratch.model import SoftmaxRegression
from lr_from_scratch.optim import SGD
from lr_from_scratch.saved import load_model
from lr_from_scratch.trainer import fit
from torch_ref.backend import TorchBackend
from torch_ref.model import from_arrays, load_npz

from .conftest import random_batch, run_module

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the CUDA comparisons need a GPU")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}
FORWARD_RTOL = {"float64": 1e-12, "float32": 1e-5}
GRAD_RTOL = {"float64": 1e-10, "float32": 1e-5}


@pytest.fixture(autouse=True)
def exact_float32_on_cuda():
    """TF32 off: float32 matrix products on CUDA stay float32 (the default of torch_ref.train too)."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before


def compare(name: str, mine, theirs, rtol: float = 0.0, atol: float = 0.0) -> None:
    """Print and check max |mine - theirs| <= atol + rtol * max |theirs|."""
    theirs = theirs.detach().cpu().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    diff = float(np.max(np.abs(np.asarray(mine, dtype=np.float64) - theirs)))
    allowed = atol + rtol * float(np.max(np.abs(theirs)))
    print(f"{name:<26} max |mine - torch| = {diff:.3e}  (allowed {allowed:.1e})")
    assert diff <= allowed, f"{name}: max |mine - torch| = {diff:.3e}, allowed {allowed:.3e}"


def torch_side(x, y, w, b, device):
    """nn.Linear + nn.CrossEntropyLoss with autograd, on copies of the same tensors."""
    model = from_arrays(w, b).to(device)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    logits = model(xt)
    loss = torch.nn.CrossEntropyLoss()(logits, yt)
    loss.backward()
    return logits, torch.softmax(logits, dim=1), loss, model.linear.weight.grad, model.linear.bias.grad


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch", [1, 64, 1000])
def test_forward_and_gradients_match_autograd(batch, dtype, device):
    x, y, w, b = random_batch(np.random.default_rng(batch), batch, dtype=dtype)
    logits, probs, loss, dw_t, db_t = torch_side(x, y, w, b, device)
    z = linear(x, w, b)
    _, _, dw, db = SoftmaxRegression(w, b).forward_backward(x, y)
    compare("logits", z, logits, FORWARD_RTOL[dtype])
    compare("probabilities", softmax(z), probs, FORWARD_RTOL[dtype])
    compare("loss", cross_entropy(z, y), loss, FORWARD_RTOL[dtype])
    compare("dL/dW", dw, dw_t, GRAD_RTOL[dtype])
    compare("dL/db", db, db_t, GRAD_RTOL[dtype])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_extreme_logits_match_autograd(dtype, device):
    x, y, w, b = random_batch(np.random.default_rng(9), 64, dtype=dtype)
    w = (w * 4000).astype(dtype)  # logits of order +-1e4
    logits, probs, loss, dw_t, db_t = torch_side(x, y, w, b, device)
    z = linear(x, w, b)
    assert np.abs(z).max() > 1e4
    _, _, dw, db = SoftmaxRegression(w, b).forward_backward(x, y)
    assert np.isfinite(cross_entropy(z, y)) and np.isfinite(dw).all()
    compare("loss", cross_entropy(z, y), loss, FORWARD_RTOL[dtype])
    compare("probabilities", softmax(z), probs, FORWARD_RTOL[dtype])
    compare("dL/dW", dw, dw_t, GRAD_RTOL[dtype])
    compare("dL/db", db, db_t, GRAD_RTOL[dtype])


SGD_GRID = [
    dict(momentum=m, nesterov=n, weight_decay=wd, dampening=d)
    for m, n, wd, d in itertools.product([0.0, 0.9], [False, True], [0.0, 1e-4], [0.0, 0.5])
    if not (n and (m == 0 or d != 0))  # torch.optim.SGD refuses Nesterov without momentum or with dampening
]


@pytest.mark.parametrize("options", SGD_GRID, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_100_sgd_steps_match_torch_optim_sgd(options):
    rng = np.random.default_rng(11)
    params = [rng.normal(size=(10, 784)), rng.normal(size=10)]
    grads = [[rng.normal(size=p.shape) for p in params] for _ in range(100)]
    mine = SGD([p.copy() for p in params], lr=0.05, **options)
    theirs = [torch.tensor(p, requires_grad=True) for p in params]
    torch_sgd = torch.optim.SGD(theirs, lr=0.05, **options)
    for step, g in enumerate(grads):
        if step == 50:  # a learning-rate change must act at once, as in PyTorch
            mine.lr = torch_sgd.param_groups[0]["lr"] = 0.005
        mine.step(g)
        for t, gi in zip(theirs, g, strict=True):
            t.grad = torch.tensor(gi)
        torch_sgd.step()
    compare("weight after 100 steps", mine.params[0], theirs[0], atol=1e-10)
    compare("bias after 100 steps", mine.params[1], theirs[1], atol=1e-10)


def one_epoch(mnist, backend, dtype, device="cpu", loader="tensor"):
    config = TrainConfig(epochs=1, dtype=dtype, backend=backend)
    splits = prepare(mnist, config)
    model = (
        TorchBackend(config, splits, torch.device(device), loader)
        if backend == "torch"
        else make_backend(config, splits)
    )
    fit(model, config, progress=False, log=None)
    return model, splits


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_one_float64_epoch_on_mnist_matches_torch(mnist, backend, device):
    mine, splits = one_epoch(mnist, backend, "float64")
    theirs, _ = one_epoch(mnist, "torch", "float64", device)
    (w, b), (wt, bt) = mine.params(), theirs.params()
    compare("weight after one epoch", w, wt, atol=1e-8)
    compare("bias after one epoch", b, bt, atol=1e-8)
    x = scale_images(splits.test.images, splits.mean, splits.std, "float64")
    np.testing.assert_array_equal(SoftmaxRegression(w, b).predict(x), SoftmaxRegression(wt, bt).predict(x))
    assert mine.evaluate("test")[1] == theirs.evaluate("test")[1]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_one_float32_epoch_on_mnist_matches_torch(mnist, backend, device):
    mine, _ = one_epoch(mnist, backend, "float32")
    theirs, _ = one_epoch(mnist, "torch", "float32", device)
    compare("weight after one epoch", mine.params()[0], theirs.params()[0], atol=1e-4)
    accuracy, torch_accuracy = mine.evaluate("test")[1], theirs.evaluate("test")[1]
    print(f"test accuracy: mine {accuracy:.4%}, torch {torch_accuracy:.4%}")
    assert abs(accuracy - torch_accuracy) <= 0.0005


def test_the_textbook_dataloader_takes_the_same_steps(mnist):
    tensor, _ = one_epoch(mnist, "torch", "float64", loader="tensor")
    dataloader, _ = one_epoch(mnist, "torch", "float64", loader="dataloader")
    np.testing.assert_array_equal(dataloader.params()[0], tensor.params()[0])


@pytest.fixture(scope="module")
def default_runs(tmp_path_factory, mnist):
    """Default training with each package, as a user runs it."""
    runs = {}
    for module in ("lr_from_scratch.train", "torch_ref.train"):
        out = tmp_path_factory.mktemp(module.split(".")[0])
        result = run_module(module, "--out", str(out), "--no-progress")
        assert result.returncode == 0, result.stderr
        runs[module] = out
    return runs


def test_default_training_reaches_92_percent_in_both_packages(default_runs):
    accuracy = {m: json.loads((d / "metrics.json").read_text())["test_accuracy"] for m, d in default_runs.items()}
    print(accuracy)
    assert min(accuracy.values()) >= 0.92
    assert abs(accuracy["lr_from_scratch.train"] - accuracy["torch_ref.train"]) <= 0.002


@pytest.mark.parametrize("trained_by", ["lr_from_scratch.train", "torch_ref.train"])
def test_a_model_from_either_package_predicts_the_same_in_the_other(default_runs, mnist, trained_by):
    path = default_runs[trained_by] / "model.npz"
    saved = load_model(path)
    x = scale_images(mnist.test_images, saved.mean, saved.std, saved.weight.dtype)
    numpy_predictions = SoftmaxRegression(saved.weight, saved.bias).predict(x)
    model, mean, std = load_npz(path)
    with torch.no_grad():
        torch_predictions = model(torch.from_numpy(x)).argmax(dim=1).numpy()
    np.testing.assert_array_equal(numpy_predictions, torch_predictions)
    accuracy = json.loads((default_runs[trained_by] / "metrics.json").read_text())["test_accuracy"]
    assert (numpy_predictions == mnist.test_labels).mean() == pytest.approx(accuracy, abs=1e-12)

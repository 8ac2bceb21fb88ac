"""Softmax regression on MNIST as a PyTorch user writes it: the whole program in one file.

Run it by itself with ``python -m torch_ref.textbook [--data-dir DIR] [--epochs 20] [--device cpu]``. It imports
only torch, NumPy and the standard library, and reads the four MNIST files that ``python -m
lr_from_scratch.train`` fetched and verified. ``tests/test_torch_ref.py`` proves it takes exactly the steps of
``python -m torch_ref.train`` (same initial weights and order: the same weights after an epoch).
"""

import argparse
import gzip
import math
import os
import signal
import sys
import zlib
from pathlib import Path


def stop_at_once(signum, frame):
    """A Ctrl-C while torch loads (a few seconds), or a SIGTERM at any time: one line and the shell's 130 or 143,
    not a traceback from inside torch's import (``os._exit``: an exception raised there could be caught by the
    code it interrupts; this script saves nothing, so there is nothing to finish)."""
    print("interrupted by Ctrl-C" if signum == signal.SIGINT else "terminated by SIGTERM", file=sys.stderr, flush=True)
    os._exit(128 + signum)


# Run as a script, and unless the shell started it with the signal ignored (Ctrl-C in a background job of a script).
LOADING = __name__ == "__main__" and signal.getsignal(signal.SIGINT) is signal.default_int_handler
if LOADING:
    signal.signal(signal.SIGINT, stop_at_once)
if __name__ == "__main__" and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, stop_at_once)  # kill, a scheduler's time limit: one line, not a silent end

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

MEAN, STD = 0.1307, 0.3081  # of the 60,000 training images' pixels, after / 255
BATCH_SIZE, LR, MOMENTUM, LR_STEP, LR_GAMMA, EPOCHS = 64, 0.01, 0.9, 10, 0.1, 20
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
DATA_DIR = Path(os.environ.get("LR_FROM_SCRATCH_DATA") or CACHE / "lr-from-scratch" / "mnist")
FILES = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (or .gz)"


def read_idx(folder: Path, name: str) -> np.ndarray:
    """An IDX file (``name`` or ``name.gz``): 4 bytes of magic number (the last one is the number of
    dimensions), one big-endian uint32 per dimension, then the uint8 data."""
    path = folder / name if (folder / name).exists() else folder / f"{name}.gz"
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:  # not gzip, cut short, or corrupt inside
        raise ValueError(f"{path.name} is not a whole gzip file ({exc})") from None
    # The header must be whole (two zero bytes, 0x08 for uint8 data, the dimensions), and the data its size.
    if len(data) < 4 or data[:3] != b"\0\0\x08" or len(data) < 4 + 4 * data[3]:
        raise ValueError(f"{path.name} has no IDX header of uint8 data (it starts {data[:4].hex(' ') or 'empty'})")
    shape = tuple(np.frombuffer(data, ">u4", count=data[3], offset=4).tolist())
    if len(data) != 4 + 4 * data[3] + math.prod(shape):
        raise ValueError(f"{path.name} holds {len(data)} bytes, the wrong number for its header's shape {shape}")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * data[3]).reshape(shape)


def mnist_folder(folder: Path) -> Path:
    """Where MNIST's files are: ``folder`` itself, or torchvision's layout below it (``folder/MNIST/raw``, what
    ``torchvision.datasets.MNIST(folder, download=True)`` leaves), so a torchvision download is read as it is."""
    raw = folder / "MNIST" / "raw"
    return raw if not any(folder.glob("train-images-idx3-ubyte*")) and raw.is_dir() else folder


def load(folder: Path, prefix: str):
    """``(images, labels)`` of one split: ``prefix`` is ``train`` or ``t10k``, as in MNIST's file names."""
    images, labels = read_idx(folder, f"{prefix}-images-idx3-ubyte"), read_idx(folder, f"{prefix}-labels-idx1-ubyte")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} {prefix} images but {len(labels)} labels: the files do not belong together")
    if images.shape[1:] != (28, 28) or labels.ndim != 1 or not len(labels):
        shapes = f"{prefix} images {images.shape} and labels {labels.shape}"
        raise ValueError(f"{shapes}; expected (n, 28, 28) and (n,), n > 0")
    if labels.max() > 9:  # else torch fails mid-training: "Target 200 is out of bounds"
        raise ValueError(f"a {prefix} label is {labels.max()}, but MNIST's labels are the digits 0 to 9")
    return images, labels


class MNISTDataset(Dataset):
    """Images one at a time, as ``ToTensor()`` then ``Normalize(mean, std)`` would give them, but flat."""

    def __init__(self, images, labels, mean=MEAN, std=STD, dtype=torch.float32):
        self.images, self.labels, self.mean, self.std, self.dtype = images, labels, mean, std, dtype

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = torch.tensor(self.images[i], dtype=self.dtype).flatten() / 255  # a copy: the arrays are read-only
        return (x - self.mean) / self.std, int(self.labels[i])


class LogisticRegression(nn.Module):
    """``logits = Linear(flatten(x))``. No softmax: ``nn.CrossEntropyLoss`` applies log-softmax itself."""

    def __init__(self, n_features=784, n_classes=10):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x):
        return self.linear(self.flatten(x))


def build(device="cpu", dtype=torch.float32):
    """The model, the loss, the optimizer and the learning-rate schedule."""
    model = LogisticRegression().to(device, dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=LR_STEP, gamma=LR_GAMMA)
    return model, nn.CrossEntropyLoss(), optimizer, scheduler


def train_epoch(model, loader, loss_fn, optimizer, device="cpu"):
    model.train()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def evaluate(model, loader, device="cpu"):
    """(mean loss, accuracy) over the loader's samples."""
    model.eval()
    loss, correct = 0.0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
    return loss / len(loader.dataset), correct / len(loader.dataset)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help=f"the MNIST files (default: {DATA_DIR})")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    parser.error = lambda message: parser.exit(2, f"error: {message}\n")  # one line, without the usage
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but this torch sees no CUDA device; use --device cpu")
    try:  # a folder named in the environment may start with ~, which the shell did not expand
        folder = args.data_dir.expanduser()
    except RuntimeError:
        parser.error(f"{args.data_dir}: this machine has no user {args.data_dir.parts[0][1:]!r}; write ~/ for yours")
    try:
        folder = mnist_folder(folder)
        train_set, test_set = MNISTDataset(*load(folder, "train")), MNISTDataset(*load(folder, "t10k"))
    except (OSError, ValueError) as exc:
        todo = f"expected MNIST's {FILES} there"
        if args.data_dir == DATA_DIR:  # the folder that python -m lr_from_scratch.train fetches MNIST into
            todo = "run python -m lr_from_scratch.train once"
        sys.exit(f"error: cannot read MNIST in {args.data_dir} ({exc}); {todo}")
    torch.manual_seed(0)
    train_loader = DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True)
    test_loader = DataLoader(test_set, batch_size=1000)
    model, loss_fn, optimizer, scheduler = build(args.device)
    for epoch in range(args.epochs):
        train_epoch(model, train_loader, loss_fn, optimizer, args.device)
        scheduler.step()
        test_loss, test_accuracy = evaluate(model, test_loader, args.device)
        line = f"epoch {epoch + 1}/{args.epochs}  test loss {test_loss:.4f}  test accuracy {test_accuracy:.2%}"
        print(line, flush=True)  # now, not at exit: a closed pipe or a full disk fails here, inside the try below


if __name__ == "__main__":
    if LOADING:  # from here a Ctrl-C is a KeyboardInterrupt, caught below
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        main()
    except KeyboardInterrupt:  # Ctrl-C: one line, not a traceback (this script saves nothing)
        print("interrupted by Ctrl-C", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # a print failed: the reader went away (| head -1), or the disk is full
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so Python's last flush cannot fail again
        if isinstance(exc, BrokenPipeError):
            sys.exit(141)  # quietly, as Unix tools stop when the reader has gone (128 + SIGPIPE)
        sys.exit(f"error: cannot write to standard output ({exc.strerror}); free some space or send it elsewhere")

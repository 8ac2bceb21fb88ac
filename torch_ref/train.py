"""``python -m torch_ref.train``: the same training, options and outputs as lr_from_scratch, in PyTorch.

Adds ``--device {auto,cpu,cuda}``, ``--loader {tensor,dataloader,torchvision}``, ``--tf32``, ``--compile`` and
``--cuda-graphs``; writes ``model.pt`` (the ``state_dict``) beside the shared ``model.npz``.
"""

from __future__ import annotations

import sys

import torch

from lr_from_scratch.cli import run_cli
from lr_from_scratch.command import Recipe, run_training
from lr_from_scratch.errors import ConfigError
from lr_from_scratch.files import atomic_open

from .backend import LOADERS, TorchBackend, check_cuda_graphs

MODEL_PT = "model.pt"


def add_arguments(parser) -> None:
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda when available")
    parser.add_argument(
        "--loader", choices=LOADERS, default="tensor",
        help="tensor: data on the device, batches by index (fast); dataloader: Dataset + DataLoader (textbook); "
        "torchvision: torchvision.datasets.MNIST with ToTensor and Normalize",
    )  # fmt: skip
    parser.add_argument("--tf32", action="store_true", help="allow TF32 matrix products on CUDA (off: exact float32)")
    parser.add_argument(
        "--compile", action="store_true",
        help="torch.compile the training step (compiles for a while first; on the CPU it measured slower)",
    )  # fmt: skip
    parser.add_argument(
        "--cuda-graphs", action="store_true",
        help="record each block of steps as a CUDA graph once and replay it (CUDA and the tensor loader only)",
    )  # fmt: skip


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without CUDA is a command-line mistake."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda: this torch sees no CUDA device (torch.cuda.is_available() is False); use --device cpu"
        )
    return torch.device(name)


def check_torchvision(config) -> None:
    """``--loader torchvision`` needs a torchvision that imports beside this torch, and float32 (what
    ``ToTensor`` makes)."""
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # not installed, or built for another torch (RuntimeError: operator ... does not exist)
        raise ConfigError(
            f"--loader torchvision: torchvision does not import here ({type(exc).__name__}: {str(exc)[:80]}); "
            f"install a torchvision built for torch {torch.__version__.split('+')[0]}, or use --loader dataloader"
        ) from None
    if config.dataset != "mnist":
        raise ConfigError(
            f"--loader torchvision reads MNIST only, got --dataset {config.dataset}: use --loader dataloader"
        )
    if config.dtype != "float32":
        raise ConfigError(f"--loader torchvision gives float32 (ToTensor), got --dtype {config.dtype}: drop --dtype")


def set_up(config, args) -> dict:
    if args.loader == "torchvision":
        check_torchvision(config)
    device = resolve_device(args.device)
    check_cuda_graphs(args.cuda_graphs, device, args.loader, args.compile)  # before the run folder exists
    if args.tf32 and device.type != "cuda":
        print(f"note: --tf32 changes CUDA's float32 matrix products only; this run is on the {device.type}, where it "
              "changes nothing", file=sys.stderr)  # fmt: skip
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"device": name, "loader": args.loader, "tf32": args.tf32, "torch_version": torch.__version__}


def save_state_dict(backend: TorchBackend, run_dir) -> list[str]:
    with atomic_open(run_dir / MODEL_PT, "wb") as f:
        torch.save(backend.model.state_dict(), f)
    return [MODEL_PT]


def build_backend(config, splits, args) -> TorchBackend:
    """The backend, saying how long ``--compile`` took (it compiles there, so no epoch's timing includes it)."""
    device = resolve_device(args.device)
    backend = TorchBackend(config, splits, device, args.loader, args.data_dir, args.compile, args.cuda_graphs)
    if args.compile:
        print(f"torch.compile compiled the step in {backend.info['compile_seconds']:.1f} s")
    return backend


RECIPE = Recipe(
    prog="python -m torch_ref.train",
    backends=("torch",),
    add_arguments=add_arguments,
    saved_options=("device", "loader", "tf32", "compile", "cuda_graphs"),  # --resume keeps them, as the others
    set_up=set_up,
    make_backend=build_backend,
    describe=lambda config, args: (
        f"torch on {resolve_device(args.device)}, "
        + ("the textbook DataLoader" if args.loader == "dataloader" else f"{args.loader} loader")
        + ", compiled" * args.compile
        + ", CUDA graphs" * args.cuda_graphs
    ),
    save_extra=save_state_dict,
)


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda argv: run_training(RECIPE, __doc__.splitlines()[0], argv), argv)


if __name__ == "__main__":
    sys.exit(main())

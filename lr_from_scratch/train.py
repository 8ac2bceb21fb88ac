"""``python -m lr_from_scratch.train``: train softmax regression on MNIST and write a run folder.

Run ``python -m lr_from_scratch.train --help`` for the options; the defaults reach about 92.5% test accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from .backends import make_backend
from .cli import ArgumentParser, StopOnInterrupt, run_cli
from .config import BACKENDS, DTYPES, TrainConfig
from .data import load_mnist, prepare
from .errors import ConfigError, TrainingDiverged, UserError
from .files import write_json
from .model import INITS
from .plots import plot_history
from .runs import (
    CHECKPOINT,
    CONFIG,
    CURVES,
    HISTORY,
    METRICS,
    MODEL,
    load_checkpoint,
    save_checkpoint,
    save_model,
    write_history,
)
from .trainer import TrainingInterrupted, TrainState, fit

CONFIG_HELP = {
    "epochs": "maximum number of epochs",
    "batch_size": "samples per SGD step",
    "lr": "learning rate (multiplied by --lr-gamma every --lr-step epochs)",
    "momentum": "SGD momentum, PyTorch's convention",
    "dampening": "SGD dampening",
    "nesterov": "Nesterov momentum (needs --momentum > 0)",
    "weight_decay": "L2 penalty added to the gradient",
    "lr_step": "epochs between learning-rate decays (0: constant rate)",
    "lr_gamma": "learning-rate decay factor",
    "patience": "stop after this many epochs without a better validation loss (0: never)",
    "val_split": "fraction of the training set held out for validation (0: train on all, no early stopping)",
    "normalize": "scale pixels to (x/255 - 0.1307) / 0.3081 instead of x/255",
    "init": "weight initialisation",
    "seed": "seed of the split, the initial weights and the batch order",
    "dtype": "floating-point precision",
    "backend": "numba: the fused sparse kernels; numpy: the readable reference",
    "limit": "train on the first N samples of the training set only (quick runs)",
}


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field. Defaults are suppressed, so the namespace holds only the flags
    the user gave (``--resume`` needs to know); the help shows the real defaults."""
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        kwargs = {"default": argparse.SUPPRESS, "help": f"{CONFIG_HELP[field.name]} (default: {default})"}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif field.name == "init":
            kwargs["choices"] = INITS
        elif field.name == "dtype":
            kwargs["choices"] = DTYPES
        elif field.name == "backend":
            kwargs["choices"] = BACKENDS
        else:
            kwargs["type"] = float if isinstance(default, float) else int
            kwargs["metavar"] = "N" if kwargs["type"] is int else "X"
        parser.add_argument(flag, **kwargs)


def build_parser(prog: str = "python -m lr_from_scratch.train") -> ArgumentParser:
    parser = ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_config_arguments(parser)
    parser.add_argument(
        "--data-dir", help="folder with the MNIST IDX files (default: $LR_FROM_SCRATCH_DATA or ~/.cache)"
    )
    parser.add_argument("--out", metavar="DIR", help="run folder to create (default: runs/<timestamp>)")
    parser.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR with its saved options")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    if args.resume:
        run_dir, config, (backend_state, state) = _open_resume(Path(args.resume), given, args.out)
    else:
        config = TrainConfig(**given).validate()
        run_dir = Path(args.out) if args.out else _new_run_dir()
        if (run_dir / CONFIG).exists():
            raise ConfigError(f"--out {run_dir} already holds a run: choose another folder, or --resume {run_dir}")
        backend_state, state = None, TrainState()

    splits = prepare(load_mnist(args.data_dir, progress=not args.no_progress), config)
    compile_seconds = _compile_kernels(config) if config.backend == "numba" else 0.0
    backend = make_backend(config, splits)
    if backend_state is not None:
        backend.load_state(backend_state)
    else:
        write_json(run_dir / CONFIG, config.to_dict())
    n_train, n_val = len(splits.train), 0 if splits.val is None else len(splits.val)
    print(
        f"{'resuming' if args.resume else 'training'} softmax regression: {n_train:,} train / "
        f"{n_val:,} validation / {len(splits.test):,} test samples, batch {config.batch_size}, "
        f"{config.dtype}, {config.backend} backend -> {run_dir}"
    )

    def save_history(state: TrainState) -> None:
        write_history(run_dir / HISTORY, state.history)

    with StopOnInterrupt() as stop:
        try:
            state = fit(
                backend, config, n_train, state, has_val=n_val > 0, progress=not args.no_progress,
                should_stop=stop, on_epoch_end=save_history,
            )  # fmt: skip
        except TrainingInterrupted:
            save_checkpoint(run_dir / CHECKPOINT, backend.state(), state)
            print(
                f"interrupted in epoch {state.epoch + 1} after {state.batch} batches; checkpoint saved. "
                f"Continue with: python -m lr_from_scratch.train --resume {run_dir}",
                file=sys.stderr,
            )
            return 130
        except TrainingDiverged:
            if state.best_weight is not None:
                save_model(run_dir / MODEL, state.best_weight, state.best_bias, splits.mean, splits.std, config)
            raise

    backend.load_state({"weight": state.best_weight, "bias": state.best_bias})
    test_loss, test_accuracy = backend.evaluate("test")
    n_seen = n_train * len(state.history)
    metrics = {
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "best_epoch": state.best_epoch,
        "best_val_loss": state.best_val_loss if n_val else None,
        "epochs_run": len(state.history),
        "stopped_early": state.stopped_early,
        "train_seconds": state.train_seconds,
        "samples_per_second": n_seen / state.train_seconds,
        "backend": config.backend,
        "compile_seconds": compile_seconds,
    }
    save_model(run_dir / MODEL, state.best_weight, state.best_bias, splits.mean, splits.std, config)
    plot_history(state.history, run_dir / CURVES, title=f"softmax regression on MNIST ({run_dir.name})")
    write_json(run_dir / METRICS, metrics)
    (run_dir / CHECKPOINT).unlink(missing_ok=True)
    print(
        f"test accuracy {test_accuracy:.2%}, test loss {test_loss:.4f} (weights of epoch {state.best_epoch}; "
        f"{state.train_seconds:.2f} s of training, {metrics['samples_per_second']:,.0f} samples/s)"
    )
    print(f"wrote {run_dir}/: {CONFIG} {HISTORY} {METRICS} {MODEL} {CURVES}")
    return 0


def _compile_kernels(config: TrainConfig) -> float:
    """Compile the Numba kernels now (or load them from the cache), so no epoch's timing includes it."""
    from .kernels import warm_up

    seconds, compiled = warm_up(config.dtype)
    how = "compiled (cached for later runs)" if compiled else "loaded from the cache"
    print(f"numba kernels {how} in {seconds:.1f} s")
    return seconds


def _open_resume(run_dir: Path, given: dict, out: str | None):
    """The run folder, its saved config and checkpoint; refuses options that would change the run."""
    if given or out:
        flag = "--out" if out else "--" + next(iter(given)).replace("_", "-")
        raise ConfigError(
            f"{flag} cannot be combined with --resume: a resumed run keeps the options in {run_dir / CONFIG}"
        )
    if not (run_dir / CONFIG).is_file():
        raise ConfigError(f"--resume {run_dir}: no {CONFIG} there; expected the folder of an interrupted run")
    if not (run_dir / CHECKPOINT).is_file():
        done = (run_dir / METRICS).is_file()
        why = "the run already finished" if done else f"no {CHECKPOINT} (the run was not interrupted with Ctrl-C)"
        raise ConfigError(f"--resume {run_dir}: nothing to resume, {why}")
    try:
        config = TrainConfig.from_dict(json.loads((run_dir / CONFIG).read_text())).validate()
    except (ValueError, TypeError) as exc:
        raise UserError(f"{run_dir / CONFIG}: not a valid run config ({exc})") from None
    return run_dir, config, load_checkpoint(run_dir / CHECKPOINT)


def _new_run_dir() -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, n = Path("runs") / stamp, 1
    while run_dir.exists():
        n += 1
        run_dir = Path("runs") / f"{stamp}-{n}"
    return run_dir


if __name__ == "__main__":
    sys.exit(main())

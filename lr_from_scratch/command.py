"""The training command, shared by ``python -m lr_from_scratch.train`` and ``python -m torch_ref.train``.

Both parse the same options, load the same data, drive :func:`~lr_from_scratch.trainer.fit` and write the
same run folder; a :class:`Recipe` supplies the rest (which backends, extra flags, how to build a backend,
extra outputs). Ctrl-C saves a checkpoint that ``--resume`` continues exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .cli import ArgumentParser, StopOnInterrupt
from .config import DTYPES, TrainConfig
from .data import Splits, load_mnist, prepare
from .errors import ConfigError, TrainingDiverged
from .model import INITS
from .runs import CONFIG, RunFolder
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
    "backend": "numba: the fused sparse kernels; numpy: the readable reference; numba-naive: the first, naive port",
    "limit": "train on the first N samples of the training set only (quick runs)",
}


@dataclass
class Recipe:
    """What one training command adds to the shared one."""

    prog: str  #: how the command is run, for --help and the resume hint
    backends: tuple[str, ...]  #: --backend choices; with one, there is no --backend flag
    make_backend: Callable[[TrainConfig, Splits, argparse.Namespace], object]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    #: called before the data is loaded (checks the command's own flags); returns extra figures for metrics.json
    set_up: Callable[[TrainConfig, argparse.Namespace], dict] = lambda config, args: {}
    describe: Callable[[TrainConfig, argparse.Namespace], str] = lambda config, args: f"{config.backend} backend"
    #: writes extra files into the run folder after training; returns their names
    save_extra: Callable[[object, Path], list[str]] = lambda backend, run_dir: []


def add_config_arguments(parser: argparse.ArgumentParser, backends: tuple[str, ...]) -> None:
    """One flag per :class:`TrainConfig` field. Defaults are suppressed, so the namespace holds only the flags
    the user gave (``--resume`` needs to know); the help shows the real defaults."""
    defaults = TrainConfig()
    for field in dataclasses.fields(TrainConfig):
        if field.name == "backend" and len(backends) == 1:
            continue
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        kwargs = {"default": argparse.SUPPRESS, "help": f"{CONFIG_HELP[field.name]} (default: {default})"}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif field.name in ("init", "dtype", "backend"):
            kwargs["choices"] = {"init": INITS, "dtype": DTYPES, "backend": backends}[field.name]
        else:
            kwargs["type"] = float if isinstance(default, float) else int
            kwargs["metavar"] = "N" if kwargs["type"] is int else "X"
        parser.add_argument(flag, **kwargs)


def build_parser(recipe: Recipe, description: str) -> ArgumentParser:
    parser = ArgumentParser(prog=recipe.prog, description=description)
    add_config_arguments(parser, recipe.backends)
    parser.add_argument(
        "--data-dir", help="folder with the MNIST IDX files (default: $LR_FROM_SCRATCH_DATA or ~/.cache)"
    )
    parser.add_argument("--out", metavar="DIR", help="run folder to create (default: runs/<timestamp>)")
    parser.add_argument("--resume", metavar="DIR", help="continue the interrupted run in DIR with its saved options")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    recipe.add_arguments(parser)
    return parser


def run_training(recipe: Recipe, description: str, argv: list[str] | None) -> int:
    """Parse ``argv``, train, write the run folder; returns the exit status (130 after Ctrl-C)."""
    args = build_parser(recipe, description).parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    if len(recipe.backends) == 1:
        given["backend"] = recipe.backends[0]
    if args.resume:
        folder, backend_state, state = _open_resume(recipe, args.resume, given, args.out)
    else:
        folder, backend_state, state = RunFolder.create(args.out, TrainConfig(**given).validate()), None, TrainState()
    config = folder.config

    extra_metrics = recipe.set_up(config, args)
    splits = prepare(load_mnist(args.data_dir, progress=not args.no_progress), config)
    backend = recipe.make_backend(config, splits, args)
    if backend_state is not None:
        backend.load_state(backend_state)
    else:
        folder.start()
    n_val = 0 if splits.val is None else len(splits.val)
    print(
        f"{'resuming' if args.resume else 'training'} softmax regression: {backend.n_train:,} train / "
        f"{n_val:,} validation / {len(splits.test):,} test samples, batch {config.batch_size}, "
        f"{config.dtype}, {recipe.describe(config, args)} -> {folder.path}"
    )

    with StopOnInterrupt() as stop:
        try:
            state = fit(
                backend, config, state, progress=not args.no_progress, should_stop=stop, on_epoch_end=folder.end_epoch
            )
        except TrainingInterrupted:
            folder.interrupted(backend.state(), state)
            print(
                f"interrupted in epoch {state.epoch + 1} after {state.batch} batches; checkpoint saved. "
                f"Continue with: {recipe.prog} --resume {folder.path}",
                file=sys.stderr,
            )
            return 130
        except TrainingDiverged:
            folder.diverged(state)
            raise

    backend.load_state({"weight": state.best_weight, "bias": state.best_bias})
    test_loss, test_accuracy = backend.evaluate("test")
    metrics = {
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "best_epoch": state.best_epoch,
        "best_val_loss": state.best_val_loss if n_val else None,
        "epochs_run": len(state.history),
        "stopped_early": state.stopped_early,
        "train_seconds": state.train_seconds,
        "samples_per_second": backend.n_train * len(state.history) / state.train_seconds,
        "backend": config.backend,
        **extra_metrics,
        **backend.info,
    }
    files = folder.finished(state, metrics, lambda path: recipe.save_extra(backend, path))
    print(
        f"test accuracy {test_accuracy:.2%}, test loss {test_loss:.4f} (weights of epoch {state.best_epoch}; "
        f"{state.train_seconds:.2f} s of training, {metrics['samples_per_second']:,.0f} samples/s)"
    )
    print(f"wrote {folder.path}/: {' '.join(files)}")
    return 0


def _open_resume(recipe: Recipe, path: str, given: dict, out: str | None):
    """The interrupted run's folder, backend arrays and loop state; refuses options that would change the run."""
    changes = [name for name in given if not (name == "backend" and len(recipe.backends) == 1)]
    if changes or out:
        flag = "--out" if out else "--" + changes[0].replace("_", "-")
        raise ConfigError(
            f"{flag} cannot be combined with --resume: a resumed run keeps the options in {Path(path) / CONFIG}"
        )
    folder, backend_state, state = RunFolder.open_to_resume(path)
    if folder.config.backend not in recipe.backends:
        other = "python -m torch_ref.train" if folder.config.backend == "torch" else "python -m lr_from_scratch.train"
        raise ConfigError(f"--resume {path}: that run used the {folder.config.backend} backend; resume it with {other}")
    return folder, backend_state, state

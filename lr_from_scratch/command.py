"""The training command, shared by ``python -m lr_from_scratch.train`` and ``python -m torch_ref.train``.

Both parse the same options, load the same data, drive :func:`~lr_from_scratch.trainer.fit` and write the
same run folder; a :class:`Recipe` supplies the rest (which backends, extra flags, how to build a backend,
extra outputs). Ctrl-C or SIGTERM saves a checkpoint that ``--resume`` continues exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from .cli import ArgumentParser, Interrupted, StopOnInterrupt, as_run_here, path_arg
from .config import DTYPES, TrainConfig
from .data import DATASETS, Splits, load_dataset, prepare
from .errors import ConfigError, TrainingDiverged, UserError
from .model import INITS
from .optim import momentum_buffer_key
from .runs import CHECKPOINT, CONFIG, MODEL, RunFolder
from .trainer import TrainingInterrupted, TrainState, evaluate_kept, fit

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
    "normalize": "scale pixels to (x/255 - mean) / std with the training set's own figures (MNIST: 0.1307, 0.3081) "
    "instead of x/255",
    "init": "weight initialisation",
    "seed": "seed of the split, the initial weights and the batch order",
    "dtype": "floating-point precision",
    "backend": "numba: the fused sparse kernels; numpy: the readable reference; numba-naive: the first, naive port; "
    "cuda: the CUDA kernels on a GPU",
    "dataset": "mnist, fashion-mnist, kmnist (each checked against its published checksums), or idx: any four IDX "
    "files with MNIST's names in --data-dir",
    "limit": "train on the first N samples of the training set only (quick runs)",
}


@dataclass
class Recipe:
    """What one training command adds to the shared one."""

    prog: str  #: how the command is run, for --help and the resume hint
    backends: tuple[str, ...]  #: --backend choices; with one, there is no --backend flag
    make_backend: Callable[[TrainConfig, Splits, argparse.Namespace], object]
    add_arguments: Callable[[argparse.ArgumentParser], None] = lambda parser: None
    #: the flags of add_arguments (their names in the namespace) that shape the run: recorded in config.json, and
    #: restored by --resume, which refuses them given again, as it does the shared options
    saved_options: tuple[str, ...] = ()
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
        elif field.name in ("init", "dtype", "backend", "dataset"):
            kwargs["choices"] = {"init": INITS, "dtype": DTYPES, "backend": backends, "dataset": tuple(DATASETS)}[
                field.name
            ]
        else:
            kwargs["type"] = float if isinstance(default, float) else int
            kwargs["metavar"] = "N" if kwargs["type"] is int else "X"
        parser.add_argument(flag, **kwargs)


def build_parser(recipe: Recipe, description: str) -> ArgumentParser:
    parser = ArgumentParser(prog=recipe.prog, description=description)
    parser.saved_defaults = {}  # the defaults of recipe.saved_options
    add_config_arguments(parser, recipe.backends)
    parser.add_argument(
        "--data-dir", type=path_arg,
        help="folder with the dataset's IDX files (default: $LR_FROM_SCRATCH_DATA for MNIST, else ~/.cache)",
    )  # fmt: skip
    parser.add_argument("--out", type=path_arg, metavar="DIR", help="run folder to create (default: runs/<timestamp>)")
    parser.add_argument(
        "--resume", type=path_arg, metavar="DIR", help="continue the unfinished run in DIR with its saved options"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    recipe.add_arguments(parser)
    for action in parser._actions:
        if action.dest in recipe.saved_options:  # absent unless given, as the shared options: --resume must know
            parser.saved_defaults[action.dest] = action.default
            action.default = argparse.SUPPRESS
    return parser


def run_training(recipe: Recipe, description: str, argv: list[str] | None) -> int:
    """Parse ``argv``, train, write the run folder; returns the exit status.

    Every ending leaves the folder in a state ``status.json`` names (see :mod:`lr_from_scratch.runs`): an
    interrupt (SIGINT, SIGTERM) saves a checkpoint and exits 130 or 143; one that comes while the results are
    written waits for them; a write that fails saves the run elsewhere and says where; any other error (memory
    running out, a bug) leaves the folder ``failed``, its last checkpoint kept.
    """
    parser = build_parser(recipe, description)
    args = parser.parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    given.update({name: getattr(args, name) for name in recipe.saved_options if hasattr(args, name)})
    if len(recipe.backends) == 1:
        given["backend"] = recipe.backends[0]
    if args.resume:
        folder, backend_state, state = _open_resume(recipe, args.resume, given, args.out)
        try:
            vars(args).update(_saved_options(parser, folder))
        except BaseException:
            folder.close()
            raise
    else:
        config = TrainConfig(**{k: v for k, v in given.items() if k not in recipe.saved_options}).validate()
        vars(args).update({name: value for name, value in parser.saved_defaults.items() if not hasattr(args, name)})
        own = {name: getattr(args, name) for name in recipe.saved_options}
        folder, backend_state, state = RunFolder.create(args.out, config, args.data_dir, own), None, TrainState()
    with folder:
        try:
            return _train(recipe, args, folder, backend_state, state)
        except UserError:
            raise
        except MemoryError:
            said = folder.failed(state, "ran out of memory", "free some memory")
            raise UserError(said or "ran out of memory before training began: free some memory") from None
        except Exception as exc:  # a bug: its traceback follows, and the run's folder says what it holds
            said = folder.failed(state, f"stopped on an unexpected {type(exc).__name__}", "fix the error below")
            if said:
                print(f"the run in {folder.path} {said}", file=sys.stderr)
            raise


def _train(recipe: Recipe, args, folder: RunFolder, backend_state, state: TrainState) -> int:
    config = folder.config
    # a resumed run reads the folder it was given at the start (its backend too: torch_ref's torchvision loader)
    args.data_dir = args.data_dir or folder.data_dir
    extra_metrics = recipe.set_up(config, args)
    splits = prepare(load_dataset(config.dataset, args.data_dir, progress=not args.no_progress), config)
    folder.scaling = splits.mean, splits.std
    backend = recipe.make_backend(config, splits, args)
    if backend_state is not None:
        _check_checkpoint(backend, backend_state, state, config, folder)
        backend.load_state(backend_state)
    n_val = 0 if splits.val is None else len(splits.val)
    print(
        f"{'resuming' if args.resume else 'training'} softmax regression: {backend.n_train:,} train / "
        f"{n_val:,} validation / {len(splits.test):,} test samples, batch {config.batch_size}, "
        f"{config.dtype}, {recipe.describe(config, args)} -> {folder.path}"
    )
    with StopOnInterrupt() as stop:  # from here on, a signal is a request the run honours at a safe point
        try:
            if backend_state is None:
                folder.start()
            else:
                folder.resume(state)
            state = fit(
                backend, config, state, progress=not args.no_progress, should_stop=stop,
                on_epoch_end=lambda state: folder.end_epoch(state, backend.state()),
            )  # fmt: skip
        except TrainingInterrupted:
            why = f"interrupted by {signal.Signals(stop.signum).name}"
            try:
                folder.interrupted(backend.state(), state, why)
            except OSError as exc:
                _rescue(folder, backend, state, exc, signum=stop.signum)
            raise Interrupted(
                stop.signum,
                f"in epoch {state.epoch + 1} after {state.batch} batches; checkpoint saved. "
                f"Continue with: {as_run_here(recipe.prog)} --resume {folder.path}",
            ) from None
        except TrainingDiverged as diverged:
            try:
                folder.diverged(state, str(diverged))
            except OSError as exc:
                _rescue(folder, backend, state, exc, diverged=str(diverged))
            raise
        except OSError as exc:
            _rescue(folder, backend, state, exc)

        test_loss, test_accuracy = evaluate_kept(backend, state)
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
        try:
            files = folder.finished(state, metrics, lambda path: recipe.save_extra(backend, path))
        except OSError as exc:
            _rescue(folder, backend, state, exc)
        print(
            f"test accuracy {test_accuracy:.2%}, test loss {test_loss:.4f} (weights of epoch {state.best_epoch}; "
            f"{state.train_seconds:.2f} s of training, {metrics['samples_per_second']:,.0f} samples/s)"
        )
        print(f"wrote {folder.path}/: {' '.join(files)}")
    stop.raise_if_stopped(f"it came after training, so the run finished: {folder.path}/ holds its results")
    return 0


def _rescue(
    folder: RunFolder, backend, state: TrainState, exc: OSError, signum: int | None = None, diverged: str | None = None
) -> NoReturn:
    """A write into the run folder failed: save the run in the temporary folder instead, and say where. A run
    stopped by signal ``signum`` ends as interrupted by it (exit 128 + signum); one that ``diverged`` (its
    message) is saved there as diverged, with the weights it kept in ``model.npz``."""
    failed = f"could not write into {folder.path} ({exc.strerror or exc})"
    if diverged is not None:
        rescued = folder.rescue(state, lambda rescued: rescued.diverged(state, diverged)) if state.best_epoch else None
        kept = f"; saved {rescued / MODEL} instead" if rescued else ""
        raise UserError(f"{diverged}; {failed}{kept}") from None
    why = f"interrupted by {signal.Signals(signum).name}, then a write failed" if signum else "a write failed"
    rescued = folder.rescue(state, lambda rescued: rescued.interrupted(backend.state(), state, f"{why}: {failed}"))
    kept = (
        f"the run was saved to {rescued} instead: finish it with --resume {rescued}"
        if rescued
        else "it could not be saved elsewhere either"
    )
    message = f"{failed} after epoch {state.epoch}; {kept}"
    if signum:
        raise Interrupted(signum, message) from None
    raise UserError(message) from None


def _check_checkpoint(backend, backend_state: dict, state: TrainState, config: TrainConfig, folder) -> None:
    """The checkpoint's arrays and position must fit the run's backend and data (a hand-edited one may not)."""
    weight, bias = backend.params()
    shapes = {"weight": weight.shape, "bias": bias.shape, momentum_buffer_key(0): weight.shape,
              momentum_buffer_key(1): bias.shape}  # fmt: skip
    arrays = {**backend_state, "best weight": state.best_weight, "best bias": state.best_bias}
    shapes.update({"best weight": weight.shape, "best bias": bias.shape})
    for name, array in arrays.items():
        if array is not None and array.shape != shapes.get(name, array.shape):
            raise UserError(
                f"{folder.path / CHECKPOINT}: {name} has shape {array.shape}, expected {shapes[name]} for this run; "
                "start a new run instead"
            )
        if array is not None and array.dtype != config.dtype:  # a config.json edited since: the run would change
            raise UserError(
                f"{folder.path / CHECKPOINT}: {name} is {array.dtype}, but {CONFIG} says --dtype {config.dtype}; "
                "start a new run instead"
            )
    n_batches = -(-backend.n_train // config.batch_size)
    if state.epoch > config.epochs or state.batch >= n_batches or (state.batch and state.epoch == config.epochs):
        raise UserError(
            f"{folder.path / CHECKPOINT}: it stands at epoch {state.epoch + 1}, batch {state.batch}, beyond this "
            f"run's {config.epochs} epochs of {n_batches} batches; start a new run instead"
        )


def _saved_options(parser: ArgumentParser, folder: RunFolder) -> dict:
    """The command's own options of the run in ``folder``, as its ``config.json`` recorded them (the defaults for
    any it does not name: a run from before they were recorded), each checked as its flag would be."""
    actions = {action.dest: action for action in parser._actions}
    unknown = sorted(set(folder.command_options) - set(parser.saved_defaults))
    if unknown:
        raise UserError(f"{folder.path / CONFIG}: unknown command option {unknown[0]!r}; expected some of "
                        f"{', '.join(parser.saved_defaults)}: put back the one the run wrote")  # fmt: skip
    options = {**parser.saved_defaults, **folder.command_options}
    for name, value in options.items():
        default, choices = parser.saved_defaults[name], actions[name].choices
        if (choices and value not in choices) or (not choices and type(value) is not type(default)):
            expected = f"one of {', '.join(map(str, choices))}" if choices else f"a {type(default).__name__}"
            raise UserError(f"{folder.path / CONFIG}: its command option {name} is {value!r}, expected {expected}: "
                            "put back the one the run wrote")  # fmt: skip
    return options


def _open_resume(recipe: Recipe, path: Path, given: dict, out: Path | None):
    """The interrupted run's folder, backend arrays and loop state; refuses options that would change the run."""
    changes = [name for name in given if not (name == "backend" and len(recipe.backends) == 1)]
    if changes or out:
        flag = "--out" if out else "--" + changes[0].replace("_", "-")
        raise ConfigError(
            f"{flag} cannot be combined with --resume: a resumed run keeps the options in {path / CONFIG}"
        )
    folder, backend_state, state = RunFolder.open_to_resume(path)
    if folder.config.backend not in recipe.backends:
        folder.close()
        other = "python -m torch_ref.train" if folder.config.backend == "torch" else "python -m lr_from_scratch.train"
        raise ConfigError(f"--resume {path}: that run used the {folder.config.backend} backend; resume it with {other}")
    return folder, backend_state, state

"""``python -m lr_from_scratch.sweep``: test accuracy and training time against the batch size.

Trains with each ``--batch-sizes`` for ``--epochs`` epochs (other options at their defaults, learning rate
unchanged), through the same loop as ``python -m lr_from_scratch.train``, and plots both curves. Small
batches take more, noisier steps per epoch; large ones fewer, smoother ones, each making better use of the
hardware. Writes ``batch_sweep.png`` and ``batch_sweep.json`` into ``--out``; Ctrl-C or SIGTERM writes them for
the batch sizes finished by then.
"""

from __future__ import annotations

import sys

from .backends import make_backend
from .cli import ArgumentParser, StopOnInterrupt, add_data_and_out, run_cli, staged_outputs, writable_folder
from .config import SCRATCH_BACKENDS, TrainConfig
from .data import load_mnist, prepare
from .errors import ConfigError
from .files import write_json
from .plots import figure, save
from .trainer import TrainingInterrupted, evaluate_kept, fit


def sweep(mnist, batch_sizes, epochs, backend, should_stop=lambda: False) -> list[dict]:
    """A row per batch size: its test accuracy, seconds of training and epochs run; the sizes finished before
    ``should_stop()`` turned true."""
    rows = []
    for batch_size in batch_sizes:
        config = TrainConfig(batch_size=batch_size, epochs=epochs, backend=backend).validate()
        splits = prepare(mnist, config)
        model = make_backend(config, splits)
        try:
            state = fit(model, config, progress=False, log=None, should_stop=should_stop)
        except TrainingInterrupted:
            break
        rows.append({"batch_size": batch_size, "test_accuracy": evaluate_kept(model, state)[1],
                     "train_seconds": state.train_seconds, "epochs_run": len(state.history)})  # fmt: skip
        print(f"batch {batch_size:>5}: test accuracy {rows[-1]['test_accuracy']:.2%}, {state.train_seconds:.2f} s")
    return rows


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m lr_from_scratch.sweep", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--batch-sizes", default="16,32,64,128,256,512,1024", help="comma-separated (default: %(default)s)"
    )
    parser.add_argument("--epochs", type=int, default=5, help="epochs per batch size (default: 5)")
    parser.add_argument(
        "--backend", choices=SCRATCH_BACKENDS, default="numba", help="as train's --backend (default: %(default)s)"
    )
    add_data_and_out(parser, "runs/sweep")
    return parser


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    try:
        sizes = [int(s) for s in args.batch_sizes.split(",")]
    except ValueError:
        raise ConfigError(f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}") from None
    TrainConfig(epochs=args.epochs).validate()
    if min(sizes) < 1:
        raise ConfigError(f"--batch-sizes must be integers >= 1, got {args.batch_sizes}")
    if len(set(sizes)) < len(sizes):
        raise ConfigError(f"--batch-sizes names a size twice, got {args.batch_sizes}: each needs one run")
    out = writable_folder(args.out, "--out")  # before the sweep, not after it
    mnist = load_mnist(args.data_dir, progress=not args.no_progress)
    n_train = len(prepare(mnist, TrainConfig()).train)
    if max(sizes) > n_train:
        raise ConfigError(f"--batch-sizes must be at most the {n_train} training samples, got {args.batch_sizes}")
    with StopOnInterrupt() as stop:  # a signal ends the size in progress; the finished ones are written
        rows = sweep(mnist, sizes, args.epochs, args.backend, stop)
        if rows:
            _write(rows, args, out)
    finished = ", ".join(str(row["batch_size"]) for row in rows)
    stop.raise_if_stopped(f"wrote {out}/ for the batch sizes finished first ({finished})" if rows else
                          "no batch size had finished: nothing was saved")  # fmt: skip
    print(f"wrote {out}/: batch_sweep.png batch_sweep.json")
    return 0


def _write(rows: list[dict], args, out) -> None:
    """``batch_sweep.png`` and ``batch_sweep.json`` of ``rows``, into ``out``, all at once."""
    fig = figure(figsize=(9, 3.8))
    left, right = fig.subplots(1, 2)
    sizes = [r["batch_size"] for r in rows]
    left.plot(sizes, [r["test_accuracy"] for r in rows], "o-")
    left.set(xscale="log", xlabel="batch size", ylabel="test accuracy", title=f"accuracy after {args.epochs} epochs")
    for ax in (left, right):
        ax.set_xticks(sizes, [str(s) for s in sizes], minor=False)
        ax.minorticks_off()
    right.plot(sizes, [r["train_seconds"] for r in rows], "o-")
    right.set(xscale="log", yscale="log", xlabel="batch size", ylabel="seconds of training",
              title=f"training time ({args.backend} backend)")  # fmt: skip
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
    with staged_outputs(out) as stage:
        save(fig, stage / "batch_sweep.png")
        write_json(stage / "batch_sweep.json", rows)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

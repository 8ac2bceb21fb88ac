"""``python -m lr_from_scratch.lr_find``: the learning-rate range test (Smith, 2015).

One pass of SGD in which the learning rate grows exponentially from ``--start`` to ``--end``; the smoothed
training loss against the rate shows where learning starts, where it is fastest and where it diverges. The
suggested range runs from the rate of the steepest descent to a third of the rate at the lowest loss.
Writes ``lr_find.png`` and ``lr_find.json`` into ``--out``.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from .cli import ArgumentParser, add_data_and_out, run_cli, staged_outputs, writable_folder
from .config import TrainConfig
from .data import epoch_order, load_mnist, prepare
from .errors import ConfigError, UserError
from .files import write_json
from .model import SoftmaxRegression, initial_params
from .optim import SGD
from .plots import figure, save

#: Finite steps the range test needs before the loss diverges: the smoothing settles over the first of them.
MIN_STEPS = 10


def lr_range_test(x, y, n_classes, start, end, steps, batch_size, momentum, seed=0, smoothing=0.98) -> dict:
    """Rates and smoothed losses of the range test; stops early once the loss exceeds 4x its best. The suggested
    range runs from the steepest descent to a third of the rate of the lowest loss; None when that third lies
    below the steepest descent (a span that stopped short of where the loss explodes: nothing to suggest)."""
    model = SoftmaxRegression(*initial_params(TrainConfig(seed=seed, dtype=x.dtype.name), x.shape[1], n_classes))
    sgd = SGD([model.weight, model.bias], lr=start, momentum=momentum)
    order = epoch_order(len(x), seed, 0)
    rates, losses, average, best = [], [], 0.0, math.inf
    with np.errstate(all="ignore"):
        for i in range(steps):
            sgd.lr = start * (end / start) ** (i / (steps - 1))
            idx = order[(i * batch_size) % len(x) :][:batch_size]
            loss, _, dw, db = model.forward_backward(x[idx], y[idx])
            sgd.step([dw, db])
            average = smoothing * average + (1 - smoothing) * loss
            smoothed = average / (1 - smoothing ** (i + 1))  # bias-corrected, like Adam's moments
            if not math.isfinite(smoothed) or smoothed > 4 * best:
                break
            best = min(best, smoothed)
            rates.append(sgd.lr)
            losses.append(smoothed)
    if len(rates) < MIN_STEPS:
        raise UserError(
            f"the loss diverged after {len(rates)} steps, at lr {sgd.lr:.3g}: the range test needs the loss to fall "
            f"for at least {MIN_STEPS} steps first; lower --start"
        )
    rates, losses = np.array(rates), np.array(losses)
    slope = np.gradient(losses, np.log(rates))
    skip = max(5, len(rates) // 10)  # the smoothed loss is still settling over the first steps
    lowest_at = int(np.argmin(losses))
    steepest = float(rates[skip + np.argmin(slope[skip : max(lowest_at, skip + 1)])])
    lowest = float(rates[lowest_at])
    suggested = [steepest, lowest / 3] if lowest / 3 > steepest else None
    return {"rates": rates.tolist(), "losses": losses.tolist(), "steepest_lr": steepest, "lowest_loss_lr": lowest,
            "suggested_range": suggested}  # fmt: skip


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m lr_from_scratch.lr_find", description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=float, default=1e-5, help="first learning rate (default: 1e-5)")
    parser.add_argument("--end", type=float, default=10.0, help="last learning rate (default: 10)")
    parser.add_argument("--steps", type=int, default=400, help="SGD steps (default: 400)")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per SGD step (default: %(default)s)")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: %(default)s)")
    add_data_and_out(parser, "runs/lr_find")
    return parser


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    if not 0 < args.start < args.end < math.inf:
        raise ConfigError(f"need 0 < --start < --end < infinity, got --start {args.start} and --end {args.end}")
    if not math.isfinite(args.end / args.start):  # the rates between them are start * (end / start) ** t
        raise ConfigError(
            f"--end / --start overflows (--start {args.start}, --end {args.end}): narrow the range (--help gives "
            "the defaults)"
        )
    if args.steps < MIN_STEPS:
        raise ConfigError(f"--steps must be an integer >= {MIN_STEPS}, got {args.steps}")
    config = TrainConfig(batch_size=args.batch_size, momentum=args.momentum).validate()
    out = writable_folder(args.out, "--out")
    splits = prepare(load_mnist(args.data_dir, progress=not args.no_progress), config)
    x, y = splits.scaled(splits.train, config.dtype)
    result = lr_range_test(x, y, splits.n_classes, args.start, args.end, args.steps, config.batch_size, config.momentum)
    fig = figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.plot(result["rates"], result["losses"])
    if result["suggested_range"]:
        ax.axvspan(*result["suggested_range"], alpha=0.2, color="green", label="suggested range")
    steepest = result["steepest_lr"]
    ax.axvline(steepest, color="green", linestyle="--", label=f"steepest descent {steepest:.2g}")
    ax.set(xscale="log", xlabel="learning rate", ylabel="smoothed training loss",
           title=f"learning-rate range test (batch {config.batch_size}, momentum {config.momentum})")  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    with staged_outputs(out) as stage:
        save(fig, stage / "lr_find.png")
        write_json(stage / "lr_find.json", result)
    if result["suggested_range"]:
        low, high = result["suggested_range"]
        print(f"steepest descent at lr {result['steepest_lr']:.3g}; suggested range {low:.3g} to {high:.3g}")
    else:
        print(f"steepest descent at lr {result['steepest_lr']:.3g}, lowest loss at lr {result['lowest_loss_lr']:.3g}: "
              "no range to suggest, they lie within a factor of 3; test a wider span (a lower --start, a higher "
              "--end)")  # fmt: skip
    print(f"wrote {out}/: lr_find.png lr_find.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

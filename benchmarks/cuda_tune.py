"""``python -m benchmarks.cuda_tune``: on a GPU, each CUDA training kernel's speed under each of its launch settings.

The constants in ``lr_from_scratch/kernels/cuda.py`` and ``cuda_device.py`` that a launch reads, so that changing
one needs no recompilation, were chosen before any GPU ran the kernels: the threads of a block (``THREADS`` for
the dense and grid kernels, ``SPARSE_THREADS`` for the sparse one) and the grid kernel's samples a chunk
(``CHUNK``). This measures every setting of :data:`SETTINGS` at every batch size the kernel takes: an epoch over
the 60,000 training images, timed as the report times one (interleaved rounds, each cell's best kept). A
setting that cannot launch (a block needing more registers than a multiprocessor has) says why in its cell.
Writes ``<out>/cuda_tune.md`` and ``cuda_tune.json``; on Ctrl-C or SIGTERM, what it had measured by then, as
``cuda_tune-interrupted.md`` and ``.json``, marked as such (never over a complete sweep's page).
"""

from __future__ import annotations

import contextlib
import sys
import time

from lr_from_scratch.backends import make_backend
from lr_from_scratch.cli import (
    ArgumentParser,
    StopOnInterrupt,
    add_data_and_out,
    run_cli,
    staged_outputs,
    writable_folder,
)
from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import load_mnist, prepare
from lr_from_scratch.errors import ConfigError, first_line
from lr_from_scratch.files import write_json, write_text

from .impls import Bench, unavailable
from .report import INTERRUPTED_SUFFIX

#: Each kernel's settings to measure: the constants it reads at launch, and their values.
SETTINGS = {
    # at most 65,536 registers a block, taken 8 a thread at a time: 512 threads of the dense kernel's ~80 fit
    "dense": [{"THREADS": t} for t in (128, 256, 512)],
    "sparse": [{"SPARSE_THREADS": t} for t in (128, 256, 384, 512)],  # 512 x its 128 registers: a whole multiprocessor
    # a shorter chunk shortens phase 2's loop over samples and lengthens phase 4's over chunks
    "grid": [{"THREADS": t, "CHUNK": c} for t in (128, 256) for c in (32, 64, 128, 256)],
}


def _modules() -> dict:
    """Where each constant of :data:`SETTINGS` lives."""
    from lr_from_scratch.kernels import cuda, cuda_device

    return {"THREADS": cuda, "SPARSE_THREADS": cuda, "CHUNK": cuda_device}


@contextlib.contextmanager
def launch_settings(setting: dict):
    """The kernels' constants set to ``setting`` (name -> value) while the body runs."""
    modules = _modules()
    saved = {name: getattr(modules[name], name) for name in setting}
    try:
        for name, value in setting.items():
            setattr(modules[name], name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(modules[name], name, value)


def tune(mnist, kernels, batch_sizes, rounds, settings=SETTINGS, limit=None, stop=lambda: False) -> list[dict]:
    """A row per kernel, setting and batch size the kernel takes (the sparse kernel's up to its ``MAX_BATCH``):
    ``{"kernel", "setting", "batch_size", "samples_per_second"}``, the rate of the best of ``rounds`` epochs after
    one to warm up; ``"error"`` instead where the setting failed, and no rate where ``stop()`` came first."""
    rows = []
    for size in batch_sizes:  # one backend a batch size, each row setting its kernel
        config = TrainConfig(batch_size=size, val_split=0.0, lr_step=0, backend="cuda", limit=limit)
        bench = Bench(make_backend(config, prepare(mnist, config)), config)
        layer, images = bench.backend.layer, bench.backend.data["train"][0]
        for kernel in kernels:
            layer.kernel = kernel
            try:
                layer.kernel_for(images, size)
            except ValueError:  # not a batch size this kernel takes
                continue
            rows += [{"kernel": kernel, "setting": s, "batch_size": size, "bench": bench} for s in settings[kernel]]
    rows.sort(key=lambda row: kernels.index(row["kernel"]))  # stable: by kernel, then batch size, then setting
    for round_ in range(1 + rounds):  # round 0 warms up: a launch that fails, fails there
        for row in rows:
            if "error" not in row and not stop():
                seconds = _epoch_seconds(row)
                if seconds is not None and round_ > 0:
                    row["best"] = min(row.get("best", float("inf")), seconds)
    for row in rows:
        bench, best = row.pop("bench"), row.pop("best", None)
        if best is not None:
            row["samples_per_second"] = bench.n_train / best
    return rows


def _epoch_seconds(row: dict) -> float | None:
    """The seconds of one epoch of ``row``'s kernel under its setting; None, with why in ``row["error"]``, if it
    failed."""
    row["bench"].backend.layer.kernel = row["kernel"]
    try:
        with launch_settings(row["setting"]):
            start = time.perf_counter()
            row["bench"].epoch()  # ends synchronised: the backend returns Python floats
            return time.perf_counter() - start
    except Exception as exc:  # a launch error, whatever its class in this numba-cuda
        row["error"] = first_line(exc)
        return None


def markdown(rows: list[dict], batch_sizes: list[int], interrupted: bool = False) -> str:
    """A table per kernel: a row per setting (the one in use now marked), a column per batch size, the best
    rate of each column in bold; ``interrupted``: a sweep stopped before its end, which the page says."""
    modules = _modules()
    lines = ["# The CUDA kernels' launch settings", "", "Samples/s of an epoch, the best of each column in bold.", ""]
    if interrupted:
        lines += ["**Interrupted** before every setting was timed: a cell marked - was not, and a bold one is the",
                  "best of those timed.", ""]  # fmt: skip
    for kernel in dict.fromkeys(r["kernel"] for r in rows):
        mine = [r for r in rows if r["kernel"] == kernel]
        sizes = [s for s in batch_sizes if any(r["batch_size"] == s for r in mine)]
        best = {
            s: max((r.get("samples_per_second", 0) for r in mine if r["batch_size"] == s), default=0) for s in sizes
        }
        lines += [f"## {kernel}", "", "| setting | " + " | ".join(f"batch {s}" for s in sizes) + " |",
                  "| --- |" + " ---: |" * len(sizes)]  # fmt: skip
        for setting in list({tuple(r["setting"].items()): r["setting"] for r in mine}.values()):
            now = all(getattr(modules[k], k) == v for k, v in setting.items())
            name = ", ".join(f"{k} {v}" for k, v in setting.items()) + (" (now)" if now else "")
            cells = [_cell(next(r for r in mine if r["setting"] == setting and r["batch_size"] == s), best[s])
                     for s in sizes]  # fmt: skip
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _cell(row: dict, best: float) -> str:
    if "error" in row:
        return f"fails: {row['error']}"
    rate = row.get("samples_per_second")
    if rate is None:
        return "-"
    return f"**{rate:,.0f}**" if rate == best else f"{rate:,.0f}"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.cuda_tune", description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", default="dense,sparse,grid", help="comma-separated (default: all three)")
    parser.add_argument("--batch-sizes", default="64,256,1024,8192", help="comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, the best kept (default: 3)")
    add_data_and_out(parser, "runs/cuda-tune")
    return parser


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    kernels = args.kernels.split(",")
    if any(k not in SETTINGS for k in kernels):
        raise ConfigError(f"--kernels must be some of {','.join(SETTINGS)}, got {args.kernels}")
    try:
        sizes = [int(s) for s in args.batch_sizes.split(",")]
    except ValueError:
        raise ConfigError(f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}") from None
    if not all(1 <= s <= 60_000 for s in sizes) or args.rounds < 1:
        raise ConfigError(f"need batch sizes between 1 and 60000 and --rounds >= 1, got {args.batch_sizes} and "
                          f"{args.rounds}")  # fmt: skip
    why = unavailable("cuda")
    if why:
        raise ConfigError(f"{why} here: the kernels' settings can only be timed on a GPU")
    out = writable_folder(args.out, "--out")
    mnist = load_mnist(args.data_dir, progress=not args.no_progress)
    with StopOnInterrupt() as stop:
        rows = tune(mnist, kernels, sizes, args.rounds, stop=stop)
        interrupted = stop()
        stem = "cuda_tune" + (INTERRUPTED_SUFFIX if interrupted else "")  # never over a complete sweep's page
        with staged_outputs(out) as stage:
            write_text(stage / f"{stem}.md", markdown(rows, sizes, interrupted))
            write_json(stage / f"{stem}.json", rows)
    print(markdown(rows, sizes, interrupted))
    stop.raise_if_stopped(f"{out / stem}.md and .json hold what was measured by then")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m benchmarks.report``: every implementation side by side on this machine, against its own limits.

Runs an interleaved comparison in one process (round after round, every implementation and batch size in
turn, keeping each one's best epoch), measures the machine's peak float32 matrix-product rate and memory
bandwidth, and the seconds of training each implementation needs to reach 92% test accuracy, scikit-learn's
``LogisticRegression`` included. Writes ``<out>/<name>.md`` (tables), ``<name>.png`` (samples/s against
batch size) and ``<name>.json`` (everything, to compare two runs).
"""

from __future__ import annotations

import importlib.metadata
import io
import os
import platform
import signal
import sys
import time
import traceback
from pathlib import Path

from tqdm.auto import tqdm

from lr_from_scratch.cli import (
    ArgumentParser,
    Interrupted,
    StopOnInterrupt,
    bars_shown,
    path_arg,
    run_cli,
    staged_outputs,
    writable_folder,
)
from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import load_mnist
from lr_from_scratch.errors import ConfigError, UserError, first_line
from lr_from_scratch.files import replace_region, write_bytes, write_json, write_text
from lr_from_scratch.plots import DPI

from .impls import (
    BLAS_LIMITS,
    BYTES_PER_SAMPLE,
    DENSE_FLOP_PER_SAMPLE,
    IMPLEMENTATIONS,
    SPEED_ONLY,
    TARGET_ACCURACY,
    blas_kernel,
    build,
    compute_roofline,
    gpu_limits,
    machine_peak,
    memory_bandwidth_gbs,
    memory_roofline,
    peak_matmul_gflops,
    sklearn_time_to_accuracy,
    time_to_accuracy,
    unavailable,
)

BASELINE = "torch-cpu"  # "PyTorch CPU eager": what the ratios are relative to
QUOTED = ("numba", "numpy", "torch-cpu")  # what README.md and docs/fast.md quote
REPO = Path(__file__).resolve().parent.parent
#: The rows of docs/torch.md's table: implementation -> the command that runs it.
TORCH_TABLE = {
    "numba": "python -m lr_from_scratch.train",
    "torch-cpu": "python -m torch_ref.train",
    "torch-cpu-dataloader": "python -m torch_ref.train --loader dataloader",
}
#: scikit-learn's ``LogisticRegression``, in the time to 92% (a fit, not an implementation of the loop).
SKLEARN = "scikit-learn"
#: The target as the page names it ("time to 92%"); the JSON keeps the key ``time_to_92``.
TARGET = f"{TARGET_ACCURACY:.0%}"
#: How the page's "Skipped" list marks an implementation that raised during the run (the others were unavailable).
FAILED = "failed: "
#: How it marks one that a Ctrl-C or SIGTERM stopped before its first epoch was timed.
NOT_MEASURED = "not measured: the run was interrupted first"
#: An interrupted run's page is <name><this>.md (.png, .json): a partial page never replaces a complete one.
INTERRUPTED_SUFFIX = "-interrupted"
#: Seconds of quiet before each measurement. BLAS and OpenMP worker threads spin for up to ~0.2 s after their
#: work; right after a NumPy epoch, OpenBLAS's spinning threads cut the Numba backend's next epoch to a quarter.
SETTLE_S = 0.3
#: The longest file name, in bytes, of the file systems the page is written to (Linux's ext4, tmpfs, ...).
NAME_MAX = 255


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 64 and 1024 only, 2 rounds, smaller probes")
    parser.add_argument("--rounds", type=int, help="interleaved rounds, the best kept (default: 5, quick: 2)")
    parser.add_argument("--batch-sizes", help="comma-separated (default: 64,256,1024,8192)")
    parser.add_argument("--impls", help=f"comma-separated, of {','.join(IMPLEMENTATIONS)} (default: all)")
    parser.add_argument(
        "--out", type=path_arg, default=Path("runs/benchmarks"), metavar="DIR",
        help="folder for the page, figure and JSON (default: runs/benchmarks; make report: docs, where the page "
        "benchmarks also rewrites the figures README.md and the docs quote)",
    )  # fmt: skip
    parser.add_argument("--name", default="benchmarks", help="file name stem (e.g. benchmarks-gpu)")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the time-to-92%% runs")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def parse(argv) -> dict:
    args = build_parser().parse_args(argv)
    try:
        default = "64,1024" if args.quick else "64,256,1024,8192"
        sizes = [int(s) for s in (default if args.batch_sizes is None else args.batch_sizes).split(",")]
    except ValueError:
        raise ConfigError(f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}") from None
    if not all(1 <= s <= 60_000 for s in sizes):
        raise ConfigError(f"--batch-sizes must be between 1 and 60000, got {args.batch_sizes}")
    impls = args.impls.split(",") if args.impls is not None else list(IMPLEMENTATIONS)
    if not all(impls):
        raise ConfigError(f"--impls must name implementations, comma-separated, got {args.impls!r}")
    unknown = [i for i in impls if i not in IMPLEMENTATIONS]
    if unknown:
        raise ConfigError(f"--impls: unknown {', '.join(unknown)}; expected some of {', '.join(IMPLEMENTATIONS)}")
    rounds = args.rounds if args.rounds is not None else (2 if args.quick else 5)
    if rounds < 1:
        raise ConfigError(f"--rounds must be an integer >= 1, got {rounds}")
    if args.name in ("", ".", "..") or Path(args.name).name != args.name or args.name != args.name.strip():
        raise ConfigError(f"--name must be a plain file name stem, such as benchmarks-gpu, got {args.name!r}")
    longest = f"{args.name}{INTERRUPTED_SUFFIX}.json"  # checked now, not after the minutes of measuring
    if len(os.fsencode(longest)) > NAME_MAX:
        raise ConfigError(f"--name is too long for a file name: {longest} would have {len(os.fsencode(longest))} "
                          f"bytes, at most {NAME_MAX}; choose a shorter one")  # fmt: skip
    return dict(args=args, sizes=sizes, impls=impls, rounds=rounds, out=writable_folder(args.out, "--out"))


def machine() -> dict:
    """What this run ran on: CPU, cores, memory, library versions, GPU."""
    import numba
    import numpy
    import torch

    cpu = platform.processor() or platform.machine()
    if Path("/proc/cpuinfo").exists():
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "numba threads": numba.get_num_threads(),
        "numba-cuda": _version("numba-cuda"),
        "torch": torch.__version__,
        "jax": _version("jax"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        info["memory GiB"] = round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)
    return info


def _version(package: str) -> str | None:
    """``package``'s installed version, None if it is not installed (the page leaves out rows that are None)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def limits(opts: dict) -> tuple[dict, object, list[str]]:
    """The run's start, where an interrupt ends it at once (nothing is measured yet): MNIST, the machine, its
    peak float32 matrix-product rate and memory bandwidth, the GPU's too. Returns the result so far, MNIST and
    the implementations available here."""
    args = opts["args"]
    why_not = {i: unavailable(i) for i in opts["impls"]}
    impls = [i for i, why in why_not.items() if why is None]
    skipped = {i: why for i, why in why_not.items() if why is not None}
    if not impls:  # a page of empty tables would only replace a real one
        raise ConfigError(
            "none of the implementations asked for can run here: "
            + "; ".join(f"{i} ({why})" for i, why in skipped.items())
            + "; pick others with --impls (python -m benchmarks.report --help lists them)"
        )
    mnist = load_mnist(progress=not args.no_progress)
    result = {"machine": machine(), "skipped": skipped, "rounds": opts["rounds"], "batch_sizes": opts["sizes"]}
    n = 2048 if args.quick else 4096
    peak = machine_peak(n)
    result["peak_gflops"], result["blas"] = peak["gflops"], peak["blas"]
    held = {k: os.environ[k] for k in BLAS_LIMITS if k in os.environ}
    if held:  # what NumPy gets in this process, held to another kernel
        result["blas_held"] = {"by": held, "gflops": peak_matmul_gflops(n), "blas": blas_kernel()}
    result["memory_gbs"] = memory_bandwidth_gbs(128 if args.quick else 512)
    if any(IMPLEMENTATIONS[i][1] == "cuda" for i in impls):  # the GPU's own limits, in the same run
        result["gpu_limits"] = gpu_limits()
    return result, mnist, impls


def measure(result: dict, opts: dict, impls: list[str], mnist, stop) -> None:
    """Fill ``result`` with the epochs' and inferences' samples/s and the times to 92%, until done or ``stop()``.

    Each implementation's rate is its best epoch over the rounds (interleaved: every cell once per round, so
    drift hits all alike). An implementation that raises is listed under "skipped" as failed and the rest go
    on; one that ``stop()`` left untimed is listed as not measured, and ``result["interrupted"]`` says where
    the run stopped."""
    sizes, progress, failed = opts["sizes"], bars_shown(not opts["args"].no_progress), {}
    tracebacks = result.setdefault("tracebacks", {})  # each failure's whole story, for the JSON
    cells = [(impl, size) for size in sizes for impl in impls]  # the smallest batch first, every implementation
    benches = {}
    best = {cell: float("inf") for cell in cells}
    inference = {impl: float("inf") for impl in impls}
    rounds_done = 0
    total = opts["rounds"] * (len(cells) + len(impls))
    with tqdm(total=total, desc="compiling, warming up and timing", disable=not progress) as bar:
        for _ in range(opts["rounds"]):
            for impl, size in cells:
                # each cell compiled and warmed up as the first round reaches it: a run stopped while the later ones
                # compile (a GPU's torch.compile and JAX take seconds each) keeps the epochs timed by then
                if impl not in failed and (impl, size) not in benches and not stop():
                    benches[impl, size] = _attempt(failed, tracebacks, impl, build, impl, mnist, size)
                if impl not in failed and (impl, size) in benches and not stop():
                    seconds = _attempt(failed, tracebacks, impl, _settled_seconds, benches[impl, size].epoch)
                    best[impl, size] = min(best[impl, size], seconds or best[impl, size])
                bar.update()
            for impl in impls:
                if impl not in failed and (impl, sizes[-1]) in benches and not stop():
                    seconds = _attempt(failed, tracebacks, impl, _settled_seconds, benches[impl, sizes[-1]].infer)
                    inference[impl] = min(inference[impl], seconds or inference[impl])
                bar.update()
            rounds_done += not stop()  # a signal in the round's last measurement costs the round its count
    measured = [impl for impl in impls if impl not in failed]
    rates = {impl: {str(s): benches[impl, s].n_train / best[impl, s] for s in sizes if best[impl, s] < float("inf")}
             for impl in measured}  # fmt: skip
    result["epoch_samples_per_second"] = {impl: row for impl, row in rates.items() if row}
    result["inference_samples_per_second"] = {i: 10_000 / inference[i] for i in measured if inference[i] < float("inf")}
    benches.clear()

    if not opts["args"].no_accuracy and not stop():
        result["time_to_92"] = {}
        for impl in tqdm([i for i in measured if i not in SPEED_ONLY], desc=f"time to {TARGET}", disable=not progress):
            if not stop():
                reached = _attempt(failed, tracebacks, impl, time_to_accuracy, mnist, impl, TARGET_ACCURACY, stop)
                if reached is not None:
                    result["time_to_92"][impl] = reached
        reached = _attempt(failed, tracebacks, SKLEARN, sklearn_time_to_accuracy, mnist, TARGET_ACCURACY, stop)
        if reached is not None:
            result["time_to_92"][SKLEARN] = reached
    if stop():
        phase = f"time to {TARGET}" if "time_to_92" in result else "rounds"
        result["interrupted"] = {"by": signal.Signals(stop.signum).name, "in": phase, "rounds_done": rounds_done}
    unmeasured = [i for i in impls if i not in failed and i not in result["epoch_samples_per_second"]]
    result["skipped"].update(failed, **{i: NOT_MEASURED for i in unmeasured})


def _attempt(failed: dict[str, str], tracebacks: dict[str, str], impl: str, fn, *args):
    """``fn(*args)`` for implementation ``impl``; if it raises, None, with why noted in ``failed[impl]`` (a line)
    and ``tracebacks[impl]`` (the traceback). The report goes on without ``impl``: a first run on a new GPU keeps
    the page of everything that worked."""
    try:
        return fn(*args)
    except Exception as exc:
        failed[impl] = FAILED + first_line(exc)
        tracebacks[impl] = traceback.format_exc()
        return None


def _settled_seconds(fn) -> float:
    time.sleep(SETTLE_S)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def markdown(result: dict, name: str) -> str:
    rates = result["epoch_samples_per_second"]
    sizes = [str(s) for s in result["batch_sizes"]]
    peak, roof = result["peak_gflops"], compute_roofline(result["peak_gflops"])
    m = result["machine"]
    lines = [
        f"# 8. Benchmarks{' on ' + m['gpu'] if m.get('gpu') else ''}",
        "",
        f"Generated by `{result['command']}` on {result['date']}. Every figure below comes from that one run:",
        "each implementation trained one epoch over the 60,000 MNIST training images per batch size, interleaved",
        f"round by round ({result['rounds']} rounds, best epoch kept), each measurement after {result['settle_s']} s "
        "of quiet",
        "(BLAS and OpenMP threads of the previous implementation spin for a while after their work).",
        *_interrupted_lines(result),
        "",
        "## The machine and its limits",
        "",
        "| what | this run |",
        "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in m.items() if v is not None],
        f"| peak float32 matrix product (NumPy's BLAS: {result['blas']}, in a process of its own) | "
        f"{peak:,.0f} GFLOP/s |",
        *(
            [
                f"| the same, held by {', '.join(f'{k}={v}' for k, v in result['blas_held']['by'].items())} "
                f"({result['blas_held']['blas']}) | {result['blas_held']['gflops']:,.0f} GFLOP/s |"
            ]
            if "blas_held" in result
            else []
        ),
        f"| memory bandwidth (large copy, read + write) | {result['memory_gbs']:,.1f} GB/s |",
        f"| compute roofline: peak / {DENSE_FLOP_PER_SAMPLE:,} FLOP per training sample (dense) | "
        f"{roof:,.0f} samples/s |",
        f"| memory roofline: bandwidth / {BYTES_PER_SAMPLE} bytes per training sample (its uint8 pixels) | "
        f"{memory_roofline(result['memory_gbs']):,.0f} samples/s |",
        *_gpu_rows(result.get("gpu_limits")),
        "",
        "## Training throughput (samples/s)",
        "",
        "| implementation | " + " | ".join(f"batch {s}" for s in sizes) + " |",
        "| --- |" + " ---: |" * len(sizes),
    ]
    for impl, row in rates.items():
        lines.append(f"| {impl} | " + " | ".join(f"{row[s]:,.0f}" if s in row else "-" for s in sizes) + " |")
    lines += [
        "",
        "## Against the roofline and against PyTorch CPU eager",
        "",
        "Fraction of the dense roofline (the dense epoch's FLOP over its time, over the peak above); the sparse",
        "Numba kernels skip the zero pixels, so they can go beyond it in principle. Ratio: samples/s over",
        f"`{BASELINE}` (`torch_ref`, tensors in memory) at the same batch size.",
        "",
        "| implementation | " + " | ".join(f"batch {s}" for s in sizes) + " |",
        "| --- |" + " ---: |" * len(sizes),
    ]
    base = rates.get(BASELINE)
    for impl, row in rates.items():
        cells = [
            f"{row[s] / roofline(result, impl):.0%}" + (f", {row[s] / base[s]:.1f}x" if base and s in base else "")
            if s in row
            else "-"
            for s in sizes
        ]
        lines.append(f"| {impl} | " + " | ".join(cells) + " |")
    lines += ["", "## Inference over the 10,000 test images", "", "| implementation | samples/s |", "| --- | ---: |"]
    lines += [f"| {impl} | {v:,.0f} |" for impl, v in result["inference_samples_per_second"].items()]
    if "time_to_92" in result:
        lines += [
            "",
            f"## Time to {TARGET} test accuracy (default settings)",
            "",
            f"Seconds of training (evaluation excluded) until the test accuracy first reaches {TARGET}. scikit-learn's",
            "`LogisticRegression` (lbfgs, its defaults, same images and scaling) has no epochs: `max_iter` doubles",
            "from 10 until a fit gets there, and that fit's seconds count.",
            "",
            "| implementation | seconds | reached at |",
            "| --- | ---: | --- |",
        ]
        for impl, r in result["time_to_92"].items():
            when = f"max_iter {r['max_iter']}" if "max_iter" in r else f"epoch {r['epoch']}"
            seconds = f"{r['seconds']:.2f}" if r["seconds"] is not None else "not reached"
            lines.append(f"| {impl} | {seconds} | {when} |")
    if result["skipped"]:
        lines += ["", "Skipped: " + "; ".join(f"{k} ({v})" for k, v in result["skipped"].items()) + "."]
    lines += ["", f"![samples/s against batch size]({name}.png)", ""]
    lines += [
        "## Summary",
        "",
        "- One process, one machine, every implementation interleaved: the ratios compare like with like.",
        "- The roofline puts each epoch against the machine's own matrix-product peak.",
        f"- Time to {TARGET} counts training seconds only, with each implementation's default settings.",
        "",
        "## Exercises",
        "",
        "1. Run `python -m benchmarks.report --quick` on your machine and compare its page (written into",
        "   `runs/benchmarks`) with this one.",
        "2. Why does the textbook DataLoader pipeline barely speed up with the batch size, unlike the others?",
        "3. Where would the Numba backend's line cross the dense roofline, if the kernels kept their speed per",
        "   non-zero pixel at larger batches?",
        "",
    ]
    return "\n".join(lines)


def _interrupted_lines(result: dict) -> list[str]:
    """The page's warning when a Ctrl-C or SIGTERM cut the run short: what its figures rest on."""
    if "interrupted" not in result:
        return []
    if result["interrupted"]["in"] == "rounds":
        rest = 'each figure is the best of the epochs timed by then, "-" marks one not timed, and the '
        rest += f"time-to-{TARGET} runs did not start."
    else:
        rest = f"the time-to-{TARGET} table holds the runs that finished."
    return ["", f"**Interrupted by {result['interrupted']['by']} {_where(result)}**: {rest}"]


def _where(result: dict) -> str:
    """Where an interrupted run stopped, in words."""
    if result["interrupted"]["in"] == "rounds":
        return f"after {result['interrupted']['rounds_done']} of {result['rounds']} rounds"
    return f"in the time-to-{TARGET} runs, all {result['rounds']} rounds done"


def _gpu_rows(limits: dict | None) -> list[str]:
    """The machine table's rows for the GPU's own limits, when the run measured them."""
    if not limits:
        return []
    return [
        f"| GPU peak float32 matrix product ({limits['name']}, torch, TF32 off) | "
        f"{limits['peak_gflops']:,.0f} GFLOP/s |",
        f"| GPU memory bandwidth (device copy, read + write) | {limits['memory_gbs']:,.1f} GB/s |",
        f"| GPU compute roofline | {compute_roofline(limits['peak_gflops']):,.0f} samples/s |",
        f"| GPU memory roofline | {memory_roofline(limits['memory_gbs']):,.0f} samples/s |",
    ]


def roofline(result: dict, impl: str) -> float:
    """The compute roofline, in samples/s, of the machine ``impl`` runs on: the GPU's for a CUDA implementation."""
    on_gpu = IMPLEMENTATIONS[impl][1] == "cuda" and result.get("gpu_limits")
    peak = result["gpu_limits"]["peak_gflops"] if on_gpu else result["peak_gflops"]
    return compute_roofline(peak)


def figure(result: dict) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 4.5), layout="constrained")
    ax = fig.subplots()
    sizes = result["batch_sizes"]
    for impl, row in result["epoch_samples_per_second"].items():
        measured = [s for s in sizes if str(s) in row]  # all of them, unless the run was interrupted
        ax.plot(measured, [row[str(s)] for s in measured], "o-", label=impl)
    ax.axhline(compute_roofline(result["peak_gflops"]), color="grey", linestyle="--", label="dense roofline (CPU)")
    if result.get("gpu_limits"):
        ax.axhline(compute_roofline(result["gpu_limits"]["peak_gflops"]), color="black", linestyle=":",
                   label="dense roofline (GPU)")  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xticks(sizes, [str(s) for s in sizes])  # the batch sizes measured, not powers of 2
    ax.set_yscale("log")
    ax.set_xlabel("batch size")
    ax.set_ylabel("training samples/s (one epoch)")
    ax.set_title(result["machine"].get("gpu") or result["machine"]["cpu"])
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the plot: it hides no line
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def quoted_regions(result: dict) -> dict[str, str]:
    """The figures README.md, docs/fast.md and docs/torch.md quote, by marker name, so they always match the page:
    blocks with their own newlines, inline figures without."""
    rates, t92 = result["epoch_samples_per_second"], result.get("time_to_92", {})
    sizes = [str(s) for s in result["batch_sizes"]]
    roof = compute_roofline(result["peak_gflops"])
    names = {"numba": "lr_from_scratch, Numba", "numba-naive": "lr_from_scratch, Numba kernel 1 (naive)",
             "numpy": "lr_from_scratch, NumPy", "torch-cpu": "torch_ref, CPU, tensors",
             "torch-cpu-dataloader": "torch_ref, CPU, DataLoader"}  # fmt: skip
    readme = [
        "| epoch samples/s | " + " | ".join(f"batch {s}" for s in sizes) + " |",
        "| --- |" + " ---: |" * len(sizes),
    ]
    readme += [
        f"| {names[k]} | " + " | ".join(f"{rates[k][s]:,.0f}" for s in sizes) + " |" for k in names if k in rates
    ]
    one_thread = rates.get("numba-1-thread")
    fast = [
        "| batch | samples/s | vs NumPy backend | vs PyTorch CPU eager | dense roofline |"
        + (" vs one thread |" if one_thread else ""),
        "|" + " ---: |" * (6 if one_thread else 5),
    ]
    numba, numpy_, torch_ = rates["numba"], rates["numpy"], rates["torch-cpu"]
    for s in sizes:
        ratios = f"{numba[s] / numpy_[s]:.1f}x | {numba[s] / torch_[s]:.1f}x | {numba[s] / roof:.0%}"
        ratios += f" | {numba[s] / one_thread[s]:.2f}x" if one_thread else ""
        fast.append(f"| {s} | {numba[s]:,.0f} | {ratios} |")
    fast += ["", f"The roofline column divides by the peak that run measured, {result['peak_gflops']:.0f} GFLOP/s."]
    if t92:
        sec = {k: f"{v['seconds']:.2f} s" for k, v in t92.items()}
        readme += [
            "",
            f"Time to {TARGET} test accuracy with the defaults: {sec['numba']} of training (Numba), {sec['numpy']} "
            f"(NumPy), {sec['torch-cpu']} (PyTorch CPU), {sec[SKLEARN]} (scikit-learn's `LogisticRegression`).",
        ]
        fast += ["", f"It reached {TARGET} test accuracy with the defaults after {sec['numba']} of training, against "
                 f"{sec['numpy']} for NumPy, {sec['torch-cpu']} for PyTorch CPU and {sec[SKLEARN]} for "
                 "scikit-learn's `LogisticRegression`."]  # fmt: skip
    default = str(TrainConfig().batch_size)  # what a user's run trains with
    torch = [
        f"| command | training samples/s, batch {default} |",
        "| --- | ---: |",
        *(f"| `{command}` | {rates[impl][default]:,.0f} |" for impl, command in TORCH_TABLE.items() if impl in rates),
    ]
    epoch_ms = 1000 * 60_000 / rates["numba"][default]
    return {
        "readme": "\n" + "\n".join(readme) + "\n",
        "fast": "\n" + "\n".join(fast) + "\n",
        "torch": "\n" + "\n".join(torch) + "\n",
        "epoch": f"about {epoch_ms:.0f} ms",
    }


def update_quotes(result: dict, files: dict[str, Path]) -> None:
    """Rewrite the text between ``<!-- benchmarks:NAME -->`` and ``<!-- /benchmarks:NAME -->`` in each file."""
    for name, text in quoted_regions(result).items():
        replace_region(files[name], f"benchmarks:{name}", text)


def _main(argv) -> int:
    opts = parse(argv)
    out, name = opts["out"], opts["args"].name
    command = "python -m benchmarks.report " + " ".join(argv if argv is not None else sys.argv[1:])
    result, mnist, impls = limits(opts)
    result.update(command=command.strip(), date=time.strftime("%Y-%m-%d"), settle_s=SETTLE_S)  # what ran, when
    with StopOnInterrupt() as stop:  # from here on, Ctrl-C or SIGTERM (a time limit) stops the measuring only
        measure(result, opts, impls, mnist, stop)
        if "interrupted" in result and not result["epoch_samples_per_second"]:
            raise Interrupted(stop.signum, "no epoch had been timed yet: nothing was saved")
        if "interrupted" in result:  # a partial page never replaces a complete one
            name = f"{name}{INTERRUPTED_SUFFIX}"
        with staged_outputs(out) as stage:
            write_json(stage / f"{name}.json", result)
            write_bytes(stage / f"{name}.png", figure(result))
            write_text(stage / f"{name}.md", markdown(result, name))
    if "interrupted" in result:
        raise Interrupted(
            stop.signum,
            f"wrote what was measured by then to {out / name}.md, .png and .json ({_where(result)})",
        )
    stop.raise_if_stopped(f"the page was written first: {out / name}.md, .png and .json")  # a signal while writing
    print(f"wrote {out / name}.md, .png and .json")
    failed = {impl: why for impl, why in result["skipped"].items() if why.startswith(FAILED)}
    if failed:
        raise UserError(
            f"{len(failed)} implementation(s) failed and are listed as skipped on the page: "
            + "; ".join(f"{impl} ({why.removeprefix(FAILED)})" for impl, why in failed.items())
            + f'; their tracebacks are under "tracebacks" in {out / name}.json'
        )
    if out.resolve() == (REPO / "docs").resolve() and name == "benchmarks":
        measured, default = set(result["epoch_samples_per_second"]), TrainConfig().batch_size
        if set(QUOTED) <= measured and default in opts["sizes"]:
            readme, docs = REPO / "README.md", REPO / "docs"
            files = {"readme": readme, "epoch": readme, "fast": docs / "fast.md", "torch": docs / "torch.md"}
            update_quotes(result, files)
            print("updated the figures README.md, docs/fast.md and docs/torch.md quote")
        else:
            print(
                f"left the quotes in README.md and docs/ as they were: they need {', '.join(QUOTED)} at batch {default}"
            )
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())

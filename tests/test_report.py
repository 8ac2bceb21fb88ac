"""``python -m benchmarks.report``: the page, figure and JSON it writes, and its bad options."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.report import INTERRUPTED_SUFFIX, NOT_MEASURED, main

from .conftest import REPO, assert_one_line_error

FAST = ["--quick", "--rounds", "1", "--batch-sizes", "512", "--no-progress"]


def test_report_writes_page_figure_and_json(tmp_path, capsys):
    import torch

    assert (
        main([*FAST, "--impls", "numba,numpy,torch-cuda", "--no-accuracy", "--out", str(tmp_path), "--name", "r"]) == 0
    )
    result = json.loads((tmp_path / "r.json").read_text())
    has_cuda = torch.cuda.is_available()
    assert set(result["epoch_samples_per_second"]) == {"numba", "numpy"} | ({"torch-cuda"} if has_cuda else set())
    assert result["skipped"] == ({} if has_cuda else {"torch-cuda": "no CUDA device"})
    assert result["peak_gflops"] > 0 and result["memory_gbs"] > 0
    assert all(rate > 0 for row in result["epoch_samples_per_second"].values() for rate in row.values())
    # what ran, and when, in the JSON too: two runs' JSON files compare without their pages
    assert result["command"].startswith("python -m benchmarks.report --quick --rounds 1 --batch-sizes 512 ")
    assert result["date"] == time.strftime("%Y-%m-%d") and result["settle_s"] > 0
    page = (tmp_path / "r.md").read_text()
    assert "| numba |" in page and "| numpy |" in page and "batch 512" in page
    assert "python -m benchmarks.report --quick" in page and "![samples/s against batch size](r.png)" in page
    assert ("torch-cuda (no CUDA device)" in page) == (not has_cuda)
    for package in ("numba-cuda", "jax"):  # the versions a GPU page's readers need, beside numba's and torch's
        assert f"| {package} | {importlib.metadata.version(package)} |" in page
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_time_to_accuracy_includes_scikit_learn(tmp_path):
    assert main([*FAST, "--impls", "numba,numba-1-thread", "--out", str(tmp_path)]) == 0
    reached = json.loads((tmp_path / "benchmarks.json").read_text())["time_to_92"]
    assert set(reached) == {"numba", "scikit-learn"}  # a thread limit changes speed, not the time to 92%
    assert reached["numba"]["seconds"] > 0 and reached["numba"]["epoch"] >= 1
    assert reached["scikit-learn"]["accuracy"] >= 0.92 and reached["scikit-learn"]["max_iter"] >= 10


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--batch-sizes", "0"], "--batch-sizes must be between 1 and 60000, got 0"),
        (["--batch-sizes", "64,big"], "--batch-sizes must be comma-separated integers"),
        (["--impls", "jax"], "--impls: unknown jax"),
        (["--rounds", "0"], "--rounds must be an integer >= 1, got 0"),
        (["--impls", ""], "--impls must name implementations, comma-separated, got ''"),
        (["--impls", "numba,"], "--impls must name implementations, comma-separated, got 'numba,'"),
        (["--name", ""], "--name must be a plain file name stem, such as benchmarks-gpu, got ''"),
        (["--name", "../escape"], "--name must be a plain file name stem, such as benchmarks-gpu, got '../escape'"),
        (["--name", "/tmp/page"], "--name must be a plain file name stem"),
        (["--name", " "], "--name must be a plain file name stem, such as benchmarks-gpu, got ' '"),
        (["--name", "b" * 250], "--name is too long for a file name: " + "b" * 250 + "-interrupted.json would have"),
        (["--batch-sizes", ""], "--batch-sizes must be comma-separated integers, got ''"),
    ],
)
def test_bad_options_are_one_line(tmp_path, capsys, args, expected):
    code = main([*args, "--out", str(tmp_path / "x")])
    assert_one_line_error((code, capsys.readouterr().err), 2, expected)
    assert not (tmp_path / "x").exists()


def test_a_report_with_nothing_it_can_run_leaves_the_page_alone(tmp_path, capsys, monkeypatch):
    """--impls cuda on a machine without a GPU: a page of empty tables would replace the real one."""
    import benchmarks.report

    monkeypatch.setattr(benchmarks.report, "unavailable", lambda impl: "no CUDA device")
    page = tmp_path / "benchmarks.md"
    page.write_text("the page of an earlier run")
    code = main(["--impls", "cuda,torch-cuda", "--out", str(tmp_path), "--no-progress"])
    assert_one_line_error(
        (code, capsys.readouterr().err), 2, "none of the implementations asked for can run here",
        "cuda (no CUDA device); torch-cuda (no CUDA device)", "pick others with --impls",
    )  # fmt: skip
    assert page.read_text() == "the page of an earlier run" and sorted(tmp_path.iterdir()) == [page]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "no CUDA device here: the kernels' settings can only be timed on a GPU"),
        (["--kernels", "dense,fast"], "--kernels must be some of dense,sparse,grid, got dense,fast"),
        (["--batch-sizes", "64,big"], "--batch-sizes must be comma-separated integers"),
        (["--rounds", "0"], "need batch sizes between 1 and 60000 and --rounds >= 1, got 64,256,1024,8192 and 0"),
    ],
)
def test_the_cuda_tuning_sweep_refuses_in_one_line(tmp_path, capsys, args, expected):
    from numba import cuda

    from benchmarks import cuda_tune

    if cuda.is_available() and not args:
        pytest.skip("a GPU is here: the sweep would run")
    code = cuda_tune.main([*args, "--out", str(tmp_path / "x")])
    assert_one_line_error((code, capsys.readouterr().err), 2, expected)
    assert not (tmp_path / "x").exists()


def test_quoted_figures_are_rewritten_between_their_markers(tmp_path):
    from benchmarks.report import update_quotes
    from lr_from_scratch.errors import UserError

    sizes = [64, 1024]
    result = {
        "batch_sizes": sizes,
        "peak_gflops": 200.0,
        "epoch_samples_per_second": {
            impl: {str(s): rate * s for s in sizes}
            for impl, rate in (("numba", 3e4), ("numba-1-thread", 2e4), ("numpy", 1e4), ("torch-cpu", 5e3))
        },
        "time_to_92": {
            k: {"seconds": v} for k, v in (("numba", 0.2), ("numpy", 0.5), ("torch-cpu", 1.0), ("scikit-learn", 3.0))
        },
    }
    readme, fast, torch = tmp_path / "README.md", tmp_path / "fast.md", tmp_path / "torch.md"
    readme.write_text(
        "in <!-- benchmarks:epoch -->old<!-- /benchmarks:epoch --> on\n"
        "intro\n<!-- benchmarks:readme -->\nold\n<!-- /benchmarks:readme -->\noutro\n"
    )
    fast.write_text("a\n<!-- benchmarks:fast -->\nold\n<!-- /benchmarks:fast -->\nb\n")
    torch.write_text("<!-- benchmarks:torch -->\n<!-- /benchmarks:torch -->\n")
    files = {"readme": readme, "epoch": readme, "fast": fast, "torch": torch}
    update_quotes(result, files)
    text = readme.read_text()
    assert text.startswith("in <!-- benchmarks:epoch -->about 31 ms<!-- /benchmarks:epoch --> on\nintro\n")
    assert text.endswith("outro\n") and "old" not in text  # 60,000 / 1,920,000 samples/s = 31.25 ms
    assert "| lr_from_scratch, Numba | 1,920,000 | 30,720,000 |" in text and "0.20 s of training (Numba)" in text
    assert "| 64 | 1,920,000 | 3.0x | 6.0x | 30% | 1.50x |" in fast.read_text()
    assert "measured, 200 GFLOP/s." in fast.read_text() and "vs one thread |" in fast.read_text()
    assert "| `python -m torch_ref.train` | 320,000 |" in torch.read_text()
    fast.write_text("no markers here\n")
    with pytest.raises(UserError, match="markers <!-- benchmarks:fast --> ... <!-- /benchmarks:fast --> not found"):
        update_quotes(result, files)


def test_numba_1_thread_trains_on_one_thread_and_gives_the_threads_back():
    import numba

    from benchmarks.impls import Bench
    from lr_from_scratch.config import TrainConfig

    class Recorder:  # a backend that notes how many Numba threads each call had
        steps_per_call, n_train = 4, 64

        def __init__(self):
            self.threads = []

        def run_steps(self, order, batches, lr):
            self.threads.append(numba.get_num_threads())
            return 0.0, 0

        def evaluate(self, split):
            self.threads.append(numba.get_num_threads())
            return 0.0, 0.5

    before = numba.get_num_threads()
    for limit, expected in ((1, 1), (None, before)):
        backend = Recorder()
        bench = Bench(backend, TrainConfig(batch_size=8), limit)
        bench.epoch(), bench.step(), bench.infer()
        assert backend.threads == [expected] * 4  # 2 calls for the epoch's 8 batches, a step, inference
        assert numba.get_num_threads() == before


def test_the_peak_is_measured_without_the_variables_that_hold_blas_back(monkeypatch):
    """With OPENBLAS_CORETYPE set, NumPy's BLAS takes that kernel; machine_peak measures in a process without it."""
    import os

    from benchmarks.impls import machine_peak

    from .conftest import run_python

    kernel = "import sys; sys.path.insert(0, '.'); from benchmarks.impls import blas_kernel; print(blas_kernel())"
    free = run_python(kernel, {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}).stdout.strip()
    held = run_python(kernel, {**os.environ, "OPENBLAS_CORETYPE": "Haswell"}).stdout.strip()
    assert "Haswell" in held  # the variable holds NumPy in its process to that kernel ...
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    peak = machine_peak(256)
    assert peak["blas"] == free and peak["gflops"] > 0


@pytest.fixture
def docs_copy(tmp_path, monkeypatch):
    """A copy of the files the report quotes into, standing in for the repository's."""
    import shutil

    import benchmarks.report

    from .conftest import REPO

    (tmp_path / "docs").mkdir()
    for name in ("README.md", "docs/fast.md", "docs/torch.md"):
        shutil.copy(REPO / name, tmp_path / name)
    monkeypatch.setattr(benchmarks.report, "REPO", tmp_path)
    return tmp_path


def test_a_page_without_what_the_quotes_need_leaves_them_alone(docs_copy, capsys):
    before = {p: p.read_bytes() for p in (docs_copy / "README.md", docs_copy / "docs" / "fast.md")}
    out = docs_copy / "docs"
    assert main([*FAST, "--impls", "numba,numpy", "--no-accuracy", "--out", str(out)]) == 0  # no torch-cpu, no 64
    assert "left the quotes in README.md and docs/ as they were: they need numba, numpy, torch-cpu at batch 64" in (
        capsys.readouterr().out
    )
    assert {p: p.read_bytes() for p in before} == before and (out / "benchmarks.md").is_file()


def test_a_page_with_what_the_quotes_need_rewrites_them(docs_copy, capsys):
    readme = docs_copy / "README.md"
    before = readme.read_text()
    args = ["--quick", "--rounds", "1", "--batch-sizes", "64", "--impls", "numba,numpy,torch-cpu", "--no-accuracy"]
    assert main([*args, "--no-progress", "--out", str(docs_copy / "docs")]) == 0
    assert "updated the figures README.md, docs/fast.md and docs/torch.md quote" in capsys.readouterr().out
    result = json.loads((docs_copy / "docs" / "benchmarks.json").read_text())
    after = readme.read_text()
    assert after != before and f"{result['epoch_samples_per_second']['numba']['64']:,.0f}" in after


def test_an_implementation_that_fails_is_listed_and_the_page_of_the_others_is_kept(tmp_path, capsys, monkeypatch):
    """A first run on a new machine must not lose the page to one implementation: here one fails to build and
    one fails in its second epoch; the page holds numba, lists both as failed, and the exit is 1, one line."""
    import benchmarks.report

    real_build = benchmarks.report.build

    def build(impl, mnist, size):
        if impl == "numpy":
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore detail")
        bench = real_build(impl, mnist, size)
        if impl == "numba-naive":
            epochs = iter([bench.epoch, lambda: 1 / 0])
            bench.epoch = lambda: next(epochs)()
        return bench

    monkeypatch.setattr(benchmarks.report, "build", build)
    args = [*FAST, "--rounds", "2", "--impls", "numba,numpy,numba-naive", "--no-accuracy", "--out", str(tmp_path)]
    code = main(args)
    line = assert_one_line_error(
        (code, capsys.readouterr().err), 1, "2 implementation(s) failed and are listed as skipped on the page",
        "numpy (RuntimeError: CUDA error: an illegal memory access was encountered)",
        "numba-naive (ZeroDivisionError: division by zero)",
        f'their tracebacks are under "tracebacks" in {tmp_path / "benchmarks"}.json',
    )  # fmt: skip
    assert "more detail" not in line
    result = json.loads((tmp_path / "benchmarks.json").read_text())
    # the whole story of each failure, where the line said (a rerun of the same report only repeats the line)
    assert set(result["tracebacks"]) == {"numpy", "numba-naive"}
    assert "more detail" in result["tracebacks"]["numpy"] and "1 / 0" in result["tracebacks"]["numba-naive"]
    assert set(result["epoch_samples_per_second"]) == set(result["inference_samples_per_second"]) == {"numba"}
    assert result["skipped"]["numba-naive"] == "failed: ZeroDivisionError: division by zero"
    assert "numpy (failed: RuntimeError: CUDA error" in (tmp_path / "benchmarks.md").read_text()


def test_a_scikit_learn_that_fails_keeps_the_page_and_the_times_to_92(tmp_path, capsys, monkeypatch):
    """scikit-learn's fit comes last, after every timing round: a machine without it (or with one that breaks)
    must not cost the page. It is listed as failed, its traceback kept in the JSON."""
    import benchmarks.report

    def sklearn_time_to_accuracy(*args):
        raise ModuleNotFoundError("No module named 'sklearn'")

    monkeypatch.setattr(benchmarks.report, "sklearn_time_to_accuracy", sklearn_time_to_accuracy)
    code = main([*FAST, "--impls", "numba", "--out", str(tmp_path)])
    assert_one_line_error(
        (code, capsys.readouterr().err), 1, "1 implementation(s) failed",
        "scikit-learn (ModuleNotFoundError: No module named 'sklearn')", 'their tracebacks are under "tracebacks"',
    )  # fmt: skip
    result = json.loads((tmp_path / "benchmarks.json").read_text())
    assert "ModuleNotFoundError: No module named 'sklearn'" in result["tracebacks"]["scikit-learn"]
    assert set(result["time_to_92"]) == {"numba"} and result["time_to_92"]["numba"]["seconds"] > 0
    assert "scikit-learn (failed: ModuleNotFoundError" in (tmp_path / "benchmarks.md").read_text()


def _terminated_during(monkeypatch, impl: str, size: int, call: int) -> None:
    """Make ``impl``'s epoch at batch ``size`` send this process a real SIGTERM on its ``call``-th run (a time
    limit's ``timeout`` or a scheduler does the same): the epoch finishes, then the report must stop."""
    import benchmarks.report

    real_build, calls = benchmarks.report.build, []

    def build(name, mnist, batch):
        bench = real_build(name, mnist, batch)
        if (name, batch) == (impl, size):
            epoch = bench.epoch

            def terminating_epoch():
                epoch()
                calls.append(1)
                if len(calls) == call:
                    os.kill(os.getpid(), signal.SIGTERM)

            bench.epoch = terminating_epoch
        return bench

    monkeypatch.setattr(benchmarks.report, "build", build)


def test_a_terminated_report_writes_the_rounds_it_finished(tmp_path, capsys, monkeypatch):
    """SIGTERM in round 2 of 3: the page of round 1's figures (and the epoch that was running) is written beside
    the complete page, never over it, says it was interrupted, and the time-to-92% runs never start; the exit
    is 143 with one line saying what was written."""
    _terminated_during(monkeypatch, "numpy", 1024, call=2)
    (tmp_path / "benchmarks.md").write_text("a complete page")
    args = ["--batch-sizes", "512,1024", "--rounds", "3", "--impls", "numba,numpy", "--no-progress"]
    code = main([*args, "--out", str(tmp_path)])
    partial = tmp_path / f"benchmarks{INTERRUPTED_SUFFIX}"
    assert (code, capsys.readouterr().err) == (
        143, f"interrupted: wrote what was measured by then to {partial}.md, .png and .json (after 1 of 3 rounds)\n"
    )  # fmt: skip
    assert (tmp_path / "benchmarks.md").read_text() == "a complete page"
    result = json.loads(partial.with_suffix(".json").read_text())
    assert result["interrupted"] == {"by": "SIGTERM", "in": "rounds", "rounds_done": 1}
    assert {k: set(v) for k, v in result["epoch_samples_per_second"].items()} == {
        "numba": {"512", "1024"},
        "numpy": {"512", "1024"},
    }
    assert "time_to_92" not in result and result["skipped"] == {}
    page = partial.with_suffix(".md").read_text()
    assert "**Interrupted by SIGTERM after 1 of 3 rounds**" in page and f"]({partial.name}.png)" in page


def test_a_report_terminated_in_its_first_round_marks_what_it_did_not_time(tmp_path, capsys, monkeypatch):
    """SIGTERM during numpy's first epoch at batch 512: numba and numpy have that column and "-" at 1024, and
    numba-naive, never timed, is listed as not measured."""
    _terminated_during(monkeypatch, "numpy", 512, call=1)
    args = ["--batch-sizes", "512,1024", "--rounds", "2", "--impls", "numba,numpy,numba-naive", "--no-accuracy"]
    code = main([*args, "--no-progress", "--out", str(tmp_path)])
    assert code == 143 and "(after 0 of 2 rounds)" in capsys.readouterr().err
    partial = tmp_path / f"benchmarks{INTERRUPTED_SUFFIX}"
    result = json.loads(partial.with_suffix(".json").read_text())
    assert {k: set(v) for k, v in result["epoch_samples_per_second"].items()} == {"numba": {"512"}, "numpy": {"512"}}
    assert result["skipped"] == {"numba-naive": NOT_MEASURED}
    page = partial.with_suffix(".md").read_text()
    assert re.search(r"^\| numba \| [\d,]+ \| - \|$", page, re.MULTILINE)
    assert f"numba-naive ({NOT_MEASURED})" in page


def test_a_report_terminated_before_its_first_epoch_saves_nothing(tmp_path, capsys, monkeypatch):
    """SIGTERM while the implementations compile: the build under way finishes, no epoch is timed, and nothing
    is written (an empty page would only hide the last real one)."""
    import benchmarks.report

    real_build = benchmarks.report.build

    def build(name, mnist, batch):
        bench = real_build(name, mnist, batch)
        os.kill(os.getpid(), signal.SIGTERM)
        return bench

    monkeypatch.setattr(benchmarks.report, "build", build)
    code = main([*FAST, "--impls", "numba,numpy", "--out", str(tmp_path)])
    assert (code, capsys.readouterr().err) == (143, "interrupted: no epoch had been timed yet: nothing was saved\n")
    assert list(tmp_path.iterdir()) == []


def test_a_report_terminated_while_a_later_cell_compiles_keeps_the_epochs_timed(tmp_path, capsys, monkeypatch):
    """Each implementation is built as the first round reaches it, batch 512 before 1024: a SIGTERM while numpy
    builds for 1024 (on a GPU, torch.compile or JAX compiling) leaves batch 512's epochs, and numba's at 1024."""
    import benchmarks.report

    real_build = benchmarks.report.build

    def build(name, mnist, batch):
        bench = real_build(name, mnist, batch)
        if (name, batch) == ("numpy", 1024):
            os.kill(os.getpid(), signal.SIGTERM)
        return bench

    monkeypatch.setattr(benchmarks.report, "build", build)
    args = ["--batch-sizes", "512,1024", "--rounds", "2", "--impls", "numba,numpy", "--no-progress"]
    assert main([*args, "--out", str(tmp_path)]) == 143 and "(after 0 of 2 rounds)" in capsys.readouterr().err
    result = json.loads((tmp_path / f"benchmarks{INTERRUPTED_SUFFIX}.json").read_text())
    assert {k: set(v) for k, v in result["epoch_samples_per_second"].items()} == {
        "numba": {"512", "1024"},
        "numpy": {"512"},
    }


def test_a_report_terminated_in_the_time_to_92_runs_keeps_the_ones_that_finished(tmp_path, capsys, monkeypatch):
    """SIGTERM as numba's time-to-92% run ends: its result stays, scikit-learn's fits never start."""
    import benchmarks.report

    real = benchmarks.report.time_to_accuracy

    def time_to_accuracy(*args):
        reached = real(*args)
        os.kill(os.getpid(), signal.SIGTERM)
        return reached

    monkeypatch.setattr(benchmarks.report, "time_to_accuracy", time_to_accuracy)
    code = main([*FAST, "--rounds", "2", "--impls", "numba", "--out", str(tmp_path)])
    assert code == 143 and "(in the time-to-92% runs, all 2 rounds done)" in capsys.readouterr().err
    result = json.loads((tmp_path / f"benchmarks{INTERRUPTED_SUFFIX}.json").read_text())
    assert result["interrupted"] == {"by": "SIGTERM", "in": "time to 92%", "rounds_done": 2}
    assert set(result["time_to_92"]) == {"numba"} and result["time_to_92"]["numba"]["seconds"] > 0


def _gpu_machine(tmp_path: Path, otherwise: str, grid_unavailable: str = "") -> tuple[dict, Path]:
    """A copy of the checkout's layout in ``tmp_path`` for scripts/gpu.sh, and ``(environment, $OUT)`` for it: a
    stub ``python3`` first on PATH passes the GPU check and the GPU tests, answers the grid kernel's check with
    ``grid_unavailable`` (why it cannot run; empty: it can), and runs the shell line ``otherwise`` for every
    other command."""
    repo = Path(__file__).resolve().parent.parent
    (tmp_path / "scripts").mkdir()
    shutil.copy(repo / "scripts" / "gpu.sh", tmp_path / "scripts" / "gpu.sh")
    for package in ("lr_from_scratch", "benchmarks"):
        (tmp_path / package).symlink_to(repo / package)
    stub = tmp_path / "bin" / "python3"
    stub.parent.mkdir()
    stub.write_text(f'#!/bin/sh\ncase "$1 $2" in\n"-c "*grid_unavailable*) echo "{grid_unavailable}"; exit 0 ;;\n'
                    f'"-c "*|"-m pytest") exit 0 ;;\nesac\n{otherwise}\n')  # fmt: skip
    stub.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    return {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}", "OUT": str(out)}, out


def test_a_trial_run_writes_its_page_under_runs_not_over_the_docs(tmp_path, monkeypatch):
    """The default --out: a report run to try an option (``--quick``, as the page's exercise asks) once replaced
    docs/benchmarks.md and the figures README.md quotes; only ``--out docs`` (``make report``) writes there."""
    from benchmarks.report import parse

    monkeypatch.chdir(tmp_path)
    assert parse(["--impls", "numpy"])["out"] == Path("runs/benchmarks") and (tmp_path / "runs/benchmarks").is_dir()


@pytest.mark.parametrize(
    ("args", "data", "report_args"),
    [
        ([], ".data", ""),
        (["--rounds", "2"], ".data", "--rounds 2"),
        (["mnist", "--rounds", "2"], "mnist", "--rounds 2"),
    ],
)
def test_gpu_script_takes_a_data_folder_then_the_reports_options(tmp_path, args, data, report_args):
    """``make gpu ARGS="--rounds 2"`` passes options alone: they go to the report, and the data stays .data."""
    env, out = _gpu_machine(tmp_path, 'echo "$LR_FROM_SCRATCH_DATA|$*" > "$OUT/report-args"')
    run = subprocess.run([tmp_path / "scripts" / "gpu.sh", *args], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    got_data, got_args = (out / "report-args").read_text().strip().split("|")
    assert got_data == data and got_args.startswith("-m benchmarks.report --out docs --name benchmarks-gpu ")
    _, after_impls = got_args.split(" --impls ")
    assert after_impls.split(" ", 1)[1:] == ([report_args] if report_args else [])


@pytest.mark.parametrize("why", ["", "libcudadevrt.a: no such file"])
def test_gpu_script_says_first_when_the_grid_kernel_cannot_run_here(tmp_path, why):
    """Where CUDA's device runtime is missing, the grid kernel's tests fail and the report skips it: one warning
    line says so before the tests, and the script goes on; where it runs, nothing is said."""
    env, _ = _gpu_machine(tmp_path, "exit 0", grid_unavailable=why)
    run = subprocess.run([tmp_path / "scripts" / "gpu.sh"], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    warning = f"warning: the CUDA grid kernel cannot run here ({why}): its tests will fail and the report will skip"
    assert run.stderr == (f"{warning} cuda-grid\n" if why else "")


@pytest.mark.parametrize(
    ("simulated", "expected"),
    [
        ("0", "error: Numba sees no CUDA GPU here: run scripts/gpu.sh on a GPU machine with numba-cuda"),
        # the simulator is a GPU to Numba: the tests passed in it, and a page without a GPU was written, exit 0
        ("1", "error: NUMBA_ENABLE_CUDASIM=1 runs the CUDA kernels in the Numba simulator, not on a GPU (unset it): "
              "run scripts/gpu.sh on a GPU machine with numba-cuda"),
    ],
)  # fmt: skip
def test_gpu_script_without_a_gpu_is_one_line_before_anything_runs(simulated, expected):
    """This machine's own Python (no GPU) as ``python3``: the script stops at its check, with exit 2."""
    bin_ = Path(sys.executable).parent  # the virtual environment's, whose python3 has numba
    env = {**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}", "NUMBA_ENABLE_CUDASIM": simulated}
    run = subprocess.run([REPO / "scripts" / "gpu.sh"], env=env, capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stderr, run.stdout) == (2, expected + "\n", "")


def test_gpu_script_keeps_the_page_of_a_report_that_runs_out_of_time(tmp_path, mnist, mnist_dir):
    """scripts/gpu.sh on a (pretended) GPU machine whose report outlives its time: the report gets a real SIGTERM
    from ``timeout``, and the page of what it measured by then still reaches $OUT, with a one-line error.

    The script runs from a copy of the checkout's layout; a stub ``python3`` first on PATH answers the GPU check
    and the GPU tests (both pass), and runs everything else with this interpreter."""
    from benchmarks.impls import build

    build("numba", mnist, 512)  # compiled and cached on disk first: the report's time goes to its rounds
    env, out = _gpu_machine(tmp_path, f'exec {sys.executable} "$@"')
    env["TOTAL_S"] = "28"
    report = ["--impls", "numba", "--batch-sizes", "512", "--quick", "--rounds", "1000"]  # far past 28 s

    def gpu_sh(environment):
        return subprocess.run([tmp_path / "scripts" / "gpu.sh", str(mnist_dir), *report], env=environment,
                              capture_output=True, text=True, timeout=180)  # fmt: skip

    run = gpu_sh(env)
    assert run.returncode == 124, run.stderr
    assert run.stderr.splitlines()[-1].startswith("error: the report ran past ")
    assert "interrupted: wrote what was measured by then to docs/benchmarks-gpu-interrupted.md" in run.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"benchmarks-gpu-interrupted.{e}" for e in ("json", "md", "png")]
    result = json.loads((out / "benchmarks-gpu-interrupted.json").read_text())
    assert result["interrupted"]["by"] == "SIGTERM" and result["interrupted"]["rounds_done"] >= 1
    assert result["epoch_samples_per_second"]["numba"]["512"] > 0
    too_short = gpu_sh({**env, "TOTAL_S": "10"})  # no time left after the tests: said, and no report started
    assert too_short.returncode == 124 and too_short.stderr.startswith("error: the tests left ")
    assert "== the benchmark page" not in too_short.stdout


def test_a_report_terminated_while_it_writes_its_page_keeps_the_complete_page(tmp_path, capsys, monkeypatch):
    """SIGTERM once every figure is measured, while the page is being drawn: the complete page is written under
    its own name, and the one line says so."""
    import benchmarks.report

    real = benchmarks.report.figure

    def figure(result):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(result)

    monkeypatch.setattr(benchmarks.report, "figure", figure)
    code = main([*FAST, "--impls", "numba", "--no-accuracy", "--out", str(tmp_path)])
    expected = f"interrupted: the page was written first: {tmp_path}/benchmarks.md, .png and .json\n"
    assert (code, capsys.readouterr().err) == (143, expected)
    result = json.loads((tmp_path / "benchmarks.json").read_text())
    assert "interrupted" not in result and set(result["epoch_samples_per_second"]) == {"numba"}


def test_the_benchmark_summary_names_the_implementations_whatever_batch_sizes_ran(monkeypatch):
    """``pytest --benchmark-only -k 8192`` times no batch of 64: its summary still has a column per
    implementation, not rows of numbers under no name."""
    from types import SimpleNamespace

    import benchmarks.conftest as suite

    monkeypatch.setattr(suite, "RESULTS", {("numba", 8192): 2_500_000.0, ("numpy", 8192): 600_000.0})
    monkeypatch.setattr(suite, "EXTRA", {})
    lines = []
    suite.pytest_terminal_summary(SimpleNamespace(write_line=lines.append))
    header, row = lines[2], lines[3]
    assert header.split()[:3] == ["batch", "numpy", "numba"]
    assert row.split()[:3] == ["8192", "600,000", "2,500,000"]


def test_the_benchmark_summary_puts_each_ratio_under_its_own_heading(monkeypatch):
    """numba and numpy timed, not torch-cpu: numba/numpy is known, so it is shown, under its heading; the roofline
    under its own (it once stood under numba/numpy, and both ratios were blank without all three)."""
    from types import SimpleNamespace

    import benchmarks.conftest as suite

    monkeypatch.setattr(suite, "RESULTS", {("numba", 1024): 1_363_830.0, ("numpy", 1024): 729_816.0})
    monkeypatch.setattr(suite, "EXTRA", {"peak float32 GFLOP/s": 173.0})
    lines = []
    suite.pytest_terminal_summary(SimpleNamespace(write_line=lines.append))
    header, row = lines[2], lines[3]
    ends = {name: header.index(name) + len(name) for name in ("numba/numpy", "numba/torch-cpu", "roofline")}
    assert row[: ends["numba/numpy"]].endswith(" 1.9x") and row[: ends["numba/torch-cpu"]].endswith(" " * 15)
    assert re.fullmatch(r"\d+%", row[: ends["roofline"]].split()[-1]) and len(row) == ends["roofline"]


def test_the_benchmark_summary_marks_a_cell_not_timed_and_says_why(monkeypatch):
    """The compiled PyTorch step is timed at two batch sizes only: its other cells are "-", explained below the
    table, not "nan"."""
    from types import SimpleNamespace

    import benchmarks.conftest as suite

    results = {("numba", 64): 1_500_000.0, ("torch-cpu-compile", 64): 100_000.0, ("numba", 256): 2_000_000.0}
    monkeypatch.setattr(suite, "RESULTS", results)
    monkeypatch.setattr(suite, "EXTRA", {})
    lines = []
    suite.pytest_terminal_summary(SimpleNamespace(write_line=lines.append))
    assert lines[4].split()[:3] == ["256", "2,000,000", "-"] and "nan" not in "\n".join(lines)
    assert lines[5].startswith("-: not timed at that batch size (the compiled PyTorch step only at 64 and 1024)")


def test_a_batch_as_large_as_the_training_set_is_measured(mnist):
    """One batch an epoch: the warm-up step once took the full batches modulo their count, 0 (ZeroDivisionError),
    and every implementation failed."""
    import numpy as np

    from benchmarks.impls import build

    bench = build("numba", mnist, len(mnist.train_labels))
    assert len(bench.batches) == 1 and np.isfinite(bench.step()) and 0 < bench.epoch() < 3


def test_the_readme_names_the_batch_sizes_the_benchmark_suite_times():
    from benchmarks.conftest import COMPILED_BATCH_SIZES
    from benchmarks.test_training_speed import BATCH_SIZES

    def listed(sizes):
        return ", ".join(map(str, sizes[:-1])) + f" and {sizes[-1]}"

    readme = " ".join((REPO / "README.md").read_text().split())
    compiled = listed(COMPILED_BATCH_SIZES)
    assert f"every implementation at batch {listed(BATCH_SIZES)} (`torch.compile`d steps at {compiled} only" in readme

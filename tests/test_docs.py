"""The docs: figures come from the project's commands, and the numbers quoted in the text match them."""

from __future__ import annotations

import json
import re

from .conftest import REPO, load_script

DOCS = REPO / "docs"


def test_code_shown_in_the_docs_is_the_source():
    show = load_script("show_code")
    shown = [(page.name, *block) for page in sorted(DOCS.glob("*.md")) for block in show.shown_blocks(page)]
    pages = {page for page, *_ in shown}
    assert {"math.md", "numpy.md", "torch.md", "fast.md", "demo.md"} <= pages, (
        f"the chapters that teach code show it: {pages}"
    )
    for page, path, name, block in shown:
        assert block == show.source_of(path, name), (
            f"{page}: the block of {path}:{name} differs from the source; run python scripts/show_code.py"
        )


def test_every_image_the_docs_show_exists():
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page.read_text()):
            assert (DOCS / target).is_file(), f"{page.name} shows {target}, which is missing"


def test_evaluation_chapter_quotes_the_evaluation_output():
    r = json.loads((DOCS / "figures/evaluation/evaluation.json").read_text())
    text = " ".join((DOCS / "evaluation.md").read_text().split())  # line breaks do not matter
    f1, auc, ap = r["per_class"]["f1"], r["roc_auc"], r["average_precision"]
    quoted = [
        f"{r['accuracy']:.2%}",
        f"macro F1 {r['macro']['f1']:.4f}",
        f"F1 {f1[0]:.4f} and {f1[1]:.4f}",
        f"F1 {f1[5]:.4f} and {f1[8]:.4f}",
        f"ECE is {r['ece']:.4f}",
        f"{r['mean_confidence']['correct']:.1%} when it is right and {r['mean_confidence']['wrong']:.1%}",
        f"at least {min(auc):.4f} for every class (the lowest is class {auc.index(min(auc))})",
        f"lowest for class {ap.index(min(ap))} ({min(ap):.4f})",
    ]
    top = r["top_confusions"]
    quoted += [f"{top[0]['true']} read as {top[0]['predicted']} ({top[0]['count']} times)"]
    quoted += [f"{c['true']} read as {c['predicted']} ({c['count']})" for c in top[1:3]]
    for snippet in quoted:
        assert snippet in text, f"evaluation.md should say {snippet!r} (from evaluation.json)"


def test_training_chapter_quotes_the_aids_output():
    lr = json.loads((DOCS / "figures/training/lr_find.json").read_text())
    sweep = {r["batch_size"]: r for r in json.loads((DOCS / "figures/training/batch_sweep.json").read_text())}
    text = " ".join((DOCS / "training.md").read_text().split())
    low, high = lr["suggested_range"]
    best = max(sweep.values(), key=lambda r: r["test_accuracy"])
    for snippet in (
        f"from {low:.4f} to {high:.3f}",
        f"batch {best['batch_size']} does best ({best['test_accuracy']:.2%})",
        f"batch 16 reaches {sweep[16]['test_accuracy']:.2%}",
    ):
        assert snippet in text, f"training.md should say {snippet!r} (from the lr_find and sweep outputs)"


def test_benchmark_figures_quoted_in_readme_and_fast_chapter_match_the_report():
    r = json.loads((DOCS / "benchmarks.json").read_text())
    epoch, reached = r["epoch_samples_per_second"], r["time_to_92"]
    readme = " ".join((REPO / "README.md").read_text().split())
    fast = " ".join((DOCS / "fast.md").read_text().split())
    for size in ("64", "256", "1024", "8192"):
        numba = epoch["numba"][size]
        row = (
            f"| {size} | {numba:,.0f} | {numba / epoch['numpy'][size]:.1f}x | {numba / epoch['torch-cpu'][size]:.1f}x |"
        )
        assert row in fast, f"fast.md should have the row {row!r} (from benchmarks.json)"
        assert f"{numba:,.0f}" in readme and f"{epoch['torch-cpu'][size]:,.0f}" in readme
    for impl in ("numba", "numpy", "torch-cpu", "scikit-learn"):
        seconds = f"{reached[impl]['seconds']:.2f} s"
        assert seconds in readme and seconds in fast, f"{impl}'s time to 92% ({seconds}) should be quoted"


def test_the_readme_python_examples_run():
    """The README's Python blocks, in order, in one namespace: what a reader pastes must work."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["sparse"].n_iter_ == 5 and namespace["pieces"].n_iter_ == 6  # a call is an epoch


def test_the_model_diagram_is_the_one_its_script_draws():
    assert load_script("model_diagram").draw() == (DOCS / "figures" / "model" / "softmax_regression.svg").read_bytes()


def region(path, name: str) -> str:
    return path.read_text().split(f"<!-- {name} -->")[1].split(f"<!-- /{name} -->")[0]


def test_every_written_region_is_what_its_output_gives():
    """The regions the commands write hold exactly what those commands make of the committed outputs."""
    from benchmarks.report import quoted_regions

    quotes = quoted_regions(json.loads((DOCS / "benchmarks.json").read_text()))
    for name, path in (("readme", REPO / "README.md"), ("epoch", REPO / "README.md"), ("fast", DOCS / "fast.md"),
                       ("torch", DOCS / "torch.md")):  # fmt: skip
        assert region(path, f"benchmarks:{name}") == quotes[name], f"{path.name}: run python -m benchmarks.report"
    patience = load_script("patience")
    table = patience.table(json.loads((DOCS / "figures" / "training" / "patience.json").read_text()))
    assert region(DOCS / "training.md", "patience") == table
    outputs = load_script("quote_outputs")
    lines = outputs.OUTPUT.read_text().splitlines()
    assert region(REPO / "README.md", "output:train") == f"\n```text\n{outputs.excerpt(lines)}\n```\n"
    assert json.loads((DOCS / "figures" / "training" / "metrics.json").read_text())["test_accuracy"] >= 0.92

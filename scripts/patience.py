"""Why the default patience is the decay interval: train with patience 5 and 10 on seeds 0-3 (everything else at
its default) and write the table of docs/training.md from the results.

``python scripts/patience.py`` (``make figures`` runs it, about ten seconds) writes
``docs/figures/training/patience.json`` and the region ``<!-- patience -->`` of ``docs/training.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from lr_from_scratch.backends import make_backend
from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import load_mnist, prepare
from lr_from_scratch.files import replace_region, write_json
from lr_from_scratch.trainer import evaluate_kept, fit

DOCS = Path(__file__).resolve().parent.parent / "docs"
SEEDS = (0, 1, 2, 3)
PATIENCES = (5, TrainConfig().lr_step)  # the default patience is the decay interval


def run(mnist, patience: int, seed: int) -> dict:
    config = TrainConfig(patience=patience, seed=seed)
    backend = make_backend(config, prepare(mnist, config))
    state = fit(backend, config, progress=False, log=None)
    return {"test_accuracy": evaluate_kept(backend, state)[1], "epochs_run": len(state.history)}


def table(results: dict) -> str:
    lines = ["| patience | test accuracy, seeds 0-3 |", "| --- | --- |"]
    for patience, runs in sorted(results.items(), key=lambda item: int(item[0])):  # JSON sorts keys as text
        accuracies = ", ".join(f"{r['test_accuracy']:.2%}" for r in runs)
        stops = [r["epochs_run"] for r in runs]
        note = f" (stopped at epochs {', '.join(map(str, stops))})" if min(stops) < TrainConfig().epochs else ""
        name = f"{patience} (= `--lr-step`)" if int(patience) == TrainConfig().lr_step else patience
        lines.append(f"| {name} | {accuracies}{note} |")
    return "\n" + "\n".join(lines) + "\n"


def main() -> int:
    mnist = load_mnist(progress=False)
    results = {str(p): [run(mnist, p, seed) for seed in SEEDS] for p in PATIENCES}
    write_json(DOCS / "figures" / "training" / "patience.json", results)
    replace_region(DOCS / "training.md", "patience", table(results))
    print(f"wrote docs/figures/training/patience.json and the table of docs/training.md: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

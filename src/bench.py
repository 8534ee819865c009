"""Benchmarks: `python -m src.bench <name> [options]`; each prints its figures.

    training  the notebook's training vs the project's vs the fast setting (default)
    sweep     a multirun through the sequential and the parallel launcher
    tuner     a study with 1 tuner worker and with 2
    fidelity  the fast study setting against the faithful one over seeds: Spearman and regret
    study     one small Hyperband study, faithful and fast: wall time, trials/hour, ranking

`python -m src.bench <name> --help` lists a benchmark's options.
"""
from __future__ import annotations

import importlib
import sys

BENCHMARKS = {"training": "src.benchmarks.training", "sweep": "src.benchmarks.sweep",
              "tuner": "src.benchmarks.tuner", "fidelity": "src.benchmarks.fidelity",
              "study": "src.benchmarks.study"}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    name = argv.pop(0) if argv and not argv[0].startswith("-") else "training"
    if name not in BENCHMARKS:
        print(f"error: unknown benchmark {name!r}: expected one of {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    return importlib.import_module(BENCHMARKS[name]).main(argv) or 0


if __name__ == "__main__":
    sys.exit(main())

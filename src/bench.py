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
import os
import sys

from src.config.paths import PROJECT_ROOT
from src.core.native_log import native_stderr_to

BENCHMARKS = {"training": "src.benchmarks.training", "sweep": "src.benchmarks.sweep",
              "tuner": "src.benchmarks.tuner", "fidelity": "src.benchmarks.fidelity",
              "study": "src.benchmarks.study"}
# Read by TensorFlow once, at its import, which main() may do: before it, as src.run does.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The others run `python -m src.run`, which keeps its own TensorFlow lines in the job's folder.
TRAINS_HERE = ("training", "fidelity")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    name = argv.pop(0) if argv and not argv[0].startswith("-") else "training"
    if name not in BENCHMARKS:
        print(f"error: unknown benchmark {name!r}: expected one of {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    if name in TRAINS_HERE and not any(a in ("-h", "--help") for a in argv):
        # TensorFlow's start-up lines (the CUDA probe, oneDNN) to a log: the console shows the figures.
        with native_stderr_to(PROJECT_ROOT / "outputs" / "bench" / "tensorflow.log"):
            # deferred: TensorFlow, ~5 s, started inside the redirection; the others train in `src.run` processes
            import src.core.train  # noqa: F401
    return importlib.import_module(BENCHMARKS[name]).main(argv) or 0


if __name__ == "__main__":
    sys.exit(main())

"""Two configurations compared on the test set: seed by seed, image by image.

Each side is a set of finished runs of one configuration, one per seed (param
`seed`). Runs with the same seed are paired; when every pair logged its
per-image test predictions and true classes (`tracking.logged.log_evaluation`)
and both were scored on the same images, the difference is
`stats.paired_difference` (paired bootstrap over test images combined with the
spread over seeds). Otherwise only the accuracies are there, and the
difference is `stats.difference` (Welch over seeds), which is wider because it
cannot use the pairing; the comparison says which it is and why.

Used by the confirmation stage of a study, by a study's report and by
`python -m src.report --compare A B`.
"""
from __future__ import annotations

import hashlib
import logging
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd

from src.analysis import stats
from src.config import ProjectError
from src.config.paths import PROJECT_ROOT
from src.tracking.logged import read_test_classes

log = logging.getLogger(__name__)
RUN_ID = re.compile(r"[0-9a-f]{32}")
DEFAULT_TEST_IMAGES = 10_000


class ComparisonError(ProjectError):
    """The runs asked for cannot be compared (none found, or seeds repeated on one side)."""


@dataclass
class Comparison:
    label_a: str
    label_b: str
    seeds: pd.DataFrame  # one row per paired seed: seed, run ids, test accuracies, their difference
    difference: Union[stats.PairedDifference, stats.Difference]  # A minus B, test accuracy
    note: str = ""  # why it is not paired, or which runs were left out

    @property
    def paired(self) -> bool:
        return isinstance(self.difference, stats.PairedDifference)

    @property
    def significant(self) -> bool:
        return self.difference.significant

    def sentence(self) -> str:
        return self.difference.words(self.label_a, self.label_b) + (f". {self.note}" if self.note else "")

    def markdown(self) -> List[str]:
        """The per-seed table and the verdict, as lines of a markdown report."""
        lines = ["| seed | test accuracy A | test accuracy B | A - B |", "|---:|---:|---:|---:|"]
        lines += [f"| {row.seed} | {row.test_accuracy_a:.4f} | {row.test_accuracy_b:.4f} | {row.difference:+.4f} |"
                  for row in self.seeds.itertuples()]
        return [f"A: {self.label_a}; B: {self.label_b}.", "", *lines, "", f"**{self.sentence()}**", "",
                f"Method: {self.difference.method}.", ""]


def by_seed(runs: Sequence, label: str) -> Dict[int, object]:
    """{seed: run}; a side must be one configuration, so a seed may appear once."""
    found: Dict[int, object] = {}
    for run in runs:
        seed = run.data.params.get("seed")
        if seed is None:
            raise ComparisonError(f"{label}: run {run.info.run_id} has no 'seed' param, so it cannot be paired")
        if int(seed) in found:
            raise ComparisonError(f"{label}: runs {found[int(seed)].info.run_id} and {run.info.run_id} both have "
                                  f"seed {seed}; each side should be one configuration, one run per seed "
                                  "(narrow the filter)")
        found[int(seed)] = run
    return found


def compare_runs(client, runs_a: Sequence, runs_b: Sequence, label_a: str = "A", label_b: str = "B",
                 truth: Optional[np.ndarray] = None) -> Comparison:
    """A's test accuracy minus B's, paired by seed. `truth`: the test set's true classes when
    the caller has them (a study in progress), for runs that logged only their predictions."""
    a, b = by_seed(runs_a, label_a), by_seed(runs_b, label_b)
    common = sorted(set(a) & set(b))
    unpaired_seeds = sorted(set(a) ^ set(b))
    rows = [{"seed": s, "run_a": a[s].info.run_id, "run_b": b[s].info.run_id,
             "test_accuracy_a": a[s].data.metrics["test_accuracy"],
             "test_accuracy_b": b[s].data.metrics["test_accuracy"]} for s in common]
    table = pd.DataFrame(rows, columns=["seed", "run_a", "run_b", "test_accuracy_a", "test_accuracy_b"])
    table["difference"] = table["test_accuracy_a"] - table["test_accuracy_b"]
    left_out = f"seeds {unpaired_seeds} are on one side only and left out" if unpaired_seeds else ""
    if common:
        correct = correctness(client, [(a[s], b[s]) for s in common], truth)
        if not isinstance(correct, str):
            return Comparison(label_a, label_b, table, stats.paired_difference(*correct), left_out)
        reason = correct
    else:
        reason = "the two sides share no seed"
    # Without pairs, every run of each side counts, as independent samples of its configuration.
    accuracies_a = [run.data.metrics["test_accuracy"] for run in a.values()]
    accuracies_b = [run.data.metrics["test_accuracy"] for run in b.values()]
    test_images = int(next(iter(a.values())).data.params.get("data.test_images", DEFAULT_TEST_IMAGES))
    note = (f"Not paired on test images ({reason}): Welch's interval over seeds instead, which leaves out "
            "that both sides were scored on the same images")
    return Comparison(label_a, label_b, table, stats.difference(accuracies_a, accuracies_b, test_images), note)


def correctness(client, pairs, truth: Optional[np.ndarray]):
    """([A right per image] per seed, [B right per image] per seed), or why they cannot be had."""
    predicted, truths = {}, []
    for pair in pairs:
        for run in pair:
            classes, true_classes = read_test_classes(client, run.info.run_id)
            if classes is None:
                return f"run {run.info.run_id} logged no per-image test predictions"
            predicted[run.info.run_id] = classes
            if true_classes is not None:
                truths.append(true_classes)
    if truth is not None:
        truths.append(np.asarray(truth))
    if not truths:
        return "no run logged the true classes of its test images"
    reference = truths[0]
    if any(t.shape != reference.shape or not np.array_equal(t, reference) for t in truths) \
            or any(p.shape != reference.shape for p in predicted.values()):
        return "the runs were scored on different test images"
    return ([predicted[run_a.info.run_id] == reference for run_a, _ in pairs],
            [predicted[run_b.info.run_id] == reference for _, run_b in pairs])


def find_runs(client, side: str) -> List:
    """A side as given on the command line: comma-separated run ids, or an MLflow filter
    string (`mlflow.search_runs` syntax) over every experiment. Finished runs with a test
    accuracy only."""
    ids = [part.strip() for part in side.split(",")]
    if all(RUN_ID.fullmatch(i) for i in ids):
        runs = [client.get_run(i) for i in ids]
    else:
        experiments = [e.experiment_id for e in client.search_experiments()]
        try:
            runs = client.search_runs(experiments, f"{side} and attributes.status = 'FINISHED'", max_results=10000,
                                      order_by=["attributes.start_time ASC"])
        except Exception as err:  # noqa: BLE001 - MLflow's parser raises several kinds; say which side
            raise ComparisonError(f"{side!r} is not a usable MLflow filter: {str(err).splitlines()[0]}") from None
    evaluated = [r for r in runs if r.info.status == "FINISHED" and "test_accuracy" in r.data.metrics]
    if not evaluated:
        raise ComparisonError(f"{side!r} matches no finished run with a test accuracy")
    return evaluated


def write_comparison(comparison: Comparison, out_dir: Path, command: str) -> Path:
    """COMPARISON.md and comparison.csv (per seed) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    comparison.seeds.to_csv(out_dir / "comparison.csv", index=False, float_format="%.6g")
    lines = ["# Comparison", "", f"Generated by `{command}`.", "", *comparison.markdown()]
    path = out_dir / "COMPARISON.md"
    path.write_text("\n".join(lines))
    return path


def folder_name(label_a: str, label_b: str) -> str:
    """A readable, unique folder name for a comparison of two sides."""
    readable = re.sub(r"[^A-Za-z0-9.=-]+", "_", f"{label_a}_vs_{label_b}").strip("_")[:80]
    digest = hashlib.sha1("\n".join((label_a, label_b)).encode()).hexdigest()[:8]
    return f"{readable}_{digest}"


def compare_sides(client, side_a: str, side_b: str, labels: Optional[Sequence[str]] = None,
                  out_dir: Optional[Path] = None) -> Path:
    """`python -m src.report --compare A B`: find both sides' runs, pair them, log the verdict,
    write COMPARISON.md (default folder: experiments/comparisons/<A_vs_B>)."""
    label_a, label_b = labels or (side_a, side_b)
    comparison = compare_runs(client, find_runs(client, side_a), find_runs(client, side_b), label_a, label_b)
    log.info("%s", comparison.sentence())
    out_dir = out_dir or PROJECT_ROOT / "experiments" / "comparisons" / folder_name(label_a, label_b)
    command = "python -m src.report --compare " + shlex.join((side_a, side_b))
    return write_comparison(comparison, out_dir, command)

"""A study's confirmation stage as a result: which candidate, and what was decided.

The stage itself (training the top-k configurations and the baseline over
seeds) is `src/jobs/confirm.py`; this module decides and words its answer, for
that stage and for a report read back from MLflow, so both say the same thing:
the candidate is the best mean validation accuracy over the first
`tuner.confirm.seeds` seeds (never the test set), and the decision against the
baseline is made on the paired test comparison, look by look
(`analysis.decision`, `decide_runs`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from src.analysis import compare, decision, pairing, stats
from src.tracking.store import child_runs

BASELINE = "baseline"  # the confirm_candidate label of the study's baseline configuration
RECORDED = ("as the study computed it at its confirmation stage (paired over seeds and test images); its runs "
            "did not log their true classes, so it is not recomputed here")


@dataclass
class Confirmed:
    table: pd.DataFrame  # one row per (candidate, seed): val_accuracy, test_accuracy, run_id, ...
    winner: str
    comparison: pairing.Comparison  # winner minus baseline, test accuracy, every pair (95 %)
    decision: Optional[decision.Decision] = None  # None: runs without per-image test predictions
    chosen_after: int = 0  # the seeds per configuration the candidate was chosen on (validation)
    dropped: Dict[str, str] = field(default_factory=dict)  # candidates stopped early: why

    @property
    def baseline_best(self) -> bool:
        """The registry's champion stays and the report calls no one the winner: the decision is
        not `candidate_better` (without a decision: the baseline's mean validation accuracy is at
        least the best candidate's, the rule of studies from before decisions)."""
        if self.decision is not None:
            return self.decision.outcome != decision.CANDIDATE_BETTER
        means = self.table.groupby("candidate")["val_accuracy"].mean()
        return bool(means[BASELINE] >= means[self.winner])

    @property
    def best_is_called(self) -> str:
        """What the report calls the best candidate: 'winner' once it is decided better, else 'best candidate'."""
        return "best candidate" if self.baseline_best else "winner"

    @property
    def answer(self) -> str:
        """The confirmed configuration: the candidate when decided better, else the baseline."""
        return BASELINE if self.baseline_best else self.winner

    def chosen_how(self) -> str:
        searched = self.table.loc[self.table["candidate"] != BASELINE, "candidate"].nunique()
        if searched <= 1:
            return f"{self.winner}, the search's best, was confirmed."
        return (f"{self.winner} was chosen among the {searched} best configurations of the search on mean "
                f"validation accuracy over their first {self.chosen_after} seeds (never on test); only it "
                "and the baseline trained further seed pairs.")

    def advice(self) -> str:
        """What the decision leaves a user to do, when the candidate did not win."""
        outcome = self.decision.outcome if self.decision is not None else None
        if outcome == decision.BASELINE_BETTER:
            return "the baseline configuration beats the best candidate on test: nothing in this space improves on it"
        if outcome == decision.EQUIVALENT:
            return (f"the best candidate ties the baseline within {100 * self.decision.margin:g} points on test: "
                    "this space holds no gain as large as the margin")
        if outcome == decision.UNDECIDED:
            return (f"the confirmation could not decide: a gain below {100 * self.decision.mde:.1f} points would go "
                    "unseen; raise tuner.confirm.max_seeds to look for one")
        return "nothing in this space beats the baseline on validation"

    def summary(self) -> str:
        """The decision first, then how the candidate was chosen (the study run's description starts with it)."""
        if self.decision is not None:
            means = self.table.groupby("candidate")[["val_accuracy", "test_accuracy"]].mean()
            return (f"Decision: {self.decision.outcome.replace('_', ' ')}. "
                    + self.decision.words(self.winner, "the baseline configuration") + " " + self.chosen_how()
                    + f" Mean test accuracy {means.loc[self.winner, 'test_accuracy']:.4f} against the baseline's "
                    f"{means.loc[BASELINE, 'test_accuracy']:.4f}.")
        return self._summary_without_decision()

    def _summary_without_decision(self) -> str:
        means = self.table.groupby("candidate")[["val_accuracy", "test_accuracy"]].mean()
        seeds = int((self.table["candidate"] == self.winner).sum())
        if self.baseline_best:
            return (f"No searched configuration beat the baseline on validation: the baseline configuration's "
                    f"mean validation accuracy {means.loc[BASELINE, 'val_accuracy']:.4f} over "
                    f"{int((self.table['candidate'] == BASELINE).sum())} seeds is at or above the best "
                    f"candidate's ({self.winner}, {means.loc[self.winner, 'val_accuracy']:.4f} over {seeds} seeds). "
                    f"On the test set, {self.winner} {means.loc[self.winner, 'test_accuracy']:.4f} against the "
                    f"baseline's {means.loc[BASELINE, 'test_accuracy']:.4f}: " + self.comparison.sentence())
        return (f"Confirmed winner: {self.winner} (mean validation accuracy "
                f"{means.loc[self.winner, 'val_accuracy']:.4f} over {seeds} seeds; test "
                f"{means.loc[self.winner, 'test_accuracy']:.4f} against the baseline's "
                f"{means.loc[BASELINE, 'test_accuracy']:.4f}). " + self.comparison.sentence())


def confirmed_winner(table: pd.DataFrame) -> str:
    """The searched configuration with the best mean validation accuracy over its seeds
    (ties: the first in the table, i.e. the better-ranked in the search)."""
    searched = table[table["candidate"] != BASELINE]
    return searched.groupby("candidate", sort=False)["val_accuracy"].mean().idxmax()


def decide_runs(client, candidate_runs: List, baseline_runs: List, first: int, cap: int, margin_points: float,
                truth: Optional[np.ndarray] = None) -> Optional[decision.Decision]:
    """The decision over the seed pairs there are, look by look from `first` pairs: the first look
    that decides, else the last. The study and a report read back from MLflow both call this, so
    they decide alike. None where the runs logged no per-image test predictions."""
    candidates, baselines = pairing.by_seed(candidate_runs, "candidate"), pairing.by_seed(baseline_runs, BASELINE)
    seeds = sorted(set(candidates) & set(baselines))
    if len(seeds) < first:
        return None
    correct = pairing.correctness(client, [(candidates[s], baselines[s]) for s in seeds], truth)
    if isinstance(correct, str):
        return None
    cap = max(cap, first)
    found = None
    for pairs in range(first, len(seeds) + 1):
        found = decision.decide(decision.paired_interval(correct[0][:pairs], correct[1][:pairs]), pairs,
                                first, cap, margin_points / 100)
        if found.done:
            break
    return found


def read_confirmation(client, parent) -> Optional[Confirmed]:
    """The confirmation runs (children tagged study_role=confirm) of a study's parent run;
    None if it has none, or no baseline or searched configuration among them."""
    runs = child_runs(client, parent.info.experiment_id, parent.info.run_id, status="FINISHED", role="confirm")
    rows = [{"candidate": r.data.tags.get("confirm_candidate"), "seed": int(r.data.params["seed"]),
             "val_accuracy": r.data.metrics.get("best_val_accuracy", np.nan),
             "test_accuracy": r.data.metrics.get("test_accuracy", np.nan),
             "train_seconds": r.data.metrics.get("train_seconds", np.nan),
             "parameters": compare.model_parameters(r.data.metrics, r.data.params), "run_id": r.info.run_id,
             "reused_from": r.data.tags.get("reused_from", ""),
             # a run that did not log its training set's size (before they did) trained on the study's
             "train_images": r.data.metrics.get("epochs_trained", np.nan) * float(r.data.params.get(
                 "data.train_images", parent.data.params.get("data.train_images", "nan")))}
            for r in runs if "seed" in r.data.params and "test_accuracy" in r.data.metrics]
    table = pd.DataFrame(rows)
    if table.empty or BASELINE not in set(table["candidate"]) or set(table["candidate"]) == {BASELINE}:
        return None
    params = parent.data.params
    first = int(params.get("tuner.confirm.seeds", table.groupby("candidate")["seed"].nunique().min()))
    dropped = {part.split(" stopped after")[0]: part for part in parent.data.tags.get("confirm_dropped", "").split(" | ")
               if part}
    kept = table[~table["candidate"].isin(list(dropped))]
    winner = confirmed_winner(kept[kept["seed"] < kept["seed"].min() + first])
    by_id = {r.info.run_id: r for r in runs}
    side = {name: [by_id[i] for i in table.loc[table["candidate"] == name, "run_id"]] for name in (winner, BASELINE)}
    comparison = pairing.compare_runs(client, side[winner], side[BASELINE], winner, BASELINE)
    recorded = parent.data.metrics
    if not comparison.paired and {"confirm_difference_low", "confirm_difference_high"} <= set(recorded):
        # Confirmation runs from before the true classes were logged: the study paired them
        # with the labels it had in memory, and recorded the result.
        comparison = pairing.Comparison(winner, BASELINE, comparison.seeds, stats.Difference(
            recorded["confirm_difference"], recorded["confirm_difference_low"],
            recorded["confirm_difference_high"], RECORDED))
    # The stage logs the rule it ran under (confirm.*); a study from before it had one look at 1.0 point.
    cap = int(params.get("confirm.max_seeds", params.get("tuner.confirm.max_seeds", first)))
    margin = float(params.get("confirm.margin", params.get("tuner.confirm.margin", 1.0)))
    decided = decide_runs(client, side[winner], side[BASELINE], first, cap, margin)
    return Confirmed(table, winner, comparison, decided, first, dropped)


def confirmation_lines(confirmed: Confirmed, hyperparameters: Dict[str, str]) -> List[str]:
    """The report's section: every candidate and seed, the means, the best candidate against the
    baseline. `hyperparameters`: {candidate label: its values in words}."""
    table = confirmed.table.sort_values(["candidate", "seed"])
    order = (table[table["candidate"] != BASELINE].groupby("candidate")["val_accuracy"].mean()
             .sort_values(ascending=False).index.tolist() + [BASELINE])
    per_seed = ["| candidate | seed | validation accuracy | test accuracy | run |", "|---|---:|---:|---:|---|"]
    means = ["| candidate | hyperparameters | seeds | validation accuracy | test accuracy |", "|---|---|---:|---:|---:|"]
    for candidate in order:
        rows = table[table["candidate"] == candidate]
        for row in rows.itertuples():
            per_seed.append(f"| {candidate} | {row.seed} | {row.val_accuracy:.4f} | {row.test_accuracy:.4f} "
                            f"| `{row.run_id}` |")
        name = f"**{candidate}** (confirmed)" if candidate == confirmed.answer else candidate
        means.append(f"| {name} | {hyperparameters.get(candidate, '')} | {len(rows)} | "
                     f"{stats.mean_std(rows['val_accuracy'])} | {stats.mean_std(rows['test_accuracy'])} |")
    best = confirmed.best_is_called
    return [f"## Confirmation: the {best} against the baseline", "", f"**Answer:** {confirmed.summary()}", "",
            f"The best configurations of the search and the study's baseline configuration, each trained from "
            f"scratch on the same training/validation split (study children tagged `study_role=confirm`), over "
            f"{confirmed.chosen_after or table['seed'].nunique()} seeds; then the best on mean **validation** "
            "accuracy and the baseline in seed pairs until the paired test comparison decides, each look at its "
            "share of alpha (docs/tuning.md, 'Confirmation: the deciding rule'). The test set never chooses.",
            *reused_lines(table), *[f"\n- Stopped early: {why}." for why in confirmed.dropped.values()],
            "", *means, "", *per_seed, "",
            f"### {best[0].upper() + best[1:]} minus baseline, test accuracy", "", *confirmed.comparison.markdown()]


def reused_lines(table: pd.DataFrame) -> List[str]:
    """How many confirmation runs were taken from the store (tag `reused_from`) and what they saved."""
    if "reused_from" not in table or not table["reused_from"].astype(bool).any():
        return []
    reused = table[table["reused_from"].astype(bool)]
    images = reused["train_images"].sum()
    return ["", f"{len(reused)} of the {len(table)} confirmation runs were not retrained: the store held a finished "
            f"run of the same recipe (tag `reused_from`), which saved {images:,.0f} training images."]

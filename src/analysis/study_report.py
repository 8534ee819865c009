"""A study's answer: its sections put together (the confirmation, which hyperparameters
matter, where the winner sits in the space, what to try next, the figures) and the
summary that becomes the study run's description in MLflow.

Everything is read back from the study's runs (the parent, its trials and its
confirmation runs); nothing is trained. The sections themselves are built in
`study_search`, `confirmation_epochs`, `study_importance` and `study_figures`;
`report.write_report` places them in REPORT.md; `publish` logs the report into the
parent run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

from src.analysis import confirmation, space_edges, study_figures
from src.analysis.confirmation_epochs import epochs_lines, write_confirmation
from src.analysis.study_importance import importance_sections
from src.analysis.study_search import (
    StudyTrials,
    hyperparameter_values,
    log_scaled,
    search_winner,
    show_value,
    study_trials,
)
from src.tracking import logged

REPORT_ARTIFACTS = "report"  # where a study's report lives among its parent run's artifacts
NOTE_TAG = "mlflow.note.content"  # the run's description, shown at the top of the run in the MLflow UI


@dataclass
class StudyAnswer:
    confirmation: List[str]  # markdown: the confirmation section (or why there is none)
    analysis: List[str]  # markdown: importance, marginal effects, edges of the space, figures
    note: str  # the parent run's description
    confirmed: bool = False
    flags: List[str] = field(default_factory=list)  # edge-of-space warnings


def study_answer(client, parent, out_dir: Path) -> StudyAnswer:
    """The study's sections and note; figures and CSVs are written under `out_dir`."""
    trials = study_trials(client, parent)
    confirmed = confirmation.read_confirmation(client, parent)
    described = {f"trial {row['trial_id']}": hyperparameter_values(row, trials.names)
                 for row in trials.frame.to_dict("records")}
    if confirmed is not None:
        confirmation_lines = confirmation.confirmation_lines(confirmed, {**described, confirmation.BASELINE:
                                                                         "the study's base configuration"})
        answer = confirmed.summary()
    else:
        confirmation_lines = ["## Confirmation", "", "No confirmation runs (a study still searching, `tuner.confirm.seeds=0`, or a study "
                              "from before the stage existed): the winner below rests on one training run per "
                              "configuration.", ""]
        test = parent.data.metrics.get("test_accuracy")
        answer = (f"Search winner: {search_winner(trials, parent)}, "
                  + (f"test accuracy {test:.4f}" if test is not None else "no test evaluation yet")
                  + " (not confirmed over seeds).")
    importance_lines, headline, top, ranked = importance_sections(trials, out_dir, confirmed)
    winner = confirmed.winner if confirmed is not None else search_winner(trials, parent)
    who = confirmed.best_is_called if confirmed is not None else "winner"
    edge_lines, flags = _edges(trials, winner, parent.data.params, who)
    figure_lines = study_figures.write_figures(trials.frame, trials.names, trials.objective, trials.budget,
                                               None if confirmed is None else confirmed.table, out_dir,
                                               study_figures.Focus(top, ranked, log_scaled(trials.space)))
    epoch_lines, still_rising = (([], []) if confirmed is None
                                 else epochs_lines(write_confirmation(client, confirmed, out_dir)))
    next_line = next_step(confirmed, flags, still_rising, who)
    values = f" Hyperparameters of {winner}: {described[winner]}." if described.get(winner) else ""
    answer = answer if answer.endswith(".") else answer + "."  # the pairing's sentence ends without one
    note = "\n\n".join([f"**Study `{parent.data.tags.get('study', parent.info.run_name)}`.** {answer}{values}",
                         headline, *flags, f"What to try next: {next_line}",
                         f"Full report: artifacts `{REPORT_ARTIFACTS}/REPORT.md`."])
    return StudyAnswer([*confirmation_lines, *epoch_lines], [*importance_lines, *edge_lines,
                       "## What to try next", "", next_line, "", *figure_lines], note, confirmed is not None, flags)


def next_step(confirmed, flags: List[str], still_rising: List[str], who: str = "winner") -> str:
    """One actionable sentence: an edge worth widening, more epochs, or that nothing here beats
    the baseline."""
    advice = []
    untried = [f for f in flags if f.endswith(space_edges.UNTRIED)]
    at_edge = [f for f in flags if f not in untried]
    if at_edge:
        advice.append(f"widen the space where the {who} sits at its edge (" + "; ".join(
            f.split(":")[0] for f in at_edge) + ")")
    if untried:
        advice.append(f"search the values the space offers beyond the {who}'s that no trial drew (" + "; ".join(
            f.split(":")[0] for f in untried) + ")")
    if still_rising:
        advice.append(f"train longer: {', '.join(still_rising)} still improved at the last epoch")
    if confirmed is not None and confirmed.baseline_best:
        advice.insert(0, confirmed.advice())
    return ("; ".join(advice) if advice else
            "nothing flags a direction: no edge of the space is reached and every confirmed curve peaks before "
            "its last epoch") + "."


def publish(client, parent_run_id: str, out_dir: Path, note: str) -> None:
    """The report's folder into the parent run's artifacts (`report/`), the summary into its description."""
    logged.replace_artifacts(client, parent_run_id, str(out_dir), REPORT_ARTIFACTS)
    client.set_tag(parent_run_id, NOTE_TAG, note)


def _edges(trials: StudyTrials, winner: str, parent_params: Dict[str, str],
           who: str = "winner") -> Tuple[List[str], List[str]]:
    """Whether each of the winner's values is the smallest or largest the space offered (`who`:
    'best candidate' when the baseline beat it)."""
    label = winner.removesuffix(" (best so far)")
    row = trials.frame[("trial " + trials.frame["trial_id"]) == label] if len(trials.frame) else trials.frame
    if len(row):
        values = {name: row.iloc[0][name] for name in trials.names}
    else:  # the search's winner, as the parent run recorded it
        values = {name: parent_params[f"best.{name}"] for name in trials.names if f"best.{name}" in parent_params}
    if not trials.space:
        return ["## Edges of the space", "", "(the run has no `search_space.json`: edges not checked)", ""], []
    flags, lines = [], ["## Edges of the space", "", f"The {who} ({winner}) against the range each hyperparameter "
                        "offered (the study's `search_space.json`):", ""]
    for name in trials.names:
        if name not in values or name not in trials.space:
            continue
        flag = space_edges.edge_of_space(values[name], trials.space[name], name) or (
            space_edges.edge_of_what_was_tried(values[name], trials.frame[name], trials.space[name], name)
            if name in trials.frame else None)
        flags += [flag] if flag else []
        lines.append(f"- **{flag}**" if flag else f"- {name}: {show_value(values[name])} is inside the range offered")
    return lines + [""], flags

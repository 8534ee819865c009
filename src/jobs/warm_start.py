"""Warm start: known configurations are the search's first trials.

The study's baseline configuration first (where the search space holds its values), so the
leaderboard shows where it sits among the trials, then each entry of `tuner.enqueue`, as
Optuna's `enqueue_trial` and Ray Tune's `points_to_evaluate` do. keras-tuner has no such
call: every oracle that samples (random, Bayesian's initial points, each Hyperband bracket's
first round) draws through `Oracle._random_values`, so the queue is served there, a
configuration at a time, skipping any already tried (the oracle's own record of tried values,
which a resumed study reloads), and the random draws go on after it.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Tuple

from src.config import Config, search_space

log = logging.getLogger(__name__)
BASELINE, ENQUEUED = "baseline", "enqueued"


def queue(cfg: Config) -> List[Tuple[str, Dict[str, Any]]]:
    """[(label, {hyperparameter: value})]: the baseline (if wanted and inside the space), then
    tuner.enqueue's entries completed with the baseline's values (checked at config time:
    `search_space.check_enqueued`)."""
    space, base = cfg.tuner.search_space, search_space.baseline_values(cfg)
    chosen = [(BASELINE, base)] if cfg.tuner.baseline_first and not search_space.outside(space, base) else []
    return chosen + [(ENQUEUED, {**base, **entry}) for entry in cfg.tuner.enqueue]


def label(cfg: Config, values: Mapping[str, Any]) -> Optional[str]:
    """'baseline' or 'enqueued' when a trial's values are one of the queue's, else None."""
    tried = {name: value for name, value in values.items() if "/" not in name}
    for kind, queued in queue(cfg):
        if all(tried.get(name) == value for name, value in queued.items()):
            return kind
    return None


def install(oracle, cfg: Config) -> None:
    """Serve the queue through the oracle's random draws (see the module's docstring)."""
    configurations = [values for _, values in queue(cfg)]
    missing = search_space.outside(cfg.tuner.search_space, search_space.baseline_values(cfg))
    if cfg.tuner.baseline_first and missing:
        log.info("[study] the baseline configuration is outside the search space (%s): not a trial",
                 ", ".join(missing))
    if not configurations or getattr(oracle, "_warm_start", False):
        return
    draw = oracle._random_values

    def first_the_queue():
        for values in configurations:
            if not oracle._duplicate(values):
                return dict(values)
        return draw()
    oracle._random_values = first_the_queue
    oracle._warm_start = True

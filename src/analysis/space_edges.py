"""Whether a best value sits at an edge: of the searched space (the optimum may lie
beyond it: widen the space), or of what the trials drew while the space offers more
(search there). Each check returns the report's warning, or None.

A search-space entry is as in conf/tuner/search_space/*.yaml: a dict, an OmegaConf
node or `src.config.schema.HyperParameter`.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Dict, List, Optional

import numpy as np

# The smallest value the config allows for a key (src/config/schema.py): a best value there is
# at the edge of what exists, not of the space, and no wider space would reach beyond it.
LOWEST_POSSIBLE = {"model.dropout": 0.0, "trainer.epochs": 1.0}


def edge_of_space(best_value: Any, space_spec: Any, name: Optional[str] = None) -> Optional[str]:
    """A warning if the best value is at a bound of its searched range, else None.

    When the best value is the smallest or largest offered, the optimum may lie
    outside the space, so the space should be widened before trusting it.
    `space_spec` is a search-space entry as in conf/tuner/search_space/*.yaml
    (a dict, an OmegaConf node or `src.config.schema.HyperParameter`):
    int/float ranges compare with the lowest and the highest reachable value
    (min, and the last step at or below max), numeric choices with the
    smallest and largest choice. Non-numeric choices (words, filter lists),
    booleans and fixed values have no edge to report, and neither has a lower
    bound that is the smallest value the key can take (LOWEST_POSSIBLE).
    """
    spec = _spec_dict(space_spec)
    label = name or spec.get("key") or "hyperparameter"
    kind = getattr(spec.get("type"), "value", spec.get("type")) or "float"
    best = _as_number(best_value)
    if best is None:
        return None
    if kind == "choice":
        choices = list(spec.get("values") or [])
        if len(choices) < 2 or any(_as_number(v) is None for v in choices):
            return None
        lowest, highest = min(choices, key=_as_number), max(choices, key=_as_number)
    elif kind in ("int", "float") and spec.get("min") is not None and spec.get("max") is not None:
        lowest = spec["min"]
        top = _highest_reachable(float(lowest), float(spec["max"]), spec.get("step"),
                                 getattr(spec.get("sampling"), "value", spec.get("sampling")))
        highest = spec["max"] if _same(top, _as_number(spec["max"])) else (round(top) if kind == "int" else top)
    else:
        return None
    if _same(_as_number(lowest), _as_number(highest)):
        return None
    floor = LOWEST_POSSIBLE.get(spec.get("key") or label)
    for bound, word, short in ((highest, "largest", "max"), (lowest, "smallest", "min")):
        if word == "smallest" and floor is not None and _same(_as_number(bound), floor):
            continue  # nothing lies below it: no dropout, one epoch
        if _same(best, _as_number(bound)):
            return (f"{label}: best value {_show(best_value)} is the {word} offered ({short} {_show(bound)}): "
                    "at the edge of the space: widen it")
    return None


UNTRIED = "that no trial drew: search there"


def edge_of_what_was_tried(best_value: Any, tried: Any, space_spec: Any, name: Optional[str] = None) -> Optional[str]:
    """A warning if the best value is the largest (or smallest) value any trial drew while the
    space offers a value beyond it that no trial drew: the optimum may lie there. Only for
    numeric choices and stepped linear ranges, whose values can be listed (a continuous range's
    extreme draw is never its bound, and says nothing). A sampler can leave such a value undrawn
    by chance or always: keras-tuner never drew 0.6 from 0.0..0.6 by 0.1
    (keras-team/keras-tuner#1001) before src/config/search_space.py declared a sliver above max."""
    if edge_of_space(best_value, space_spec, name) is not None:
        return None  # the space's own edge: edge_of_space says it
    spec = _spec_dict(space_spec)
    label = name or spec.get("key") or "hyperparameter"
    offered = _offered_values(spec)
    best = _as_number(best_value)
    numbers = [n for n in (_as_number(v) for v in tried) if n is not None]
    if best is None or not offered or len(set(numbers)) < 2:
        return None
    floor = LOWEST_POSSIBLE.get(spec.get("key") or label)
    top, bottom = max(numbers), min(numbers)
    ends = (("largest", top, [v for v in offered if v > top and not _same(v, top)]),
            ("smallest", bottom, [v for v in offered if v < bottom and not _same(v, bottom)][::-1]))
    for word, bound, beyond in ends:
        if word == "smallest" and floor is not None and _same(bound, floor):
            continue
        if _same(best, bound) and beyond:  # beyond what any trial drew: untried
            return (f"{label}: best value {_show(best_value)} is the {word} any trial drew, and the space offers "
                    f"{_show(beyond[0])} {UNTRIED}")
    return None


def _offered_values(spec: Dict[str, Any]) -> List[float]:
    """The values a numeric choice or a stepped linear range offers, sorted; else []."""
    kind = getattr(spec.get("type"), "value", spec.get("type")) or "float"
    if kind == "choice":
        numbers = [_as_number(v) for v in spec.get("values") or []]
        return sorted(numbers) if numbers and all(n is not None for n in numbers) else []
    sampling = getattr(spec.get("sampling"), "value", spec.get("sampling")) or "linear"
    if kind in ("int", "float") and spec.get("step") and sampling == "linear" and spec.get("min") is not None:
        low, step = float(spec["min"]), float(spec["step"])
        top = _highest_reachable(low, float(spec["max"]), step, sampling)
        return [low + k * step for k in range(int(round((top - low) / step)) + 1)]
    return []


def _same(x: float, y: float) -> bool:
    # Stepped floats drift (0.1 + 5 * 0.1 != 0.6); logged values may be rounded.
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def _spec_dict(space_spec: Any) -> Dict[str, Any]:
    if isinstance(space_spec, Mapping):  # a dict or an OmegaConf DictConfig
        return dict(space_spec)
    if dataclasses.is_dataclass(space_spec):
        return dataclasses.asdict(space_spec)
    raise TypeError(f"a search-space entry should be a mapping, got {type(space_spec).__name__}")


def _highest_reachable(low: float, high: float, step: Any, sampling: Any) -> float:
    """keras-tuner offers min, min+step, ... up to max (min*step, ... with log
    sampling), so with a step that does not divide the range the top is below max."""
    if not step:
        return high
    step = float(step)
    # The small slack keeps 0.1 + 5 * 0.1 from landing just under 0.6 and losing a step.
    if sampling == "log" and step > 1:
        return low * step ** math.floor(math.log(high / low) / math.log(step) + 1e-9)
    return low + step * math.floor((high - low) / step + 1e-9)


def _as_number(value: Any) -> Optional[float]:
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _show(value: Any) -> str:
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return str(int(value))
    number = _as_number(value)
    # round() hides float drift from stepping (0.6000000000000001) but keeps 2.0 looking like a float.
    return repr(round(number, 10)) if number is not None else str(value)

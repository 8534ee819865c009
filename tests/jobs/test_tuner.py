"""The tracked tuners: one per kind, built with the kind's own budget (src/config/tuner_kinds.py)."""
from __future__ import annotations

import keras_tuner
import pytest

from src.config import TunerKind, tuner_kinds
from src.jobs import tuner

from helpers.configs import composed


def test_every_tuner_kind_has_its_tracked_keras_tuner_class():
    for kind in TunerKind:
        tracked = tuner.TRACKED_TUNERS[tuner_kinds.of(kind).keras_tuner_class]
        assert issubclass(tracked, tuner.TrackedTrials)
        assert issubclass(tracked, getattr(keras_tuner, tuner_kinds.of(kind).keras_tuner_class))


@pytest.mark.parametrize("kind", [kind.value for kind in TunerKind])
def test_make_tuner_builds_the_kinds_tracked_tuner_with_its_budget(kind, tmp_path):
    cfg = composed("+experiment=tune_hyperband", f"tuner.kind={kind}", "tuner.max_trials=5", "tuner.max_epochs=9",
                   f"tuner.directory={tmp_path}")
    built = tuner.make_tuner(cfg, tuner.CifarHyperModel(cfg, None), tmp_path / cfg.tuner.project_name, {"study": "s"})
    assert type(built) is tuner.TRACKED_TUNERS[tuner_kinds.of(kind).keras_tuner_class]
    assert built.study_tags == {"study": "s"}
    if kind == "hyperband":
        assert (built.oracle.max_epochs, built.oracle.factor) == (9, cfg.tuner.factor)
    else:
        assert built.oracle.max_trials == 5

"""A best value at the edge of the searched space, or of what the trials drew while the
space offers more (`src/analysis/space_edges.py`)."""
from __future__ import annotations

from src.analysis.space_edges import edge_of_space, edge_of_what_was_tried
from src.config.schema import HyperParameter, HyperParameterType

WIDTH = {"key": "model.width", "type": "choice", "values": [0.5, 1.0, 2.0]}
DROPOUT = {"key": "model.dropout", "type": "float", "min": 0.1, "max": 0.6, "step": 0.1}
EPOCHS = {"key": "trainer.epochs", "type": "int", "min": 5, "max": 20, "step": 5}


def test_edge_of_space_flags_both_ends_of_a_choice_list():
    assert edge_of_space(2.0, WIDTH) == ("model.width: best value 2.0 is the largest offered (max 2.0): "
                                         "at the edge of the space: widen it")
    assert "smallest offered (min 0.5)" in edge_of_space(0.5, WIDTH)
    assert edge_of_space(1.0, WIDTH) is None
    assert edge_of_space("2.0", WIDTH) is not None  # as MLflow logs it


def test_edge_of_space_is_silent_at_the_smallest_value_a_key_can_take():
    card_dropout = {**DROPOUT, "min": 0.0}  # conf/tuner/search_space/filters_dropout_epochs.yaml
    assert edge_of_space(0.0, card_dropout) is None  # no dropout: no wider space goes below it
    assert "largest offered (max 0.6)" in edge_of_space(0.6, card_dropout)
    assert edge_of_space(1, {**EPOCHS, "min": 1}) is None
    assert "smallest offered (min 0.1)" in edge_of_space(0.1, DROPOUT)  # 0.1 is not the floor
    assert "smallest offered (min 0.0)" in edge_of_space(0.0, {**card_dropout, "key": "model.width"})


def test_edge_of_space_flags_both_ends_of_a_range():
    assert "largest offered (max 0.6)" in edge_of_space(0.1 + 5 * 0.1, DROPOUT)  # float drift from stepping
    assert "smallest offered (min 0.1)" in edge_of_space(0.1, DROPOUT)
    assert edge_of_space(0.3, DROPOUT) is None
    assert "largest offered (max 20)" in edge_of_space(20, EPOCHS)
    assert edge_of_space(10, EPOCHS) is None
    # A step that does not divide the range stops short of max: 5, 10, 15, 20 of 5..22.
    assert "largest offered (max 20)" in edge_of_space(20, {**EPOCHS, "max": 22})
    log_range = {"key": "trainer.learning_rate", "type": "float", "min": 1e-4, "max": 1e-2, "sampling": "log"}
    assert "smallest" in edge_of_space(1e-4, log_range) and edge_of_space(1e-3, log_range) is None


def test_edge_of_space_accepts_the_schema_and_ignores_unordered_choices():
    spec = HyperParameter(key="model.dropout", type=HyperParameterType.float, min=0.1, max=0.6, step=0.1)
    assert edge_of_space(0.6, spec).startswith("model.dropout: best value 0.6 is the largest offered")
    filters = {"key": "model.filters", "type": "choice", "values": [[32, 64], [64, 128]]}
    assert edge_of_space([64, 128], filters) is None
    assert edge_of_space("adam", {"key": "optimizer", "type": "choice", "values": ["adam", "sgd"]}) is None
    assert edge_of_space(0.3, {"key": "x", "type": "fixed", "value": 0.3}) is None


def test_an_edge_of_what_the_trials_drew_is_flagged_where_the_space_offers_more():
    """The card study run before keras-tuner#1001's workaround drew dropout 0.0-0.5 from a space
    that reads 0.0-0.6: a winner at 0.5 is at the edge of what was searched."""
    card_dropout = {**DROPOUT, "min": 0.0}
    drawn = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.2]
    flag = edge_of_what_was_tried(0.5, drawn, card_dropout, "dropout")
    assert flag == "dropout: best value 0.5 is the largest any trial drew, and the space offers 0.6 that no trial drew: search there"
    assert edge_of_what_was_tried(0.3, drawn, card_dropout, "dropout") is None  # inside what was tried
    assert edge_of_what_was_tried(0.6, drawn + [0.6], card_dropout, "dropout") is None  # the space's own edge
    assert edge_of_what_was_tried(0.0, drawn, card_dropout, "dropout") is None  # no dropout: nothing below
    assert "smallest any trial drew" in edge_of_what_was_tried(20, [20, 30, 40], {**EPOCHS, "min": 10, "max": 50})
    assert edge_of_what_was_tried(64, [64, 64], {"type": "choice", "values": [16, 32, 64, 128]}) is None  # one value
    assert "offers 128" in edge_of_what_was_tried(64, [16, 64], {"type": "choice", "values": [16, 32, 64, 128]})
    # A continuous range: its extreme draw is never its bound, and says nothing.
    continuous = {"key": "trainer.learning_rate", "type": "float", "min": 1e-4, "max": 1e-2, "sampling": "log"}
    assert edge_of_what_was_tried(0.009, [0.0002, 0.001, 0.009], continuous) is None

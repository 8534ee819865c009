"""A study's final model: which trial it comes from."""
from __future__ import annotations

import pandas as pd


def test_the_final_model_is_the_confirmed_candidate_not_the_searchs_single_best_run():
    """Hyperband's single best run can be a short round's, or lose the confirmation over seeds
    to another candidate: the final model (and the registry's champion) follows the confirmation."""
    from types import SimpleNamespace

    from src.jobs.final_model import final_choice

    trials = {t: SimpleNamespace(trial_id=t) for t in ("0007", "0025", "0026")}
    tuner = SimpleNamespace(oracle=SimpleNamespace(get_trial=trials.__getitem__))
    board = pd.DataFrame({"trial_id": ["0007", "0025", "0026"], "best_val_epoch": [7, 18, 20]})
    best_trial, best_row = trials["0007"], board.iloc[0]  # the search's best: a 7-epoch round
    chosen, row = final_choice(tuner, board, best_trial, best_row, SimpleNamespace(winner="trial 0026"))
    assert chosen.trial_id == "0026" and row["best_val_epoch"] == 20
    # The baseline won: the final model is still the best candidate (the champion is not moved to it).
    assert final_choice(tuner, board, best_trial, best_row, SimpleNamespace(winner="trial 0025"))[0].trial_id == "0025"
    assert final_choice(tuner, board, best_trial, best_row, None)[0] is best_trial  # no confirmation stage

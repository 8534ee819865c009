"""A study's plan before launch and its progress during."""
from __future__ import annotations

from src.config import register

from helpers.configs import composed

register()


# ---- the plan --------------------------------------------------------------------

def test_hyperband_plan_follows_keras_tuners_schedule():
    from src.jobs import plan

    card = plan.plan(composed("+experiment=tune_hyperband"))
    assert (card.trials, card.search_epochs) == (30, 226)  # the ~226 epochs the README quotes
    assert card.confirm_runs == 12  # (top 3 + baseline) x 3 seeds before the first look
    # Then up to 3 more seed pairs (tuner.confirm.max_seeds 6): 6 runs of 20 epochs at most; the
    # expected number by simulation of the rule, between none and all of them.
    assert card.confirm_epochs_max == (12 + 6) * 20
    assert 12 * 20 < card.confirm_epochs < card.confirm_epochs_max
    assert set(card.expected_pairs) == {0.0, 0.01} and all(3 < p < 6 for p in card.expected_pairs.values())
    one_look = plan.plan(composed("+experiment=tune_hyperband", "tuner.confirm.max_seeds=3"))
    assert (one_look.confirm_epochs, one_look.confirm_epochs_max) == (12 * 20, 12 * 20)  # the fixed design


def test_plan_of_a_random_search_counts_the_middle_of_its_epochs_range():
    from src.jobs import plan

    the_plan = plan.plan(composed("+experiment=tune_random", "tuner.max_trials=7", "tuner.confirm.seeds=0"))
    assert (the_plan.trials, the_plan.search_epochs, the_plan.confirm_epochs) == (7, 7 * 13, 0)  # 5..20 -> 12.5


def test_progress_counts_trials_and_projects_the_remaining_epochs():
    from src.jobs import plan

    progress = plan.Progress(composed("+experiment=tune_hyperband", "tuner.workers=2"))
    # The process's first trial counts (its ETA once read 0 min: its clock started after that trial).
    line = progress.line(1, 3, 3, {"tuner/bracket": 2, "tuner/round": 0}, seconds_this_trial=60)
    # 223 epochs remain at 20 s each, shared by 2 workers: 2,230 s.
    assert line == "trial 1 of 30 (bracket 2, round 0), search ETA 37 min"
    line = progress.line(2, 6, 3, {"tuner/bracket": 2, "tuner/round": 0}, seconds_this_trial=0)
    # 220 epochs remain at 10 s each (60 s over this process's 6 epochs): 1,100 s.
    assert line == "trial 2 of 30 (bracket 2, round 0), search ETA 18 min"


def test_plan_of_a_grid_counts_keras_tuners_grid():
    from src.jobs import plan

    # conf/tuner/search_space/filters_dropout.yaml: 3 x 3 x 4 filters, dropout 0..0.6 by 0.1 (7 values).
    the_plan = plan.plan(composed("+experiment=tune_grid", "tuner/search_space=filters_dropout",
                                  "tuner.max_trials=1000", "tuner.confirm.seeds=0"))
    assert the_plan.trials == 3 * 3 * 4 * 7


def test_probed_models_are_drawn_from_the_space_seeded_dropout_left_alone():
    from src.jobs import plan

    cfg = composed("+experiment=tune_hyperband", "tuner/search_space=filters_dropout", "model.dropout=0.25")
    models = plan.sample_models(cfg, count=12)
    assert models == plan.sample_models(cfg, count=12)  # seeded: the same plan twice
    widths = [tuple(model.model.filters) for model in models]
    assert all(f1 in (16, 32, 64) and f2 in (32, 64, 128) and f3 in (64, 128, 256, 512) for f1, f2, f3 in widths)
    assert len(set(widths)) > 6  # drawn, not one configuration
    assert {model.model.dropout for model in models} == {0.25}


def test_the_plan_says_how_a_budget_cuts_the_search():
    from src.jobs import plan

    cfg = composed("+experiment=tune_hyperband", "tuner.budget_minutes=120")
    the_plan = plan.plan(cfg)
    assert plan.budget_line(cfg, the_plan, 100) == "  budget: 120 min; the whole study fits (about 100 min)"
    # 150 min for 226 + ~300 confirmation epochs: the confirmation's share set aside, the rest searches.
    cut = plan.budget_line(cfg, the_plan, 150)
    per_epoch = 150 / the_plan.epochs
    assert 0 < (120 - the_plan.confirm_epochs * per_epoch) < 120
    share = (120 - the_plan.confirm_epochs * per_epoch) / (the_plan.search_epochs * per_epoch)
    assert f"the search stops after about {share:.0%} of its 226 epochs" in cut
    assert "raise it" in plan.budget_line(cfg, the_plan, 1000)  # not even the confirmation fits

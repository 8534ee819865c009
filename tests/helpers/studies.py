"""A tiny study through the real command line, and reading back what it recorded."""
from __future__ import annotations

from src.tracking import store

TRIALS = 3


def study(synthetic_cifar, uri, tuner_dir, *extra):
    """A tiny random-search study of TRIALS trials of 2 epochs each (40 batches an epoch)."""
    return ("+experiment=tune_random", "tuner.confirm.seeds=0", f"data.dir={synthetic_cifar}", f"tracking.uri={uri}",
            f"tuner.directory={tuner_dir}", f"tuner.max_trials={TRIALS}", "tracking.log_model=false",
            "data.cache=false", "trainer.verbose=0", "model.filters=[8,16]", "model.dense_units=[16]",
            "trainer.batch_size=4", "trainer.steps_per_execution=1", "tuner/search_space=width_dropout_epochs",
            "tuner.search_space.epochs.type=fixed", "tuner.search_space.epochs.value=2", *extra)


def runs_of(uri):
    client = store.client(uri)
    experiment = client.get_experiment_by_name("tune_random")
    return client, client.search_runs([experiment.experiment_id], max_results=1000) if experiment else []


def roles(runs, role):
    return [run for run in runs if run.data.tags.get("study_role") == role]


def one_line(result) -> str:
    """The command's refusal: non-zero, no traceback; the line itself."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return next(line for line in result.stderr.splitlines() if line.startswith("error: "))

"""A configuration too big for this machine's memory is refused before training:
a single run with one line and no MLflow run, a study's trial as FAILED while the study goes on."""
from __future__ import annotations

import psutil
import pytest

from src.config import ModelConfig, ProjectError, TrainerConfig
from src.core import memory

from helpers.commands import run_here
from helpers.stores import all_runs

BIG = [8192, 16384, 32768]  # 3 blocks: about 100 GiB by the estimate


def estimate(images: int = 50_000, **keys) -> int:
    model = {k: v for k, v in keys.items() if k in ("filters", "width", "dense_units")}
    trainer = {k: v for k, v in keys.items() if k in ("batch_size", "precision")}
    return memory.estimate_bytes(ModelConfig(**model), TrainerConfig(**trainer), images)


def test_parameter_count_matches_the_notebook_model():
    assert memory.count(ModelConfig())[0] == 258_762  # build_cnn's count_params (src/core/model.py)
    assert memory.count(ModelConfig(width=4.0))[0] == 2_037_642


def test_estimate_grows_with_filters_and_batch_size():
    assert estimate(filters=[32, 64, 128]) < estimate(filters=[64, 128, 256]) < estimate(width=4.0)
    assert estimate(batch_size=32) < estimate(batch_size=256)
    assert estimate(dense_units=[256, 128]) < estimate(dense_units=[1024, 128])
    assert estimate(images=10_000) < estimate(images=50_000)


def test_bfloat16_halves_the_activations():
    per_batch = {p: estimate(batch_size=64, precision=p) - estimate(batch_size=32, precision=p)
                 for p in ("float32", "mixed_bfloat16")}
    assert per_batch["float32"] == 2 * per_batch["mixed_bfloat16"] > 0
    # Only the activations change: parameters, data copies and the runtime do not.
    # At batch 32 (per_batch is 32 images' worth), bf16 saves exactly its own activations.
    assert estimate(precision="float32") - estimate(precision="mixed_bfloat16") == per_batch["mixed_bfloat16"]


def test_check_fits_refuses_with_the_keys_to_change():
    model, trainer = ModelConfig(), TrainerConfig()
    assert memory.check_fits(model, trainer, available=2**40) == memory.estimate_bytes(model, trainer)
    with pytest.raises(memory.MemoryBudgetError) as caught:
        memory.check_fits(model, trainer, available=2**20)
    assert isinstance(caught.value, ProjectError)
    message = str(caught.value)
    assert "\n" not in message
    for text in ("needs about", "model.filters=[32, 64, 128] x model.width=1", "model.dense_units=[256, 128]",
                 "trainer.batch_size=32", "but 1 MiB is free",
                 "lower model.filters / model.width / model.dense_units or trainer.batch_size"):
        assert text in message, message


def test_a_run_too_big_fails_before_training(synthetic_cifar, tracking_uri):
    if estimate(filters=BIG) < psutil.virtual_memory().available:
        pytest.skip("this machine has room for the 'too big' configuration")
    result = run_here(f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}", "trainer.epochs=1",
                      "trainer.verbose=0", "tracking.log_model=false", f"model.filters=[{','.join(map(str, BIG))}]")
    assert result.returncode == 1, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: this configuration needs about "), last
    assert "model.filters=[8192, 16384, 32768] x model.width=1" in last and "GiB is free" in last, last
    assert all_runs(tracking_uri) == []


@pytest.mark.slow  # a whole study
def test_a_study_records_a_trial_too_big_as_failed_and_goes_on(synthetic_cifar, tracking_uri, tmp_path):
    # GridSearch tries each width once: [8, 16] x 2048 = [16384, 32768] filters, about 78 GiB.
    big = memory.estimate_bytes(ModelConfig(filters=[8, 16], dense_units=[16], width=2048.0), TrainerConfig())
    if big < psutil.virtual_memory().available:
        pytest.skip("this machine has room for the 'too big' trial")
    result = run_here("+experiment=tune_grid", "tuner.confirm.seeds=0", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
                      f"tuner.directory={tmp_path / 'tuner'}", "trainer.verbose=0", "tracking.log_model=false",
                      "model.filters=[8,16]", "model.dense_units=[16]", "trainer.batch_size=32",
                      "tuner.search_space.width.values=[1.0,2048.0,0.5]", "tuner.search_space.dropout.values=[0.25]",
                      "tuner.search_space.epochs.values=[1]", "tuner.max_trials=3")
    assert result.returncode == 0, result.stderr[-3000:]
    runs = all_runs(tracking_uri)
    parent = [r for r in runs if r.data.tags.get("study_role") == "parent"]
    trials = {r.data.params["hp.width"]: r for r in runs if r.data.tags.get("study_role") == "trial"}
    assert len(parent) == 1 and parent[0].info.status == "FINISHED"
    assert sorted(trials) == ["0.5", "1.0", "2048.0"]
    refused = trials.pop("2048.0")
    assert refused.info.status == "FAILED"
    assert refused.data.tags["failure"].startswith("this configuration needs about "), refused.data.tags
    assert "model.width=2048" in refused.data.tags["failure"]
    assert [t.info.status for t in trials.values()] == ["FINISHED", "FINISHED"]
    assert parent[0].data.metrics["trials_failed"] == 1 and parent[0].data.metrics["trials_finished"] == 2
    assert "refused: this configuration needs about" in result.stdout + result.stderr

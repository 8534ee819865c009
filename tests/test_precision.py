"""trainer.precision=mixed_bfloat16: a float32 output layer, and the same
accuracy as float32 on a small real run with the same seed."""
from __future__ import annotations

import pytest

from src.config import DataConfig, ModelConfig, Precision, TrainerConfig, Validation

from conftest import SHARED_CIFAR, requires_shared_data


def train_and_score(splits, precision: Precision) -> float:
    import keras

    from src import evaluate, train
    from src.model import build_cnn

    keras.backend.clear_session()
    keras.utils.set_random_seed(42)
    trainer = TrainerConfig(epochs=3, batch_size=64, precision=precision, verbose=0)
    train.set_precision(precision)
    try:
        model = train.compile_model(build_cnn(ModelConfig()), trainer)
        assert model.layers[-1].compute_dtype == "float32"
        if precision is Precision.mixed_bfloat16:
            assert model.layers[0].compute_dtype == "bfloat16"
        train.fit(model, splits, trainer)
        return evaluate.evaluate(model, splits.x_test, splits.y_test, splits.class_names).accuracy
    finally:
        train.set_precision(Precision.float32)


@pytest.mark.slow
@requires_shared_data()
def test_bfloat16_matches_float32_accuracy_within_1_5_points():
    from src import data

    splits = data.load(DataConfig(dir=str(SHARED_CIFAR), validation=Validation.split, limit_train=15000), seed=42)
    float32 = train_and_score(splits, Precision.float32)
    bfloat16 = train_and_score(splits, Precision.mixed_bfloat16)
    print(f"test accuracy float32 {float32:.4f}, mixed_bfloat16 {bfloat16:.4f}")
    assert float32 > 0.40 and bfloat16 > 0.40
    assert abs(float32 - bfloat16) <= 0.015

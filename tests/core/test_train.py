"""Training (src/core/train.py): the optimizer and its decoupled weight decay, the batches
and order `fit` feeds Keras, and the precision setting: native bfloat16 from the CPU flags, a
warning where TensorFlow emulates it."""
from __future__ import annotations

import pytest

from src.config import ModelConfig, Precision

from helpers.cifar import random_images


def test_the_default_optimizer_is_the_notebooks_and_weight_decay_sets_keras_own():
    import keras

    from src.config import TrainerConfig
    from src.core.train import make_optimizer

    def settings(optimizer, **changed):  # its config less the name Keras numbers per instance (adam, adam_1)
        return {**{k: v for k, v in optimizer.get_config().items() if k != "name"}, **changed}

    notebook = settings(keras.optimizers.Adam(learning_rate=0.001))
    default = make_optimizer(TrainerConfig())
    assert isinstance(default, keras.optimizers.Adam) and settings(default) == notebook
    assert default.weight_decay is None
    decayed = make_optimizer(TrainerConfig(weight_decay=0.004))
    assert isinstance(decayed, keras.optimizers.Adam) and decayed.weight_decay == 0.004
    assert settings(decayed, weight_decay=None) == notebook  # nothing else changes


def test_weight_decay_shrinks_the_weights_each_step():
    """Keras' decoupled decay: each step multiplies the weights by 1 - learning_rate x weight_decay
    before Adam's update. Same seed, same batches: with decay the kernel ends smaller, by that factor."""
    import numpy as np

    from src.config import TrainerConfig
    from src.core import train

    images, labels = random_images(64, seed=5)

    def kernel_after_four_steps(weight_decay: float):
        cfg = TrainerConfig(learning_rate=0.01, weight_decay=weight_decay, verbose=0)
        model = train.prepare_model(ModelConfig(filters=[4], dense_units=[8]), cfg, seed=0)
        start = model.get_layer("conv1").kernel.numpy().copy()
        model.fit(images, labels, batch_size=16, epochs=1, shuffle=False, verbose=0)
        return start, model.get_layer("conv1").kernel.numpy()

    start, plain = kernel_after_four_steps(0.0)
    same_start, decayed = kernel_after_four_steps(0.1)
    np.testing.assert_array_equal(start, same_start)
    assert np.linalg.norm(decayed) < np.linalg.norm(plain)
    factor = (1 - 0.01 * 0.1) ** 4
    assert np.linalg.norm(decayed) / np.linalg.norm(plain) == pytest.approx(factor, rel=1e-4)


def test_training_takes_the_batches_and_order_that_fit_on_arrays_takes():
    """train.fit feeds Keras's own array pipeline with tf.data's autotuning off (it stalled
    epoch starts by seconds): the same batches in the same shuffled order as `model.fit(x, y)`,
    so the same weights to the bit, validation included."""
    import numpy as np

    from src.config import TrainerConfig
    from src.core import train
    from src.core.data import Splits

    rng = np.random.default_rng(0)
    images = rng.random((200, 32, 32, 3), dtype=np.float32)
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 200)]
    splits = Splits(x_train=images[:150], y_train=labels[:150], x_val=images[150:], y_val=labels[150:],
                    x_test=images[150:], y_test=labels[150:], class_names=[str(i) for i in range(10)],
                    source="synthetic", lossy=False, validation="split")
    model_cfg = ModelConfig(filters=[8, 16], dense_units=[16])
    cfg = TrainerConfig(epochs=2, batch_size=16, verbose=0)  # 150 images: a partial last batch

    ours = train.prepare_model(model_cfg, cfg, seed=7)
    result = train.fit(ours, splits, cfg)
    keras_way = train.prepare_model(model_cfg, cfg, seed=7)
    history = keras_way.fit(splits.x_train, splits.y_train, batch_size=16, epochs=2, verbose=0,
                            validation_data=(splits.x_val, splits.y_val))
    assert result.history == {k: [float(v) for v in vs] for k, vs in history.history.items()}
    for a, b in zip(ours.get_weights(), keras_way.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_bfloat16_is_native_only_with_the_cpu_flags_for_it():
    from src.core import train

    assert train.bfloat16_is_native("flags\t: fpu avx2 avx512f avx512_bf16 avx512_vnni")  # Zen 4
    assert train.bfloat16_is_native("flags\t: fpu avx2 amx_bf16 amx_tile")  # Sapphire Rapids
    assert not train.bfloat16_is_native("flags\t: fpu fma avx avx2 sha_ni vaes")  # Zen 3
    assert not train.bfloat16_is_native("flags\t: avx512f avx512_bf16x")  # a longer flag is not it


def test_emulated_bfloat16_is_warned_about_once(monkeypatch, caplog):
    from src.core import train

    monkeypatch.setattr(train, "bfloat16_is_native", lambda: False)
    train.warn_emulated_bfloat16.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="src.core.train"):
            for _ in range(3):  # as a study sets it for each trial
                train.set_precision(Precision.mixed_bfloat16)
    finally:
        train.set_precision(Precision.float32)
        train.warn_emulated_bfloat16.cache_clear()
    warnings = [r.getMessage() for r in caplog.records if "emulates it" in r.getMessage()]
    assert len(warnings) == 1 and "use trainer=default" in warnings[0], warnings

"""The notebook's model, exactly, and the config knobs that change it."""
from __future__ import annotations

from src.config import ModelConfig


def test_default_model_is_the_notebooks_258762_parameters():
    from src.core.model import build_cnn

    model = build_cnn(ModelConfig())
    assert model.count_params() == 258_762
    kinds = [layer.__class__.__name__ for layer in model.layers]
    assert kinds == ["Conv2D", "MaxPooling2D"] * 3 + ["Flatten", "Dense", "Dropout", "Dense", "Dropout", "Dense"]
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [32, 64, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == "valid" for c in convs)
    assert model.output_shape == (None, 10)
    assert model.layers[-1].activation.__name__ == "softmax"


def test_filters_dropout_and_dense_units_come_from_config():
    from src.core.model import build_cnn

    model = build_cnn(ModelConfig(filters=[16, 32], dense_units=[64], dropout=0.25))
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    dropouts = [layer for layer in model.layers if layer.__class__.__name__ == "Dropout"]
    assert [c.filters for c in convs] == [16, 32]
    assert [d.rate for d in dropouts] == [0.25]
    assert model.count_params() != 258_762


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


def test_evaluation_takes_the_batches_that_evaluate_and_predict_on_arrays_take():
    """evaluate.evaluate feeds the same pipeline with autotuning off to `model.evaluate` and
    `model.predict`: the loss and accuracy equal Keras's on the arrays to the bit, and so does
    every predicted class (a partial last batch included)."""
    import numpy as np

    from src.config import TrainerConfig
    from src.core import evaluate, train

    rng = np.random.default_rng(1)
    images = rng.random((70, 32, 32, 3), dtype=np.float32)
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 70)]
    model = train.prepare_model(ModelConfig(filters=[8, 16], dense_units=[16]), TrainerConfig(), seed=3)

    ours = evaluate.evaluate(model, images, labels, [str(i) for i in range(10)], batch_size=32)
    loss, accuracy = model.evaluate(images, labels, batch_size=32, verbose=0)
    probabilities = model.predict(images, batch_size=32, verbose=0)
    assert (ours.loss, ours.accuracy) == (float(loss), float(accuracy))
    np.testing.assert_array_equal(ours.y_pred, probabilities.argmax(axis=1))
    np.testing.assert_array_equal(ours.y_true, labels.argmax(axis=1))

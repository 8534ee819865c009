"""The notebook's model, exactly, and the config knobs that change it (src/core/model.py):
batch norm, the augmentation layers, in training only and through a save and a load."""
from __future__ import annotations

from src.config import ModelConfig

from helpers.cifar import random_images

NOTEBOOK_KINDS = ["Conv2D", "MaxPooling2D"] * 3 + ["Flatten", "Dense", "Dropout", "Dense", "Dropout", "Dense"]


def test_default_model_is_the_notebooks_258762_parameters():
    from src.core.model import build_cnn

    from helpers.configs import composed

    model = build_cnn(ModelConfig())
    assert model.count_params() == 258_762
    kinds = [layer.__class__.__name__ for layer in model.layers]
    assert kinds == NOTEBOOK_KINDS
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [32, 64, 128]
    assert all(c.kernel_size == (3, 3) and c.padding == "valid" for c in convs)
    assert all(c.activation.__name__ == "relu" for c in convs)  # relu inside the conv, no layer between
    assert model.output_shape == (None, 10)
    assert model.layers[-1].activation.__name__ == "softmax"
    # The levers of issue 34 are off in the composed baseline: the same model, layer for layer.
    baseline = composed("+experiment=baseline").model
    assert (baseline.batch_norm, baseline.augmentation.value) == (False, "none")
    assert [(layer.__class__.__name__, layer.count_params()) for layer in build_cnn(baseline).layers] == \
           [(layer.__class__.__name__, layer.count_params()) for layer in model.layers]


def test_batch_norm_sits_between_each_conv_and_its_relu():
    from src.core.model import build_cnn

    model = build_cnn(ModelConfig(batch_norm=True))
    kinds = [layer.__class__.__name__ for layer in model.layers]
    assert kinds == (["Conv2D", "BatchNormalization", "Activation", "MaxPooling2D"] * 3
                     + ["Flatten", "Dense", "Dropout", "Dense", "Dropout", "Dense"])
    for index in range(0, 12, 4):
        conv, norm, relu = model.layers[index:index + 3]
        assert conv.activation.__name__ == "linear" and relu.activation.__name__ == "relu"
        assert norm.input.shape == conv.output.shape
    # Each BatchNormalization: gamma, beta, moving mean and variance per filter of 32, 64, 128.
    assert model.count_params() == 258_762 + 4 * (32 + 64 + 128)


def test_augmentation_is_two_preprocessing_layers_in_front_of_the_notebooks_model():
    from src.core.model import build_cnn

    flip = build_cnn(ModelConfig(augmentation="flip"))
    model = build_cnn(ModelConfig(augmentation="flip_shift"))
    assert [layer.__class__.__name__ for layer in flip.layers] == ["RandomFlip", *NOTEBOOK_KINDS]
    assert [layer.__class__.__name__ for layer in model.layers] == ["RandomFlip", "RandomTranslation", *NOTEBOOK_KINDS]
    assert model.layers[0].mode == "horizontal" and model.count_params() == 258_762  # no weights of their own


def test_augmentation_changes_the_images_in_training_only():
    """Validation, test and src.predict see the images as they are: the augmented model's predict and
    evaluate equal, twice over, those of the same weights without augmentation; a training-mode call
    flips and shifts them."""
    import numpy as np

    from src.config import TrainerConfig
    from src.core import train

    images, labels = random_images(16)
    small = {"filters": [8, 16], "dense_units": [16]}
    augmented = train.prepare_model(ModelConfig(**small, augmentation="flip_shift"), TrainerConfig(), seed=1)
    plain = train.prepare_model(ModelConfig(**small), TrainerConfig(), seed=2)
    for layer in plain.layers:
        layer.set_weights(augmented.get_layer(layer.name).get_weights())
    first, second = (augmented.predict(images, batch_size=8, verbose=0) for _ in range(2))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, plain.predict(images, batch_size=8, verbose=0))
    assert augmented.evaluate(images, labels, verbose=0) == augmented.evaluate(images, labels, verbose=0) \
        == plain.evaluate(images, labels, verbose=0)

    flip, shift = augmented.get_layer("augment_flip"), augmented.get_layer("augment_shift")
    np.testing.assert_array_equal(np.asarray(shift(flip(images, training=False), training=False)), images)
    trained = np.asarray(shift(flip(images, training=True), training=True))
    assert trained.shape == images.shape and not np.array_equal(trained, images)
    changed = [not np.array_equal(a, b) for a, b in zip(trained, images)]
    assert sum(changed) >= len(images) // 2  # most images moved, not one by chance


def test_an_augmented_model_saved_and_loaded_predicts_as_the_one_in_memory(tmp_path):
    """As a run logs it (MLflow's Keras flavour, a .keras file) and src.predict loads it (pyfunc):
    the same probabilities to the bit, so the random layers stay off after loading too."""
    import keras
    import mlflow
    import numpy as np

    from src.config import TrainerConfig
    from src.core import train
    from src.tracking import logged

    images, labels = random_images(24, seed=3)
    model = train.prepare_model(ModelConfig(filters=[8, 16], dense_units=[16], augmentation="flip_shift"),
                                TrainerConfig(), seed=4)
    model.fit(images, labels, batch_size=8, epochs=1, verbose=0)  # its random layers have drawn
    expected = model.predict(images, verbose=0)
    model.save(tmp_path / "model.keras")
    np.testing.assert_array_equal(keras.saving.load_model(tmp_path / "model.keras").predict(images, verbose=0),
                                  expected)
    logged.KERAS_FLAVOR.save_model(str(tmp_path / "mlflow_model"), model=model)
    assert (tmp_path / "mlflow_model" / "data" / "model.keras").is_file()
    served = mlflow.pyfunc.load_model(str(tmp_path / "mlflow_model"))
    np.testing.assert_array_equal(np.asarray(served.predict(images)), expected)


def test_filters_dropout_and_dense_units_come_from_config():
    from src.core.model import build_cnn

    model = build_cnn(ModelConfig(filters=[16, 32], dense_units=[64], dropout=0.25))
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    dropouts = [layer for layer in model.layers if layer.__class__.__name__ == "Dropout"]
    assert [c.filters for c in convs] == [16, 32]
    assert [d.rate for d in dropouts] == [0.25]
    assert model.count_params() != 258_762

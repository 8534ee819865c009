"""The notebook's CNN, built from `model.*` config values."""
from __future__ import annotations

import keras
from keras import layers

from src.config import ModelConfig
from src.core.data import IMAGE_SHAPE, NUM_CLASSES


def build_cnn(cfg: ModelConfig, input_shape=IMAGE_SHAPE, num_classes: int = NUM_CLASSES) -> keras.Model:
    """Conv(relu, 'valid') + MaxPool 2x2 per entry of `filters`; Flatten;
    Dense(relu) + Dropout per entry of `dense_units`; Dense softmax.

    With the defaults (32/64/128, 3x3, 256/128, 0.5) this is the notebook's
    model: 258,762 parameters. The output layer computes in float32 so that a
    mixed-precision policy keeps a numerically safe softmax.
    """
    model = keras.Sequential(name="cifar10_cnn")
    model.add(keras.Input(shape=input_shape))
    for index, filters in enumerate(cfg.conv_filters):
        model.add(layers.Conv2D(filters, (cfg.kernel_size, cfg.kernel_size), activation="relu",
                                name=f"conv{index + 1}"))
        model.add(layers.MaxPooling2D((2, 2), name=f"pool{index + 1}"))
    model.add(layers.Flatten(name="flatten"))
    for index, units in enumerate(cfg.dense_units):
        model.add(layers.Dense(units, activation="relu", name=f"dense{index + 1}"))
        model.add(layers.Dropout(cfg.dropout, name=f"dropout{index + 1}"))
    model.add(layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions"))
    return model

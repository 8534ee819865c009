"""The notebook's CNN, built from `model.*` config values."""
from __future__ import annotations

import keras
from keras import layers

from src.config import Augmentation, ModelConfig
from src.core.data import IMAGE_SHAPE, NUM_CLASSES

SHIFT_FRACTION = 0.125  # flip_shift: up to 4 of 32 pixels each way, the usual CIFAR-10 shift


def augmentation_layers(kind: Augmentation | str) -> list:
    """Keras' preprocessing layers for `model.augmentation`: random in training, identity at
    inference, so validation, test and a served model see the images unchanged. float32 under
    any precision policy: they move pixels, and bfloat16 would round them."""
    kind = Augmentation(kind)
    if kind is Augmentation.none:
        return []
    chosen = [layers.RandomFlip("horizontal", dtype="float32", name="augment_flip")]
    if kind is Augmentation.flip_shift:
        chosen.append(layers.RandomTranslation(SHIFT_FRACTION, SHIFT_FRACTION, fill_mode="reflect",
                                               dtype="float32", name="augment_shift"))
    return chosen


def build_cnn(cfg: ModelConfig, input_shape=IMAGE_SHAPE, num_classes: int = NUM_CLASSES) -> keras.Model:
    """[augmentation]; Conv(relu, 'valid') + MaxPool 2x2 per entry of `filters` (with
    `batch_norm`: Conv, BatchNormalization, relu); Flatten; Dense(relu) + Dropout per entry of
    `dense_units`; Dense softmax.

    With the defaults (32/64/128, 3x3, 256/128, 0.5, no batch norm, no augmentation) this is
    the notebook's model: 258,762 parameters, the same layers. The output layer computes in
    float32 so that a mixed-precision policy keeps a numerically safe softmax.
    """
    model = keras.Sequential(name="cifar10_cnn")
    model.add(keras.Input(shape=input_shape))
    for layer in augmentation_layers(cfg.augmentation):
        model.add(layer)
    for index, filters in enumerate(cfg.conv_filters):
        kernel = (cfg.kernel_size, cfg.kernel_size)
        if cfg.batch_norm:
            model.add(layers.Conv2D(filters, kernel, name=f"conv{index + 1}"))
            model.add(layers.BatchNormalization(name=f"bn{index + 1}"))
            model.add(layers.Activation("relu", name=f"relu{index + 1}"))
        else:
            model.add(layers.Conv2D(filters, kernel, activation="relu", name=f"conv{index + 1}"))
        model.add(layers.MaxPooling2D((2, 2), name=f"pool{index + 1}"))
    model.add(layers.Flatten(name="flatten"))
    for index, units in enumerate(cfg.dense_units):
        model.add(layers.Dense(units, activation="relu", name=f"dense{index + 1}"))
        model.add(layers.Dropout(cfg.dropout, name=f"dropout{index + 1}"))
    model.add(layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions"))
    return model

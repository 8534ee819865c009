"""How much memory a configuration needs to train, estimated before anything is built.

A run too big for the machine would otherwise grow until the kernel's OOM killer ends
it with SIGKILL mid-epoch; `check_fits` refuses it first, in one line naming the keys
to change. The estimate is analytic (no TensorFlow): parameters x 4 copies (weights,
gradients, Adam's moments), activations kept for backprop x 3 x batch, TensorFlow's
copies of the arrays given to `fit`, and the runtime itself. The model behind it and
its check against measured peak RSS: experiments/perf/memory.md.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import psutil

from src.config import ModelConfig, Precision, ProjectError, TrainerConfig
from src.core.data import IMAGE_SHAPE, NUM_CLASSES

FLOAT32 = 4
PARAMETER_COPIES = 4  # weights, gradients, Adam's m and v (SGD or RMSprop keep fewer)
GRADIENT_FACTOR = 3  # measured 1.9x the kept forward activations; 3 leaves a margin
FIT_COPIES = 2  # peak RSS of fit grew by 1.5-2x the arrays it was given
IMAGE_BYTES = (math.prod(IMAGE_SHAPE) + NUM_CLASSES) * FLOAT32  # a float32 image and its one-hot label
# RSS after `import tensorflow, keras` and fitting a [8]/[16] model 10 steps: 776 MiB
# (831 MiB with everything src.run imports: MLflow, keras-tuner, pandas, ...);
# rounded up to 1 GiB for the allocator's slack and per-thread scratch buffers.
RUNTIME_BYTES = 2**30


class MemoryBudgetError(ProjectError):
    """A configuration needs more memory than this machine has free."""


def count(cfg: ModelConfig, input_shape=IMAGE_SHAPE, classes: int = NUM_CLASSES) -> Tuple[int, int]:
    """(trainable parameters, activation values kept per image) of build_cnn(cfg)."""
    size, _, features = input_shape
    params, kept = 0, size * size * features
    for filters in cfg.conv_filters:
        size -= cfg.kernel_size - 1
        params += (cfg.kernel_size ** 2 * features + 1) * filters
        kept += size * size * filters  # conv output (relu'd)
        size //= 2
        kept += size * size * filters  # pooled
        features = filters
    width = size * size * features
    for units in cfg.dense_units:
        params += (width + 1) * units
        kept += 2 * units  # dense output and dropout output
        width = units
    return params + (width + 1) * classes, kept + classes


def training_flops_per_image(cfg: ModelConfig, size: int = 32, channels: int = 3, classes: int = NUM_CLASSES) -> float:
    """Multiply-adds x 2 of one forward pass, x 3 for forward + backward."""
    flops, features = 0.0, channels
    for filters in cfg.conv_filters:
        size -= cfg.kernel_size - 1
        flops += 2 * cfg.kernel_size ** 2 * features * filters * size * size
        size //= 2
        features = filters
    width = size * size * features
    for units in [*cfg.dense_units, classes]:
        flops += 2 * width * units
        width = units
    return 3 * flops


def estimate_bytes(model: ModelConfig, trainer: TrainerConfig, images: int = 0) -> int:
    """Bytes to train `model` at `trainer.batch_size` on `images` (training + validation) images."""
    params, kept = count(model)
    activation_bytes = 2 if Precision(trainer.precision) is Precision.mixed_bfloat16 else FLOAT32
    return (params * PARAMETER_COPIES * FLOAT32 + trainer.batch_size * kept * GRADIENT_FACTOR * activation_bytes
            + FIT_COPIES * max(images, trainer.batch_size) * IMAGE_BYTES + RUNTIME_BYTES)


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_fits(model: ModelConfig, trainer: TrainerConfig, available: Optional[int] = None,
               images: int = 0) -> int:
    """The estimate in bytes; MemoryBudgetError if it exceeds the free memory (or `available`)."""
    needed = estimate_bytes(model, trainer, images)
    free = psutil.virtual_memory().available if available is None else available
    if needed > free:
        raise MemoryBudgetError(
            f"this configuration needs about {_size(needed)} (model.filters={list(model.filters)} x "
            f"model.width={model.width:g}, model.dense_units={list(model.dense_units)}, "
            f"trainer.batch_size={trainer.batch_size}) but {_size(free)} is free: "
            "lower model.filters / model.width / model.dense_units or trainer.batch_size")
    return needed

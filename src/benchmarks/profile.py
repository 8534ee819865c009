"""Where one training step's time goes, for `python -m src.bench training --profile`.

The baseline model's step at a trainer's precision and batch size, timed four
ways on a batch already in memory: Keras `fit` per batch (with its loop,
callbacks and data handling), the same step as one compiled TensorFlow
function, and then each layer alone (forward and backward through a compiled
function on an input of its own shape) and the optimizer's update alone. Each
layer's analytic FLOPs against its time say which layers run near the matmul
limit and which do not (memory-bound pooling and the first conv with 3 input
channels); the gap between the sum of the parts and the compiled step is what
the fused graph saves, and the gap to `fit` is Keras's own overhead.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, List

import keras
import numpy as np
import tensorflow as tf

from src.config import ModelConfig, TrainerConfig
from src.core import train

STEPS = 100


@dataclass
class Part:
    name: str
    ms: float  # per batch
    gflop: float  # per batch, forward + backward (analytic); 0 where not counted


@dataclass
class StepProfile:
    batch_size: int
    fit_ms: float
    compiled_ms: float
    parts: List[Part]


def _per_call(function: Callable, steps: int = STEPS) -> float:
    function()  # traces and warms up
    started = time.perf_counter()
    for _ in range(steps):
        result = function()
    np.asarray(result)
    return (time.perf_counter() - started) / steps * 1000


def _layer_gflop(layer, batch: int) -> float:
    """Forward + backward (x3) multiply-adds x 2 of a conv or dense layer."""
    weights = layer.get_weights()
    if not weights:
        return 0.0
    kernel = weights[0]
    outputs = int(np.prod(layer.output.shape[1:-1])) if len(layer.output.shape) > 2 else 1
    return 3 * 2 * kernel.size * outputs * batch / 1e9


def step_profile(splits, trainer: TrainerConfig) -> StepProfile:
    batch = trainer.batch_size
    model = train.prepare_model(ModelConfig(), trainer, seed=0)
    x = tf.constant(splits.x_train[:batch])
    y = tf.constant(splits.y_train[:batch])
    images = splits.x_train[:STEPS * batch]
    model.fit(images, splits.y_train[:len(images)], batch_size=batch, epochs=1, verbose=0)  # builds
    started = time.perf_counter()
    model.fit(images, splits.y_train[:len(images)], batch_size=batch, epochs=1, verbose=0)
    fit_ms = (time.perf_counter() - started) / (len(images) / batch) * 1000

    loss_fn = keras.losses.CategoricalCrossentropy()
    optimizer = model.optimizer

    @tf.function
    def compiled_step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    parts = []
    for layer in model.layers:
        inputs = tf.cast(tf.random.uniform((batch, *layer.input.shape[1:])), layer.compute_dtype)

        @tf.function
        def layer_step(layer=layer, inputs=inputs):
            with tf.GradientTape() as tape:
                tape.watch(inputs)
                loss = tf.reduce_sum(tf.cast(layer(inputs, training=True), tf.float32))
            return tape.gradient(loss, [inputs, *layer.trainable_variables])[0]

        parts.append(Part(layer.name, _per_call(layer_step), _layer_gflop(layer, batch)))
    gradients = [tf.zeros_like(v) for v in model.trainable_variables]

    @tf.function
    def update():
        optimizer.apply(gradients, model.trainable_variables)
        return optimizer.iterations

    parts.append(Part("optimizer update (Adam)", _per_call(update), 0.0))
    return StepProfile(batch, fit_ms, _per_call(compiled_step), parts)


def report(profile: StepProfile, matmul_gflops: float) -> str:
    total = sum(p.ms for p in profile.parts)
    lines = [f"  {'part':28s} {'ms/batch':>9} {'share':>6} {'GFLOP/s':>8} {'of limit':>8}"]
    for part in profile.parts:
        rate = part.gflop / (part.ms / 1000) if part.gflop else 0.0
        lines.append(f"  {part.name:28s} {part.ms:9.3f} {part.ms / total:6.0%} "
                     + (f"{rate:8.0f} {rate / matmul_gflops:8.0%}" if part.gflop else f"{'':8s} {'':8s}"))
    flops = sum(p.gflop for p in profile.parts)
    lines += [f"  sum of the parts {total:.2f} ms; the step compiled as one function {profile.compiled_ms:.2f} ms; "
              f"Keras fit {profile.fit_ms:.2f} ms per batch of {profile.batch_size}",
              f"  the step's {flops * 1000:.0f} MFLOP at the matmul limit ({matmul_gflops:.0f} GFLOP/s) would take "
              f"{flops / matmul_gflops * 1000:.2f} ms: fit reaches {flops / matmul_gflops * 1000 / profile.fit_ms:.0%}"]
    return "\n".join(lines)

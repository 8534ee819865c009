"""Training throughput, side by side: the notebook's way, ours, and the fastest sweep setting.

    python -m src.bench training [--images 20000] [--epochs 4] [--rounds 3] [--quick]

In one process, alternating A B C A B C ... so that drift in the machine's
speed hits all alike, each variant trains a fresh model of the baseline
architecture on the same images for one warm-up epoch plus `--epochs` timed
epochs. It prints each variant's median training images/s, the ratios, and
its share of this CPU's limit: training FLOPs per image (analytic, 3x the
forward pass) x images/s / the matmul rate measured on the spot.

  notebook  model.compile(optimizer='adam', ...); model.fit(x, y, batch_size=32)   (float32)
  ours      the project's training path (src/train.py) at batch 32, float32: same math
  fast      the fast study setting (trainer/fast): bfloat16, batch 64, sqrt learning-rate rule
  sweep     the project's path with trainer.precision=mixed_bfloat16, batch 256

Each variant's share is of its own precision's limit: the float32 or the
bfloat16 matmul rate, both measured on the spot. `--profile` adds where one
training step's time goes, layer by layer (src/benchmarks/profile.py).

The last line is machine-readable:
speedup=<ours/notebook> fast_speedup=<fast/notebook> sweep_speedup=<sweep/notebook> ours_img_s=<n>
notebook_img_s=<n> roofline_share=<ours> fast_roofline_share=<fast> bf16_matmul_x=<bf16/f32 matmul rate>
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from src.benchmarks import profile  # noqa: E402
from src.config import DataConfig, LrScaling, ModelConfig, Precision, TrainerConfig, Validation  # noqa: E402
from src.core import data as data_module  # noqa: E402
from src.core import train  # noqa: E402
from src.core.memory import training_flops_per_image  # noqa: E402
from src.core.model import build_cnn  # noqa: E402


def matmul_gflops(seconds: float = 2.0, n: int = 2048, dtype: str = "float32") -> float:
    """This CPU's matmul rate in `dtype` (float32 or bfloat16), measured now (TensorFlow,
    all threads): the limit a training step in that precision is held against."""
    a = tf.cast(tf.random.normal((n, n)), dtype)
    b = tf.cast(tf.random.normal((n, n)), dtype)
    tf.linalg.matmul(a, b).numpy()  # warm-up
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        tf.linalg.matmul(a, b).numpy()
        count += 1
    return 2 * n ** 3 * count / (time.perf_counter() - started) / 1e9


def notebook_way(splits, epochs: int) -> List[float]:
    """Exactly the notebook's calls (its architecture is the default ModelConfig),
    on float64 arrays as its `train_images / 255.0` gives."""
    keras.mixed_precision.set_global_policy("float32")
    model = build_cnn(ModelConfig())
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    timer = train.TrainingClock()
    images = splits.x_train.astype(np.float64)
    model.fit(images, splits.y_train, epochs=1 + epochs, callbacks=[timer], verbose=0)
    return timer.epoch_seconds[1:]


def project_way(trainer: TrainerConfig) -> Callable:
    def run(splits, epochs: int) -> List[float]:
        model = train.prepare_model(ModelConfig(), trainer)
        timer = train.TrainingClock()
        train.fit(model, splits, dataclasses.replace(trainer, epochs=1 + epochs, verbose=0),
                  callbacks=[timer], validate=False)
        return timer.epoch_seconds[1:]
    return run


FAST = TrainerConfig(batch_size=64, precision=Precision.mixed_bfloat16, lr_scaling=LrScaling.sqrt)  # trainer/fast
VARIANTS: Dict[str, Callable] = {
    "notebook": notebook_way,
    "ours": project_way(TrainerConfig(batch_size=32, precision=Precision.float32)),
    "fast": project_way(FAST),
    "sweep": project_way(TrainerConfig(batch_size=256, precision=Precision.mixed_bfloat16)),
}
PRECISION = {"notebook": "float32", "ours": "float32", "fast": "bfloat16", "sweep": "bfloat16"}


def load_images(args) -> "data_module.Splits":
    if args.data_dir:
        cfg = DataConfig(dir=args.data_dir, validation=Validation.test, limit_train=args.images, limit_test=100)
        return data_module.load(cfg, seed=0)
    rng = np.random.default_rng(0)  # no dataset: random images time the same
    raw = data_module.RawCifar(rng.integers(0, 255, (args.images, 32, 32, 3), dtype=np.uint8),
                               np.arange(args.images) % 10, np.zeros((100, 32, 32, 3), np.uint8),
                               np.arange(100) % 10, list(data_module.CLASS_NAMES), "random", False)
    return data_module.make_splits(raw, DataConfig(validation=Validation.test), seed=0)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m src.bench training", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=4, help="timed epochs per variant and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", default=os.environ.get("CIFAR10_DIR"))
    parser.add_argument("--quick", action="store_true", help="under two minutes: to check that it works")
    parser.add_argument("--profile", action="store_true", help="also show where a batch's time goes")
    args = parser.parse_args(argv)
    matmul_seconds = 2.0
    if args.quick:  # a smoke run: CI runs it on every landing, where bfloat16 may be emulated (~7x slower)
        args.images, args.epochs, args.rounds, matmul_seconds = 512, 1, 1, 0.5

    splits = load_images(args)
    flops = training_flops_per_image(ModelConfig())
    rates = {dtype: matmul_gflops(matmul_seconds, dtype=dtype) for dtype in ("float32", "bfloat16")}
    print(f"{splits.x_train.shape[0]} images per epoch; {flops / 1e6:.1f} MFLOP per training image; "
          f"matmul rate (measured now): float32 {rates['float32']:.0f} GFLOP/s, bfloat16 {rates['bfloat16']:.0f} "
          f"GFLOP/s ({rates['bfloat16'] / rates['float32']:.2f}x)", flush=True)
    timings: Dict[str, List[float]] = {name: [] for name in VARIANTS}
    for round_index in range(args.rounds):
        for name, variant in VARIANTS.items():
            keras.backend.clear_session()
            seconds = variant(splits, args.epochs)
            timings[name] += seconds
            print(f"round {round_index + 1} {name:8s} "
                  + " ".join(f"{splits.x_train.shape[0] / s:7.0f}" for s in seconds) + " images/s", flush=True)
    speed = {name: splits.x_train.shape[0] / statistics.median(s) for name, s in timings.items()}
    # Each setting against the limit of its own precision: bfloat16 matmuls run faster here.
    share = {name: flops * value / (rates[PRECISION[name]] * 1e9) for name, value in speed.items()}
    if args.profile:
        for label, trainer in (("float32, batch 32", TrainerConfig()), ("fast: bfloat16, batch 64", FAST)):
            keras.backend.clear_session()
            print(f"\nwhere a training step goes ({label}):")
            print(profile.report(profile.step_profile(splits, trainer),
                                 rates["bfloat16" if trainer.precision is Precision.mixed_bfloat16 else "float32"]))
    print()
    for name in VARIANTS:
        print(f"{name:8s} {speed[name]:7.0f} images/s  {speed[name] / speed['notebook']:.2f}x notebook  "
              f"{share[name]:.0%} of the {PRECISION[name]} matmul limit")
    print(f"speedup={speed['ours'] / speed['notebook']:.2f} fast_speedup={speed['fast'] / speed['notebook']:.2f} "
          f"sweep_speedup={speed['sweep'] / speed['notebook']:.2f} ours_img_s={speed['ours']:.0f} "
          f"notebook_img_s={speed['notebook']:.0f} roofline_share={share['ours']:.2f} "
          f"fast_roofline_share={share['fast']:.2f} bf16_matmul_x={rates['bfloat16'] / rates['float32']:.2f}")

if __name__ == "__main__":
    sys.exit(main())

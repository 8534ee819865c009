"""The benchmarks run (quick mode only: they are benchmarks, not timed tests)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

from helpers import PROJECT_ROOT, SHARED_CIFAR


def run_module(module: str, *args: str) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    if (SHARED_CIFAR / "data_batch_1").is_file():
        env["CIFAR10_DIR"] = str(SHARED_CIFAR)
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_training_benchmark_quick_prints_its_figures():
    last = run_module("src.bench", "training", "--quick").strip().splitlines()[-1]
    match = re.fullmatch(r"speedup=([\d.]+) fast_speedup=([\d.]+) sweep_speedup=([\d.]+) ours_img_s=(\d+) "
                         r"notebook_img_s=(\d+) roofline_share=([\d.]+) fast_roofline_share=([\d.]+) "
                         r"bf16_matmul_x=([\d.]+)", last)
    assert match, last
    # Figures only, no bounds: a share divides a rate timed over epochs by a matmul rate timed over
    # 2 s, and load between the two moved it above 1 (1.01 measured in a CI run beside other work).
    assert all(float(value) > 0 for value in match.groups())


def test_launcher_benchmark_quick_prints_its_figures():
    last = run_module("src.bench", "sweep", "--quick").strip().splitlines()[-1]
    match = re.fullmatch(r"launcher_speedup=([\d.]+) sequential_img_s=(\d+) parallel_img_s=(\d+) jobs=2 "
                         r"images_per_job=\d+", last)
    assert match, last
    assert float(match.group(1)) > 0

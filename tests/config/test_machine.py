"""What the machine decides (src/config/machine.py): native bfloat16 from the CPU flags or a
GPU, the `cpu` tag every run carries, and what `trainer=fast` becomes here."""
from __future__ import annotations

import os
import platform

import pytest

from src.config import validate

from helpers.configs import compose_config

ZEN3_FLAGS = "flags\t\t: fpu sse2 avx avx2 fma sha_ni vaes"


ZEN4_FLAGS = "flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16 vaes"


@pytest.mark.parametrize("cpuinfo, gpu, expected", [
    (ZEN3_FLAGS, False, None), (ZEN4_FLAGS, False, "avx512_bf16"),
    ("flags\t\t: avx2 amx_bf16 amx_tile", False, "amx_bf16"), (ZEN3_FLAGS, True, "GPU")])
def test_native_bfloat16_is_read_from_the_cpu_flags_or_a_gpu(cpuinfo, gpu, expected):
    from src.config.machine import native_bfloat16

    assert native_bfloat16(cpuinfo, gpu=gpu) == expected


def test_the_machine_is_described_by_its_model_and_the_flags_that_decide_its_speed(monkeypatch):
    """Every run's `cpu` tag: a figure from the store names the CPU it was measured on."""
    from src.config import machine

    monkeypatch.setattr(machine, "gpu_visible", lambda: False)
    zen3 = f"processor\t: 0\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC\n{ZEN3_FLAGS}\n\nprocessor\t: 1\n"
    cpus = len(os.sched_getaffinity(0))
    assert machine.describe(zen3) == f"AMD EPYC, family 25 model 1, {cpus} CPUs, avx2 fma; no avx512f avx512_bf16 amx_bf16"
    zen4 = f"model name\t: AMD EPYC 9R14\ncpu family\t: 25\nmodel\t\t: 17\n{ZEN4_FLAGS}\n"
    assert machine.describe(zen4).endswith(f"{cpus} CPUs, avx2 fma avx512f avx512_bf16; no amx_bf16")
    assert machine.describe("") == f"unknown CPU ({platform.machine()}), {cpus} CPUs"
    monkeypatch.setattr(machine, "gpu_visible", lambda: True)  # read each call, not cached with the text
    assert machine.describe(zen3).endswith("amx_bf16, GPU")


def test_trainer_fast_is_bfloat16_only_where_it_is_native():
    """On a CPU that emulates bfloat16 (a Zen 3) the fast setting was the slow one: there it is
    the faithful float32 setting, and the run says what it became."""
    from omegaconf import OmegaConf

    from src.config import LrScaling, Precision
    from src.config.machine import resolve
    from src.config.schema import effective_learning_rate

    raw = compose_config("+experiment=baseline", "trainer=fast")
    fast = validate(raw)
    assert Precision(fast.trainer.precision) is not Precision.auto and fast.trainer.resolved  # resolved once
    unresolved = OmegaConf.to_object(raw).trainer
    assert Precision(unresolved.precision) is Precision.auto
    native = resolve(unresolved, native="avx512_bf16")
    assert (native.precision, native.batch_size, native.lr_scaling) == (Precision.mixed_bfloat16, 64, LrScaling.sqrt)
    assert native.resolved == "mixed_bfloat16 (native: avx512_bf16)"
    emulated = resolve(unresolved, native=None, probe=False)
    assert (emulated.precision, emulated.batch_size, emulated.lr_scaling) == (Precision.float32, 32, LrScaling.none)
    assert effective_learning_rate(emulated) == 0.001 and emulated.resolved.startswith("float32 (no native bfloat16")
    faithful = validate(compose_config("+experiment=baseline")).trainer
    assert (faithful.precision, faithful.batch_size) == (Precision.float32, 32) and faithful.resolved == ""

"""What `trainer.precision=auto` (the fast setting, `trainer=fast`) means on this machine.

bfloat16 is fast only where the hardware computes it: a GPU, or a CPU with the
`avx512_bf16` or `amx_bf16` flag. Elsewhere oneDNN emulates it and the "fast"
setting was the slow one (study_speedup 0.46-0.53 on a Zen 3), so there it
resolves to the faithful float32 setting. Read from /proc, before TensorFlow starts.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import platform
import re
from pathlib import Path
from typing import Optional

from src.config.schema import LrScaling, Precision, TrainerConfig

log = logging.getLogger(__name__)

BF16_FLAGS = re.compile(r"\b(avx512_bf16|amx_bf16)\b")


def gpu_visible() -> bool:
    """An NVIDIA GPU this process may use, without importing TensorFlow."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir())


def native_bfloat16(cpuinfo: Optional[str] = None, gpu: Optional[bool] = None) -> Optional[str]:
    """The reason bfloat16 is native here ("GPU", "avx512_bf16", "amx_bf16"), or None."""
    if gpu if gpu is not None else gpu_visible():
        return "GPU"
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
    found = BF16_FLAGS.search(cpuinfo)
    return found.group(1) if found else None


# The flags that decide this project's speed: float32 convolutions (avx2, fma, avx512f) and
# whether bfloat16 is native. Every run carries them (tag `cpu`), so a figure names its CPU.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=None)
def _proc_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def describe(cpuinfo: Optional[str] = None) -> str:
    """This machine in one line, e.g. "AMD EPYC, family 25 model 1, 2 CPUs, avx2 fma; no avx512f
    avx512_bf16 amx_bf16" (lscpu's model name, family and model, the CPUs this process may use),
    and ", GPU" where one is visible."""
    first = (_proc_cpuinfo() if cpuinfo is None else cpuinfo).split("\n\n", 1)[0]
    fields = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set((fields.get("flags") or fields.get("Features") or "").split())  # Features: ARM's name
    has = [flag for flag in SPEED_FLAGS if flag in flags]
    lacks = [flag for flag in SPEED_FLAGS if flag not in flags]
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [fields.get("model name") or f"unknown CPU ({platform.machine() or '?'})"]
    if "cpu family" in fields:
        parts.append(f"family {fields['cpu family']} model {fields.get('model', '?')}")
    parts.append(f"{cpus} CPUs")
    if flags:
        parts.append(" ".join(has) + ("; no " + " ".join(lacks) if lacks else ""))
    return ", ".join(parts) + (", GPU" if gpu_visible() else "")


def resolve_precision(trainer: TrainerConfig, native: Optional[str]) -> TrainerConfig:
    """precision=auto made concrete: the fast setting as configured where bfloat16 is
    native, else float32 at the faithful batch (lr_reference_batch) and learning rate."""
    if Precision(trainer.precision) is not Precision.auto:
        return trainer
    if native:
        return dataclasses.replace(trainer, precision=Precision.mixed_bfloat16,
                                   resolved=f"mixed_bfloat16 (native: {native})")
    return dataclasses.replace(trainer, precision=Precision.float32, batch_size=trainer.lr_reference_batch,
                               lr_scaling=LrScaling.none,
                               resolved="float32 (no native bfloat16: no GPU, no avx512_bf16/amx_bf16 flag)")


def resolve(trainer: TrainerConfig, native: Optional[str] = None, probe: bool = True) -> TrainerConfig:
    if Precision(trainer.precision) is not Precision.auto:
        return trainer
    resolved = resolve_precision(trainer, native_bfloat16() if probe and native is None else native)
    log.info("trainer=fast on this machine: %s, batch %d, lr_scaling %s", resolved.resolved,
             resolved.batch_size, LrScaling(resolved.lr_scaling).value)
    return resolved

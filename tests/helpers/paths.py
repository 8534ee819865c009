"""Where the project, its configs and the real data are, for the tests."""
from __future__ import annotations

from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = PROJECT_ROOT / "conf"
SHARED_CIFAR = (PROJECT_ROOT.parent / "shared" / "data" / "cifar-10-batches-py").resolve()


def requires_shared_data():
    return pytest.mark.skipif(not (SHARED_CIFAR / "data_batch_1").is_file(),
                              reason=f"real CIFAR-10 not found at {SHARED_CIFAR}")

"""Where TensorFlow's native start-up lines go: a log file, not the console."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


@contextlib.contextmanager
def native_stderr_to(path: Path):
    """Send what C++ code writes to stderr into `path` meanwhile. TensorFlow's
    start-up lines (the CUDA probe, oneDNN notices) are written by absl before
    TF_CPP_MIN_LOG_LEVEL applies, so only the file descriptor can catch them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with path.open("ab") as sink:
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)

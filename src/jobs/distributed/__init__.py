"""A study's distributed wing: keras-tuner's chief (the oracle) and its workers, as local
processes, Ray tasks or `tuner.role=worker` commands on other machines. The study calls one
entry, `search`; the rest is how the processes are started, watched and replaced."""
from __future__ import annotations


def search(*args, **kwargs):
    """The search on the study's workers (src/jobs/distributed/workers.py); returns the chief's tuner."""
    from src.jobs.distributed import workers  # deferred: keras-tuner, TensorFlow; importing roles runs this file

    return workers.search(*args, **kwargs)

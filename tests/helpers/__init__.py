"""What the tests share, a module per use. pytest puts tests/ on sys.path as it loads
tests/conftest.py (its default `prepend` import mode; tests/ has no __init__.py), in each of
pytest-xdist's workers too, so a test imports from the module: `from helpers.commands import run_here`.

- paths: where the project, its configs and the real data are (PROJECT_ROOT, CONF_DIR, SHARED_CIFAR)
- cifar: synthetic data, a tiny CIFAR-10 on disk and random images in memory
- commands: running `src.run` as a user does, in a process of its own or in this one
- configs: the typed config `src.run` composes from overrides
- stores: a test's MLflow store, made from a template, filled and read back
- session: costly session fixtures made once for all xdist workers
- sweeps: tiny sweeps and studies, a sweep's runs, Ray's processes
- markdown: the README and docs/ as the documentation tests read them

The processes the tests spawn import their own modules beside this package
(tests/store_race.py, tests/tracking_server.py, tests/mlflow_ui.py), not it.

The flat names below are the old `tests/helpers.py`'s that test files still import from
`helpers` itself (tests/jobs/, tests/analysis/, tests/test_architecture.py and the config tests
of the search space and tuner kinds, all being reworked apart from this split); they can go
once those import from the modules.
"""
from helpers.cifar import make_synthetic_cifar
from helpers.commands import call_here, run_cli, run_here, start_cli
from helpers.configs import composed, study_config
from helpers.paths import PROJECT_ROOT
from helpers.session import once_per_session
from helpers.stores import all_runs, logged_run
from helpers.sweeps import RAY_MISSING, TINY, TINY_STUDY, processes_using, ray_multirun, stop, sweep_runs

__all__ = ["PROJECT_ROOT", "RAY_MISSING", "TINY", "TINY_STUDY", "all_runs", "call_here", "composed", "logged_run",
           "make_synthetic_cifar", "once_per_session", "processes_using", "ray_multirun", "run_cli", "run_here",
           "start_cli", "stop", "study_config", "sweep_runs"]

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
"""

"""The upstream behaviours the project works around, one test each. Each test
FAILS once upstream changes: then the workaround named in its docstring can go."""
from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest

from src.tracking import logged, store


def tiny_model():
    import keras

    return keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])


def test_keras_save_model_writes_the_input_example_before_the_directory(tmp_path):
    """mlflow#16183. Workaround: `_save_keras_model` in src/tracking/logged.py (creates the
    directory first), passed as the flavor of `log_keras_model`."""
    model, example = tiny_model(), np.zeros((2, 4), np.float32)
    kwargs = dict(model=model, input_example=example, pip_requirements=["keras"])  # no inference subprocess
    with pytest.raises(FileNotFoundError, match="input_example.json"):
        mlflow.keras.save_model(path=str(tmp_path / "upstream"), **kwargs)
    logged._save_keras_model(str(tmp_path / "project"), **kwargs)
    assert (tmp_path / "project" / "MLmodel").is_file()
    assert (tmp_path / "project" / "input_example.json").is_file()


def test_log_table_appends_to_an_existing_file(tracking_uri):
    """mlflow.log_table appends to an artifact of the same name (documented in 3.17), so a
    resumed study would log its leaderboard twice over. Workaround: `replace_table` in
    src/tracking/logged.py."""
    experiment = store.ensure_experiment(tracking_uri, "tables")
    table = pd.DataFrame({"trial": ["00", "01"], "accuracy": [0.5, 0.6]})
    with mlflow.start_run(experiment_id=experiment) as run:
        for _ in range(2):
            mlflow.log_table(table, "upstream.json")
            logged.replace_table(table, "project.json")
    assert len(mlflow.load_table("upstream.json", run_ids=[run.info.run_id])) == 4
    assert len(mlflow.load_table("project.json", run_ids=[run.info.run_id])) == 2


def test_keras_tuner_reloads_only_its_own_tuner_ids_state(tmp_path, monkeypatch):
    """keras-tuner 1.4.8 reloads a project (BaseTuner.__init__) only if `<tuner id>.json`
    exists, the tuner id coming from KERASTUNER_TUNER_ID (default `tuner0`); the oracle's
    own `oracle.json` and the trials are ignored otherwise. State written by the chief of a
    parallel study is thus not resumed by a single process. Workaround: the explicit
    `oracle.reload()` in `make_tuner`, src/jobs/tuner.py."""
    import keras
    import keras_tuner

    def build(hp):
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(hp.Choice("units", [2, 4])),
                                  keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        return model

    def tuner():
        return keras_tuner.RandomSearch(build, objective="loss", max_trials=1, seed=0, overwrite=False,
                                        directory=str(tmp_path), project_name="study")

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 4)), rng.normal(size=(8, 1))
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    tuner().search(x, y, epochs=1, verbose=0)
    assert (tmp_path / "study" / "oracle.json").is_file() and (tmp_path / "study" / "chief.json").is_file()

    monkeypatch.delenv("KERASTUNER_TUNER_ID")
    resumed = tuner()
    assert not resumed.oracle.trials  # the upstream behaviour
    resumed.oracle.reload()  # what make_tuner does
    assert len(resumed.oracle.trials) == 1


def test_loading_weights_skips_an_unbuilt_optimizers_saved_state(tmp_path):
    """A Keras weights file (keras-tuner's best-epoch checkpoint) holds the optimizer's
    variables, but `load_weights` into a model whose optimizer is not built yet (keras-tuner's
    Hyperband restore) skips them: Adam would start again at step 0. Workaround: a Hyperband
    round's model builds its optimizer first (`CifarHyperModel.build`, src/jobs/tuner.py),
    and then takes Adam's moments and step from the checkpoint."""
    import warnings

    import keras

    def compiled():
        model = tiny_model()
        model.compile(optimizer=keras.optimizers.Adam(), loss="mse")
        return model

    rng = np.random.default_rng(0)
    trained = compiled()
    trained.fit(rng.normal(size=(8, 4)), rng.normal(size=(8, 2)), batch_size=4, epochs=2, verbose=0)
    trained.save_weights(tmp_path / "best.weights.h5")
    saved = [v.numpy() for v in trained.optimizer.variables]

    upstream = compiled()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        upstream.load_weights(tmp_path / "best.weights.h5")
    assert any("Skipping variable loading for optimizer" in str(w.message) for w in caught)
    assert int(upstream.optimizer.iterations.numpy()) == 0  # the upstream behaviour

    project = compiled()
    project.optimizer.build(project.trainable_variables)  # what CifarHyperModel.build does
    project.load_weights(tmp_path / "best.weights.h5")
    assert int(project.optimizer.iterations.numpy()) == 4
    for restored, original in zip(project.optimizer.variables, saved):
        np.testing.assert_array_equal(restored.numpy(), original)


def test_confusion_matrix_text_colour_follows_the_data_not_a_fixed_colour_scale():
    """scikit-learn#16048: ConfusionMatrixDisplay picks each number's colour from the midpoint
    of the data, also when `im_kw` fixes the colour scale, so a weak model's row-normalised
    matrix (values up to 0.3 on a 0-1 scale) gets white numbers on pale cells. Workaround:
    `plot_confusion_matrix` in src/core/evaluate.py recolours them by the scale drawn."""
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay

    from src.core import evaluate

    weak = np.array([[0.3, 0.1], [0.05, 0.2]])  # all pale on the 0-1 scale; 0.3 is above the data's midpoint
    upstream = ConfusionMatrixDisplay(weak).plot(ax=Figure().add_subplot(), cmap="Blues",
                                                 im_kw={"vmin": 0, "vmax": 1}, colorbar=False)
    assert to_rgba(upstream.text_[0, 0].get_color()) == to_rgba(upstream.im_.cmap(0))  # pale text, pale cell

    def colours(matrix):
        figure = evaluate.plot_confusion_matrix(matrix, ["a", "b"], normalized=True)
        return {text.get_text(): to_rgba(text.get_color()) for text in figure.axes[0].texts}

    white = to_rgba("white")
    assert white not in colours(weak).values()
    strong = colours(np.array([[0.9, 0.1], [0.2, 0.8]]))
    assert strong["0.90"] == strong["0.80"] == white and white not in (strong["0.10"], strong["0.20"])


def test_keras_tuners_chief_checks_for_its_last_workers_every_20_seconds():
    """keras-tuner's chief, once the search is over, sleeps 20 s between its checks that
    every worker is gone (oracle_chief.start_server; PR #983 would make it longer).
    Workaround: `_PromptChiefPoll` in src/jobs/distributed/worker_process.py, its module's `time`."""
    import inspect
    import time

    from keras_tuner.src.distribute import oracle_chief

    assert oracle_chief.time is time  # the name the workaround rebinds in a chief process
    source = inspect.getsource(oracle_chief.start_server)
    assert "time.sleep(20)" in source and "exit_chief(oracle)" in source
    # Nothing but sleep is asked of that module, so the stand-in needs nothing else.
    assert [line.strip() for line in inspect.getsource(oracle_chief).splitlines() if "time." in line] == [
        "time.sleep(1)", "time.sleep(20)  # pragma: no cover"]

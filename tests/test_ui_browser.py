"""The MLflow UI, in a real browser: a tiny real run shows up in its
experiment's run list with its test accuracy, and its confusion matrix is
served and rendered on the run's Artifacts tab.

Drives Debian's chromium (`apt-get install chromium`, as .ci/run does) through
Playwright; browsers downloaded by `playwright install` are never used.
"""
from __future__ import annotations

import pytest

from src.tracking import store

from helpers.commands import run_here
from mlflow_ui import CHROMIUM, close_assistant, ui_and_browser

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURE = "figures/test_confusion_matrix.png"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(),
                       reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"),
]


def show_metric_column(page, metric: str) -> None:
    """The run list shows no metrics by default: tick the metric under Columns."""
    page.get_by_role("button", name="Columns").click()
    page.get_by_placeholder("Search columns").fill(metric)
    page.get_by_text(metric, exact=True).click()
    page.keyboard.press("Escape")


def test_run_list_metric_and_confusion_matrix_in_the_browser(synthetic_cifar, tracking_uri, tmp_path):
    result = run_here("+experiment=baseline", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
                      "tracking.experiment=ui_test", "trainer.epochs=1", "trainer.verbose=0",
                      "model.filters=[8,16]", "model.dense_units=[16]")
    assert result.returncode == 0, result.stderr[-3000:]
    client = store.client(tracking_uri)
    experiment = client.get_experiment_by_name("ui_test")
    (run,) = client.search_runs([experiment.experiment_id])
    run_id, run_name = run.info.run_id, run.info.run_name
    accuracy = run.data.metrics["test_accuracy"]

    with ui_and_browser(tracking_uri, tmp_path / "mlflow_ui.log") as (base, browser):
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.set_default_timeout(30_000)

        # The experiment's run list: the run, and its test accuracy once the column is shown.
        page.goto(f"{base}/#/experiments/{experiment.experiment_id}/runs")
        page.get_by_role("link", name=run_name).first.wait_for()
        close_assistant(page)
        show_metric_column(page, "test_accuracy")
        cell = page.locator('[id^="cell-metrics.`test_accuracy`"]').first
        cell.scroll_into_view_if_needed()
        assert float(cell.inner_text()) == pytest.approx(accuracy, abs=1e-6)
        runs_png = tmp_path / "mlflow_ui_runs.png"
        page.screenshot(path=str(runs_png))

        # The run's Artifacts tab: the confusion matrix is fetched as a PNG and rendered.
        page.get_by_role("link", name=run_name).first.click()
        page.get_by_text("Finished", exact=True).first.wait_for()
        page.get_by_role("tab", name="Artifacts").click()
        page.get_by_text("figures", exact=True).first.click()
        with page.expect_response(lambda r: "get-artifact" in r.url and run_id in r.url) as served:
            page.get_by_text("test_confusion_matrix.png", exact=True).first.click()
        # (the page reads the body as a blob; its bytes are checked below, fetched directly)
        assert served.value.status == 200
        assert served.value.headers.get("content-type", "").startswith("image/png")
        image = page.locator("img[src^='blob:']").first
        image.wait_for()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        artifact_png = tmp_path / "mlflow_ui_confusion_matrix.png"
        page.screenshot(path=str(artifact_png))

        # The same file straight from the server's artifact endpoint.
        direct = page.request.get(f"{base}/get-artifact", params={"path": FIGURE, "run_uuid": run_id})
        assert direct.ok and direct.body().startswith(PNG_MAGIC)
    print(f"\nscreenshots: {runs_png}\n             {artifact_png}")

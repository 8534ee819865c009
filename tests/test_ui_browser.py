"""The MLflow UI, in a real browser: a tiny real run shows up in its
experiment's run list with its test accuracy, and its confusion matrix is
served and rendered on the run's Artifacts tab.

Drives Debian's chromium (`apt-get install chromium`, as .ci/run does) through
Playwright; browsers downloaded by `playwright install` are never used.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from src.tracking import store
from src.tracking.store import artifact_root

from helpers import PROJECT_ROOT, run_here

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURE = "figures/test_confusion_matrix.png"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(),
                       reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_ui(uri: str, port: int, log_path: Path) -> subprocess.Popen:
    """`mlflow ui` in its own process group, so that it and its workers stop together."""
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    command = [str(mlflow_cli), "ui", "--backend-store-uri", uri, "--default-artifact-root", artifact_root(uri),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    with log_path.open("w") as log:
        return subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_healthy(base: str, server: subprocess.Popen, log_path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow ui exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow ui not healthy after {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=15)


def show_metric_column(page, metric: str) -> None:
    """The run list shows no metrics by default: tick the metric under Columns."""
    page.get_by_role("button", name="Columns").click()
    page.get_by_placeholder("Search columns").fill(metric)
    page.get_by_text(metric, exact=True).click()
    page.keyboard.press("Escape")


def close_assistant(page) -> None:
    """The MLflow Assistant side panel covers part of the page (cosmetic, for the screenshots)."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count():
        close.first.click()


def test_run_list_metric_and_confusion_matrix_in_the_browser(synthetic_cifar, tracking_uri, tmp_path):
    from playwright.sync_api import sync_playwright

    result = run_here("+experiment=baseline", f"data.dir={synthetic_cifar}", f"tracking.uri={tracking_uri}",
                      "tracking.experiment=ui_test", "trainer.epochs=1", "trainer.verbose=0",
                      "model.filters=[8,16]", "model.dense_units=[16]")
    assert result.returncode == 0, result.stderr[-3000:]
    client = store.client(tracking_uri)
    experiment = client.get_experiment_by_name("ui_test")
    (run,) = client.search_runs([experiment.experiment_id])
    run_id, run_name = run.info.run_id, run.info.run_name
    accuracy = run.data.metrics["test_accuracy"]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "mlflow_ui.log"
    server = start_ui(tracking_uri, port, log_path)
    try:
        wait_healthy(base, server, log_path)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
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
            finally:
                browser.close()
        print(f"\nscreenshots: {runs_png}\n             {artifact_png}")
    finally:
        stop(server)

"""The browser test's machinery, shared: `mlflow ui` on a store in its own process group,
Debian's chromium through Playwright (browsers downloaded by `playwright install` are never
used), and a screenshot of one run's page, with its description, for experiments/:

    python tests/mlflow_ui.py --tracking-uri sqlite:///<store> --run-id <id> --out <file.png>
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from src.config.paths import PROJECT_ROOT  # noqa: E402
from src.tracking.store import artifact_root  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


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
            raise RuntimeError(f"mlflow ui exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"mlflow ui not healthy after {timeout:.0f} s:\n{log_path.read_text()[-3000:]}")


def stop(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=15)


@contextmanager
def ui_and_browser(uri: str, log_path: Path) -> Iterator[tuple]:
    """(base URL, a chromium browser) on a fresh `mlflow ui` of the store at `uri`; both stop after."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_ui(uri, port, log_path)
    try:
        wait_healthy(base, server, log_path)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
            try:
                yield base, browser
            finally:
                browser.close()
    finally:
        stop(server)


def close_assistant(page) -> None:
    """The MLflow Assistant side panel covers part of the page (cosmetic, for the screenshots)."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count():
        close.first.click()


def screenshot_run(uri: str, run_id: str, out: Path, height: int = 1400) -> Path:
    """The run's page in the MLflow UI (its Overview: description, parameters, metrics, tags)."""
    from src.tracking import store

    run = store.client(uri).get_run(run_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    with ui_and_browser(uri, out.with_suffix(".ui.log")) as (base, browser):
        page = browser.new_page(viewport={"width": 1600, "height": height})
        page.set_default_timeout(30_000)
        page.goto(f"{base}/#/experiments/{run.info.experiment_id}/runs/{run_id}")
        page.get_by_text(run.info.run_name, exact=True).first.wait_for()
        close_assistant(page)
        page.get_by_text("Description", exact=True).first.wait_for()
        page.wait_for_timeout(2000)  # the UI keeps polling (never network-idle): let the page settle
        page.screenshot(path=str(out), full_page=True)
    out.with_suffix(".ui.log").unlink(missing_ok=True)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python tests/mlflow_ui.py", description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if not CHROMIUM.is_file():
        sys.exit(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    print(screenshot_run(args.tracking_uri, args.run_id, args.out))


if __name__ == "__main__":
    main()

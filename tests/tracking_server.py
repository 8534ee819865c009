"""A team's tracking server for the tests, on 127.0.0.1: PostgreSQL (its own
data directory and a free port) behind `mlflow server` with MLflow's basic
authentication and host protection, artifacts proxied into a temporary folder.

`start()` gives a running `TrackingServer`; its `stop()` ends both servers and
removes every file they wrote. PostgreSQL refuses to run as root, so when the
tests run as root it runs as the `postgres` system user (Debian's package
creates it). Clients get the credentials of an ordinary (not admin) user only
through MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (`TrackingServer.env`).
"""
from __future__ import annotations

import base64
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import psutil

START_TIMEOUT_S = 120.0  # both servers, on a loaded 2-core machine
DB_USER = "mlflow"
USERNAME = "tester"  # an ordinary user, as each team member would be


class Unavailable(Exception):
    """This machine cannot run the server (the reason is the message)."""


def postgres_binary(name: str) -> Optional[str]:
    """`name` on PATH, else in Debian's /usr/lib/postgresql/<version>/bin (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    versions = glob.glob(f"/usr/lib/postgresql/*/bin/{name}")
    versions.sort(key=lambda path: int(path.split("/")[4]) if path.split("/")[4].isdigit() else 0, reverse=True)
    return versions[0] if versions else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _unprivileged_user() -> Optional[pwd.struct_passwd]:
    """Who runs PostgreSQL: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable("running as root, and PostgreSQL refuses root: no `postgres` user to run it as "
                          "(apt-get install postgresql creates one)") from None


def _as(user: Optional[pwd.struct_passwd]) -> dict:
    """subprocess arguments that drop root for `user` (no supplementary groups)."""
    return {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _group(pgid: int) -> List[psutil.Process]:
    """The live (not zombie) processes of a process group."""
    found = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (OSError, psutil.Error):
            pass
    return found


def _stop_group(process: Optional[subprocess.Popen], sig: int, timeout: float = 30.0) -> None:
    """`sig` to the process group the process leads (it and every child it started),
    SIGKILL to whatever is left of the group after `timeout`; raises if anything survives."""
    if process is None:
        return
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    _, alive = psutil.wait_procs(_group(process.pid), timeout=timeout)
    for straggler in alive:
        straggler.kill()
    _, alive = psutil.wait_procs(alive, timeout=10)
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    if alive:
        raise RuntimeError(f"left running: {[' '.join(p.cmdline()[:3]) for p in alive]}")


@dataclass
class TrackingServer:
    uri: str
    username: str
    password: str
    root: Path  # every file of both servers lives under it
    artifacts: Path
    postgres: Optional[subprocess.Popen] = None
    mlflow: Optional[subprocess.Popen] = None
    db: Dict[str, object] = field(default_factory=dict)  # PostgreSQL's port and password

    @property
    def env(self) -> Dict[str, str]:
        """What a client adds to its environment: MLflow's standard credential variables."""
        return {"MLFLOW_TRACKING_USERNAME": self.username, "MLFLOW_TRACKING_PASSWORD": self.password}

    def processes(self) -> List[subprocess.Popen]:
        return [p for p in (self.mlflow, self.postgres) if p is not None]

    def stop(self) -> None:
        """Both servers and every process they started, then every file they wrote."""
        try:
            # mlflow server runs uvicorn and its workers in its process group; SIGTERM ends them.
            _stop_group(self.mlflow, signal.SIGTERM)
        finally:
            try:
                # SIGINT is PostgreSQL's "fast" shutdown: it ends every session and stops cleanly.
                _stop_group(self.postgres, signal.SIGINT)
            finally:
                shutil.rmtree(self.root, ignore_errors=True)


def start() -> TrackingServer:
    """PostgreSQL, then `mlflow server` on it; raises Unavailable when this machine lacks either."""
    binaries = {name: postgres_binary(name) for name in ("initdb", "postgres")}
    if not all(binaries.values()):
        raise Unavailable("PostgreSQL not found (initdb and postgres on PATH or in /usr/lib/postgresql/*/bin): "
                          "apt-get install postgresql, as .ci/run does")
    for module, extra in (("psycopg2", "psycopg2-binary"), ("flask_wtf", "mlflow[auth]")):
        try:
            __import__(module)
        except ImportError:
            raise Unavailable(f"{extra} is not installed: pip install -e '.[server]'") from None
    user = _unprivileged_user()
    # Under the system temp dir, not pytest's: the postgres user must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="mlflow-server-"))
    server = TrackingServer(uri="", username=USERNAME, password=secrets.token_urlsafe(16), root=root,
                            artifacts=root / "artifacts")
    try:
        _start_postgres(server, binaries, user)
        _start_mlflow(server)
    except BaseException:
        server.stop()
        raise
    return server


def _start_postgres(server: TrackingServer, binaries: dict, user) -> None:
    root = server.root
    db_password = secrets.token_urlsafe(16)
    (root / "db_password").write_text(db_password + "\n")
    if user is not None:
        os.chown(root, user.pw_uid, user.pw_gid)
        os.chown(root / "db_password", user.pw_uid, user.pw_gid)
    os.chmod(root / "db_password", 0o600)
    subprocess.run([binaries["initdb"], "-D", str(root / "pgdata"), "-U", DB_USER, "--pwfile", str(root / "db_password"),
                    "--auth", "scram-sha-256", "-E", "UTF8", "--locale", "C", "--no-sync"],
                   cwd=root, check=True, capture_output=True, text=True, **_as(user))
    (root / "db_password").unlink()
    port = free_port()
    log = (root / "postgres.log").open("w")
    # TCP on 127.0.0.1 only, no Unix socket; durability off: the database is thrown away.
    server.postgres = subprocess.Popen(
        [binaries["postgres"], "-D", str(root / "pgdata"), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
         "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off"],
        cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **_as(user))
    log.close()
    import psycopg2

    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            connection = psycopg2.connect(host="127.0.0.1", port=port, user=DB_USER, password=db_password,
                                          dbname="postgres", connect_timeout=5)
            break
        except psycopg2.OperationalError:
            if server.postgres.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start:\n{_log_tail(root / 'postgres.log')}") from None
            time.sleep(0.2)
    connection.autocommit = True  # CREATE DATABASE runs outside a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE DATABASE mlflow")       # runs, metrics, the model registry
            cursor.execute("CREATE DATABASE mlflow_auth")  # basic-auth's users and permissions
    finally:
        connection.close()
    server.db = {"port": port, "password": db_password}


def _start_mlflow(server: TrackingServer) -> None:
    root, db = server.root, server.db
    port = free_port()
    server.uri = f"http://127.0.0.1:{port}"
    # The driver named: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, 2.0 to psycopg2.
    database = f"postgresql+psycopg2://{DB_USER}@127.0.0.1:{db['port']}"
    admin_password = secrets.token_urlsafe(16)
    (root / "basic_auth.ini").write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {database}/mlflow_auth\n"
        "admin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 300\n")
    server.artifacts.mkdir()
    # Secrets through the environment, never on the command line: PGPASSWORD is read by
    # libpq (psycopg2) for both databases, the admin's password by MLflow's auth app, which
    # also needs a key of its own for its forms' CSRF tokens (the same in every worker).
    env = {**os.environ, "PGPASSWORD": db["password"], "MLFLOW_AUTH_CONFIG_PATH": str(root / "basic_auth.ini"),
           "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password, "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
           # MLflow 3.17's server also starts 7 huey job consumers (for GenAI jobs this project
           # never submits), each importing MLflow: ~30 s of CPU taken from the tests' 2 cores.
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(name, None)
    log = (root / "mlflow.log").open("w")
    server.mlflow = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"{database}/mlflow", "--artifacts-destination", str(server.artifacts),
         "--app-name", "basic-auth", "--allowed-hosts", f"127.0.0.1:{port}", "--workers", "2"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with urllib.request.urlopen(f"{server.uri}/health", timeout=5) as response:
                response.read()
            break
        except (urllib.error.URLError, OSError):
            if server.mlflow.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start:\n{_log_tail(root / 'mlflow.log')}") from None
            time.sleep(0.3)
    # The admin adds an ordinary user, as for each member of a team.
    request = urllib.request.Request(
        f"{server.uri}/api/2.0/mlflow/users/create", method="POST",
        data=json.dumps({"username": server.username, "password": server.password}).encode(),
        headers={"Content-Type": "application/json",
                 "Authorization": "Basic " + base64.b64encode(f"admin:{admin_password}".encode()).decode()})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()

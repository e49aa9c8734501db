"""A live `creneau serve` for the tests that need real processes and real sockets."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest


@contextmanager
def live_server(data_dir: Path, *options: str) -> Iterator[str]:
    """`creneau serve` on a free port with `options`; yields its base URL (without /fhir) once
    every worker process has started. The server's log is kept in `data_dir` and shown when the
    server fails to start."""
    with serving(data_dir, *options) as (base, _):
        yield base


@contextmanager
def serving(data_dir: Path, *options: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`live_server`, with the server's process too."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    creneau = str(Path(sys.executable).parent / "creneau")
    if "--workers" not in options:  # one process unless a test asks for more (one per core)
        options = (*options, "--workers", "1")
    log_path = data_dir / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [creneau, "serve", *options, "--data-dir", str(data_dir), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    workers = int(options[options.index("--workers") + 1])
    try:
        _wait_until_started(server, base, log_path, workers)
        yield base, server
    finally:
        if server.poll() is not None:  # it died under the test: pytest shows this on failure
            print(log_path.read_text(errors="replace"))
        server.terminate()
        server.wait(timeout=20)


def _wait_until_started(
    server: subprocess.Popen[bytes], base: str, log_path: Path, workers: int
) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        started = log_path.read_text(errors="replace").count("Application startup complete")
        if started >= workers and _answers(base):
            return
        time.sleep(0.2)
    pytest.fail(f"the server did not start:\n{log_path.read_text(errors='replace')}")


def _answers(base: str) -> bool:
    try:
        return httpx.get(f"{base}/fhir/metadata").status_code == 200
    except httpx.HTTPError:
        return False


def admin_token(data_dir: Path, base: str) -> str:
    """An admin client registered with `creneau clients create` and a token from `creneau token`,
    on the store of the live server at `base`, as an operator would get them."""
    _, token = registered_client(data_dir, base.rsplit(":", 1)[1], "operator", "--admin")
    return token


def registered_client(
    data_dir: Path, port: str, name: str, *options: str, env: dict[str, str] | None = None
) -> tuple[str, str]:
    """(client_id, access token) of a client made with `creneau clients create NAME OPTIONS`,
    its token from `creneau token`, for the server on `port` (its issuer and audience)."""
    creneau = str(Path(sys.executable).parent / "creneau")
    env = {**(env or os.environ), "CRENEAU_PORT": port}
    store = ["--data-dir", str(data_dir)]

    def run(*arguments: str) -> str:
        done = subprocess.run(
            [creneau, *arguments, *store], capture_output=True, text=True, check=True, env=env
        )
        return done.stdout

    client_id: str = json.loads(run("clients", "create", "--name", name, *options))["client_id"]
    return client_id, run("token", "--client", client_id).strip()

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
    """`creneau serve` on a free port with `options`; yields its base URL (without /fhir)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    creneau = str(Path(sys.executable).parent / "creneau")
    server = subprocess.Popen(
        [creneau, "serve", *options, "--data-dir", str(data_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/fhir/metadata").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        server.kill()
        pytest.fail("the server did not start")
    try:
        yield base
    finally:
        server.terminate()
        server.wait(timeout=20)


def admin_token(data_dir: Path, base: str) -> str:
    """An admin client registered with `creneau clients create` and a token from `creneau token`,
    on the store of the live server at `base`, as an operator would get them."""
    creneau = str(Path(sys.executable).parent / "creneau")
    env = {**os.environ, "CRENEAU_PORT": base.rsplit(":", 1)[1]}
    store = ["--data-dir", str(data_dir)]
    made = subprocess.run(
        [creneau, "clients", "create", "--name", "operator", "--admin", *store],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    client_id = json.loads(made.stdout)["client_id"]
    token = subprocess.run(
        [creneau, "token", "--client", client_id, *store],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return token.stdout.strip()

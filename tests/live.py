"""A live `creneau serve` for the tests that need real processes and real sockets."""

from __future__ import annotations

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

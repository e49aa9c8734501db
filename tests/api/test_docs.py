"""The `sh` examples of docs/*.md, run against a live server with the demo fixtures, so that
the documentation cannot drift from what the server does."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"```sh\n(.*?)```", re.DOTALL)
EXAMPLES = [
    (page.name, n, block)
    for page in sorted(DOCS.glob("*.md"))
    for n, block in enumerate(BLOCK.findall(page.read_text()))
]


@pytest.fixture(scope="module")
def live_fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = tmp_path_factory.mktemp("docs")
    creneau = str(Path(sys.executable).parent / "creneau")
    server = subprocess.Popen(
        [creneau, "serve", "--fixtures", "--data-dir", str(data), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/fhir"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/metadata").status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        server.kill()
        pytest.fail("the server did not start")
    yield base
    server.terminate()
    server.wait(timeout=20)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the examples use curl")
@pytest.mark.parametrize(
    ("page", "number", "block"), EXAMPLES, ids=[f"{page}-{n}" for page, n, _ in EXAMPLES]
)
def test_example_runs(live_fhir: str, page: str, number: int, block: str) -> None:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        capture_output=True,
        text=True,
        env={**os.environ, "FHIR": live_fhir},
        timeout=60,
    )
    assert result.returncode == 0, f"{page} example {number} failed:\n{block}\n{result.stderr}"

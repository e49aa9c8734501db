"""The `sh` examples of docs/*.md, run against a live server with the demo fixtures, so that
the documentation cannot drift from what the server does."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live import live_server

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"```sh\n(.*?)```", re.DOTALL)
EXAMPLES = [
    (page.name, n, block)
    for page in sorted(DOCS.glob("*.md"))
    for n, block in enumerate(BLOCK.findall(page.read_text()))
]


AUTH_ON = ("security.md",)  # pages whose examples need auth on; the others run in the sandbox


@pytest.fixture(scope="module")
def live_fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    with live_server(tmp_path_factory.mktemp("docs"), "--fixtures", "--sandbox") as base:
        yield {"FHIR": f"{base}/fhir"}


@pytest.fixture(scope="module")
def live_fhir_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Auth on; the examples run `creneau clients create` on the server's own store."""
    data_dir = tmp_path_factory.mktemp("docs-auth")
    with live_server(data_dir, "--fixtures") as base:
        yield {
            "FHIR": f"{base}/fhir",
            "CRENEAU_DATA_DIR": str(data_dir),
            "CRENEAU_PORT": base.rsplit(":", 1)[1],
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }


@pytest.mark.skipif(shutil.which("curl") is None, reason="the examples use curl")
@pytest.mark.parametrize(
    ("page", "number", "block"), EXAMPLES, ids=[f"{page}-{n}" for page, n, _ in EXAMPLES]
)
def test_example_runs(request: pytest.FixtureRequest, page: str, number: int, block: str) -> None:
    server = "live_fhir_with_auth" if page in AUTH_ON else "live_fhir"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        capture_output=True,
        text=True,
        env={**os.environ, **request.getfixturevalue(server)},
        timeout=60,
    )
    assert result.returncode == 0, f"{page} example {number} failed:\n{block}\n{result.stderr}"

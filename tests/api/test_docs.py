"""The `sh` examples of docs/*.md, run against a live server with the demo fixtures, so that
the documentation cannot drift from what the server does."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
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


@pytest.fixture(scope="module")
def live_fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with live_server(tmp_path_factory.mktemp("docs"), "--fixtures", "--sandbox") as base:
        yield f"{base}/fhir"


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

"""Fuzzing: schemathesis sends what `/openapi.json` allows (and what it does not) to every
operation of a live sandbox server; no answer may be a 5xx, each answer's status, media type
and body must be the ones the document gives for that operation, and every refusal is an
OperationOutcome. The examples per operation are few here, so the suite stays fast;
`CRENEAU_FUZZ_EXAMPLES=500` runs many more."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from server.app import create_app
from server.config import Settings
from tests.live import live_server

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = int(os.environ.get("CRENEAU_FUZZ_EXAMPLES", "12"))
# The document the live server publishes at /openapi.json, built the same way without a server.
schema = schemathesis.openapi.from_dict(create_app(Settings(sandbox=True)).openapi())


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    with live_server(data_dir, "--sandbox", "--fixtures") as base:
        yield base


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_is_a_server_error(case: schemathesis.Case, fuzzed_server: str) -> None:
    """And every refusal of the FHIR API is an OperationOutcome (the token endpoint's are
    RFC 6749 errors)."""
    response = case.call_and_validate(base_url=fuzzed_server, checks=CHECKS)
    if response.status_code >= 400 and case.operation.path.startswith("/fhir"):
        assert response.json()["resourceType"] == "OperationOutcome", response.text

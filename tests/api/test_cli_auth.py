"""`creneau clients ...` and `creneau token` on the configured store, as an operator runs them
whether or not the server runs; what they make works at the token endpoint and on requests."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from server.cli import main
from server.config import Settings
from tests.api.auth_setup import EC_KEY, assertion, assertion_form, public_jwks, serve
from tests.conftest import TimeTravel


def store_options(settings: Settings) -> list[str]:
    if settings.mongodb_uri:
        return ["--mongodb-uri", settings.mongodb_uri]
    return ["--data-dir", str(settings.data_dir)]


def run(capsys: pytest.CaptureFixture[str], settings: Settings, *argv: str) -> Any:
    main([*argv, *store_options(settings)])
    out = capsys.readouterr().out
    return json.loads(out) if out.lstrip().startswith(("{", "[")) else out.strip()


@pytest.fixture
def settings_for_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("CRENEAU_BASE_URL", "https://test/fhir")  # what the served app uses
    return settings


async def test_clients_and_token(
    capsys: pytest.CaptureFixture[str],
    settings_for_cli: Settings,
    time_travel: TimeTravel,
    tmp_path: Path,
) -> None:
    settings = settings_for_cli
    created, signed, listed, token = await asyncio.to_thread(
        _register_and_issue, capsys, settings, tmp_path
    )  # in a thread: the commands run their own event loop, as from a shell
    assert "client_secret" not in signed and signed["has_secret"] is False
    assert {c["client_id"] for c in listed} == {created["client_id"], signed["client_id"]}
    assert token.count(".") == 2
    async with serve(settings, time_travel) as server:
        caller = await server.authority.caller(f"Bearer {token}")
        assert caller.client_id == created["client_id"]
        assert caller.scopes.text() == "system/Slot.rs" and caller.owners == {"Practitioner/p1"}
        basic = (created["client_id"], created["client_secret"])
        by_secret = await server.token({"grant_type": "client_credentials"}, auth=basic)
        assert by_secret.status_code == 200
        by_key = await server.token(assertion_form(assertion(signed["client_id"])))
        assert by_key.status_code == 200


def _register_and_issue(
    capsys: pytest.CaptureFixture[str], settings: Settings, tmp_path: Path
) -> tuple[Any, Any, Any, Any]:
    created = run(
        capsys, settings, "clients", "create", "--name", "Agenda", "--secret",
        "--owner", "Practitioner/p1", "--scope", "system/*.read system/Slot.write",
    )  # fmt: skip
    assert created["client_id"] and created["client_secret"]
    assert (
        created["owners"] == ["Practitioner/p1"]
        and created["scope"] == "system/*.rs system/Slot.cud"
    )
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps(public_jwks(EC_KEY)))
    signed = run(
        capsys, settings, "clients", "create", "--name", "Portal", "--jwks-file", str(keys)
    )
    listed = run(capsys, settings, "clients", "list")
    token = run(
        capsys, settings, "token", "--client", created["client_id"], "--scope", "system/Slot.rs"
    )
    return created, signed, listed, token


def test_rotate_and_disable(capsys: pytest.CaptureFixture[str], settings: Settings) -> None:
    created = run(capsys, settings, "clients", "create", "--name", "App", "--secret")
    rotated = run(capsys, settings, "clients", "rotate-secret", created["client_id"])
    assert rotated["client_secret"] != created["client_secret"]
    assert run(capsys, settings, "clients", "disable", created["client_id"])["disabled"] is True
    with pytest.raises(SystemExit) as refused:
        run(capsys, settings, "token", "--client", created["client_id"])
    assert refused.value.code == 2
    assert "disabled" in capsys.readouterr().err


def test_bad_input_is_a_clear_error(capsys: pytest.CaptureFixture[str], settings: Settings) -> None:
    for argv in (
        ["clients", "create", "--name", "App", "--secret", "--jwks-url", "http://app.example/k"],
        ["clients", "create", "--name", "App", "--secret", "--owner", "Patient/1"],
        ["clients", "create", "--name", "App", "--secret", "--scope", "patient/*.read"],
        ["clients", "disable", "nobody"],
        ["token", "--client", "nobody"],
    ):
        with pytest.raises(SystemExit) as refused:
            run(capsys, settings, *argv)
        assert refused.value.code == 2
        assert capsys.readouterr().err.startswith("creneau: ")


def test_serve_sandbox_warns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[Settings] = []
    monkeypatch.setattr("server.cli._serve", lambda settings, *_: served.append(settings))
    main(["serve", "--sandbox", "--port", "8999"])
    assert served[0].sandbox is True and served[0].to_env()["CRENEAU_SANDBOX"] == "1"
    assert "SANDBOX" in capsys.readouterr().err

"""The `creneau` command: serve, generate and load fixtures, manage OAuth2 clients, issue a
token, register the publishers to aggregate."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from server.app import load_conformance, make_authority, make_policy, make_store
from server.auth import clients
from server.config import Settings
from server.federation import importing
from server.fhir.outcome import FhirError
from server.store.base import Store

SOURCE_ACTIONS = ("add", "list", "remove")  # `federation` actions of `_source_actions`
SANDBOX_WARNING = """
************************************************************************
*  SANDBOX: authentication is OFF. Every request acts as an admin      *
*  client. Never expose this server to a network or to real data.      *
************************************************************************
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="creneau", description="Créneau FHIR scheduling server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the FHIR server")
    _store_options(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes (default: one per core)",
    )
    serve.add_argument(
        "--fixtures", action="store_true", help="load the demo data set first, once (idempotent)"
    )
    serve.add_argument("--sandbox", action="store_true", help="auth off: development only")
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log every request with its id, status, time and reason (off by default: it "
        "costs about 3%% of the CPU per request, and the audit trail records every write)",
    )
    _fixture_commands(commands)
    _client_commands(commands)
    _federation_commands(commands)
    token = commands.add_parser("token", help="print an access token for a stored client")
    _store_options(token)
    token.add_argument("--client", required=True, help="the client_id")
    token.add_argument("--scope", help="scopes asked for (default: all the client may have)")
    args = parser.parse_args(argv)
    settings = _settings(args)
    if args.command == "federation" and args.action in SOURCE_ACTIONS:
        _run_source_command(parser, settings, args)
        return
    if args.command in ("clients", "token"):
        _run_auth_command(parser, settings, args)
        return
    if args.command == "federation":
        _run_federation_command(parser, settings, args)
        return
    if args.command == "fixtures" and args.action is not None:
        _run_fixture_command(parser, settings, args)
        return
    if args.command == "fixtures" or args.fixtures:
        print(asyncio.run(_load_fixtures(settings)))
    if args.command == "serve":
        _serve(settings, args.workers)


def _fixture_commands(commands: Any) -> None:
    group = commands.add_parser(
        "fixtures", help="load the demo data set (idempotent); generate or load larger ones"
    )
    _store_options(group)
    actions = group.add_subparsers(dest="action")
    generate = actions.add_parser("generate", help="write a data set as NDJSON files")
    _set_options(generate)
    generate.add_argument("--out", type=Path, required=True, help="the folder to write to")
    load = actions.add_parser("load", help="load a data set through the rules (idempotent)")
    _store_options(load)
    load.add_argument("folder", type=Path, nargs="?", help="NDJSON files written by generate")
    _set_options(load, size_required=False)


def _set_options(parser: argparse.ArgumentParser, size_required: bool = True) -> None:
    from fixtures.sizes import NAMES

    parser.add_argument("--size", choices=NAMES, required=size_required)
    parser.add_argument("--seed", type=int, default=1, help="same seed and start: same bytes")
    parser.add_argument(
        "--start", type=date.fromisoformat, help="first day of slots (default: next Monday)"
    )


def _run_fixture_command(
    parser: argparse.ArgumentParser, settings: Settings, args: argparse.Namespace
) -> None:
    from fixtures import commands

    start = args.start or commands.default_start()
    try:
        if args.action == "generate":
            commands.generate(args.size, args.seed, start, args.out)
        elif (args.folder is None) == (args.size is None):
            parser.exit(2, "creneau: fixtures load takes a folder or --size, one of them\n")
        else:
            asyncio.run(
                _with_store(
                    settings,
                    lambda store: commands.load(
                        store, settings, args.folder, args.size, args.seed, start
                    ),
                )
            )
    except (OSError, ValueError) as error:
        parser.exit(2, f"creneau: {error}\n")


def _federation_commands(commands: Any) -> None:
    group = commands.add_parser("federation", help="move agendas between servers")
    actions = group.add_subparsers(dest="action", required=True)
    load = actions.add_parser(
        "import", help="load an export (NDJSON files or a manifest URL) through the rules"
    )
    _store_options(load)
    load.add_argument("source", nargs="+", help="NDJSON files or folders, or a manifest URL")
    load.add_argument("--token", help="the access token a manifest URL and its files need")
    load.add_argument(
        "--origin",
        default="urn:creneau:import",
        help="for files: the exporting server's base, naming what has no identifier "
        "(a manifest gives it)",
    )
    _source_actions(actions)


def _run_federation_command(
    parser: argparse.ArgumentParser, settings: Settings, args: argparse.Namespace
) -> None:
    try:
        report = asyncio.run(_with_store(settings, lambda store: _import(store, settings, args)))
    except (FhirError, OSError, ValueError, httpx.HTTPError) as error:
        parser.exit(2, f"creneau: {error}\n")
    print("\n".join(report.lines()) or "nothing to import")


async def _import(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    """`federation import`: files, or the manifest at a URL and the files it lists."""
    from server.api import export
    from server.federation import importing_sources

    profiles = load_conformance(settings).by_url
    fhir = export.server_interactions(store, settings, make_policy(settings), profiles)
    first = args.source[0]
    if len(args.source) == 1 and first.startswith(("http://", "https://")):
        async with httpx.AsyncClient(timeout=30.0) as http:
            source, request = await importing_sources.remote(first, http, args.token)
            return await export.load(fhir, source, importing.origin_of(request or first))
    files = importing_sources.Files(Path(p) for p in args.source)
    return await export.load(fhir, files, args.origin)


def _client_commands(commands: Any) -> None:
    group = commands.add_parser("clients", help="register and manage OAuth2 client apps")
    actions = group.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="register a client; prints it as JSON")
    _store_options(create)
    create.add_argument("--name", required=True)
    create.add_argument(
        "--owner",
        action="append",
        default=[],
        help="Organization/ID or Practitioner/ID it acts for",
    )
    create.add_argument("--admin", action="store_true", help="the operator's client")
    create.add_argument("--scope", help=f"allowed scopes (default {clients.BOOKING_SCOPE!r})")
    create.add_argument("--secret", action="store_true", help="make a client secret (shown once)")
    keys = create.add_mutually_exclusive_group()
    keys.add_argument("--jwks-file", type=Path, help="its public keys, a JWKS (or one JWK) file")
    keys.add_argument("--jwks-url", help="where its public keys (a JWKS) are published")
    _store_options(actions.add_parser("list", help="every client, as JSON"))
    for action, text in (("disable", "refuse it new tokens"), ("rotate-secret", "a new secret")):
        command = actions.add_parser(action, help=text)
        _store_options(command)
        command.add_argument("client_id")


def _run_auth_command(
    parser: argparse.ArgumentParser, settings: Settings, args: argparse.Namespace
) -> None:
    try:
        result = asyncio.run(
            _with_store(settings, lambda store: _auth_command(store, settings, args))
        )
    except (FhirError, OSError, ValueError) as error:
        parser.exit(2, f"creneau: {error}\n")
    print(json.dumps(result, indent=2) if not isinstance(result, str) else result)


async def _auth_command(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    if args.command == "token":
        authority = make_authority(settings, store)
        await authority.open()
        try:
            client = await clients.get_or_raise(store, args.client)
            return (await authority.issue(client, args.scope))["access_token"]
        finally:
            await authority.close()
    if args.action == "create":
        client, secret = await clients.create(
            store,
            name=args.name,
            owners=args.owner,
            admin=args.admin,
            scope=args.scope,
            secret=args.secret,
            jwks=_jwks(args.jwks_file) if args.jwks_file else None,
            jwks_url=args.jwks_url,
        )
        return {**client.public(), **({"client_secret": secret} if secret else {})}
    if args.action == "list":
        return [client.public() for client in await clients.list_all(store)]
    if args.action == "disable":
        return (await clients.disable(store, args.client_id)).public()
    client, secret = await clients.rotate_secret(store, args.client_id)
    return {**client.public(), "client_secret": secret}


def _source_actions(actions: Any) -> None:
    """`federation add|list|remove`: the publishers this server aggregates."""
    add = actions.add_parser("add", help="aggregate a publisher, by its $bulk-publish URL")
    _store_options(add)
    add.add_argument("url", help="the URL of its manifest ($bulk-publish)")
    add.add_argument("--name", help="a short name (default: from the URL's host)")
    _store_options(actions.add_parser("list", help="every source with its status, as JSON"))
    remove = actions.add_parser("remove", help="forget a source and what was kept from it")
    _store_options(remove)
    remove.add_argument("name")


def _run_source_command(
    parser: argparse.ArgumentParser, settings: Settings, args: argparse.Namespace
) -> None:
    try:
        result = asyncio.run(
            _with_store(settings, lambda store: _source_command(store, settings, args))
        )
    except (FhirError, OSError, ValueError) as error:
        parser.exit(2, f"creneau: {error}\n")
    print(json.dumps(result, indent=2))


async def _source_command(store: Store, settings: Settings, args: argparse.Namespace) -> Any:
    from server.federation import consumer, sources
    from server.fhir.values import now_instant

    if args.action == "add":
        return (await sources.add(store, url=args.url, name=args.name, now=now_instant())).public()
    if args.action == "list":
        return [
            {**s.public(), "status": (await sources.status(store, s.name)).public()}
            for s in await sources.list_all(store)
        ]
    source = await sources.get_or_raise(store, args.name)
    await sources.remove(store, source, now_instant())
    rules = consumer.server_rules(make_policy(settings), settings.fhir_base, settings.limits)
    return {"name": source.name, "removed": await consumer.forget(store, rules, source.name)}


def _jwks(path: Path) -> dict[str, Any]:
    """A JWKS file, or a single public JWK made into one."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JWK or JWKS")
    return data if "keys" in data else {"keys": [data]}


async def _with_store(settings: Settings, work: Callable[[Store], Awaitable[Any]]) -> Any:
    store = make_store(settings)
    await store.open()
    try:
        return await work(store)
    finally:
        await store.close()


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="embedded store folder (./.creneau)")
    parser.add_argument("--mongodb-uri", help="use this MongoDB instead of the embedded store")


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    overrides: dict[str, Any] = {
        name: getattr(args, name)
        for name in ("host", "port", "data_dir", "mongodb_uri")
        if getattr(args, name, None) is not None
    }
    if getattr(args, "sandbox", False):
        overrides["sandbox"] = True
        print(SANDBOX_WARNING, file=sys.stderr)
    if getattr(args, "access_log", False):
        overrides["access_log"] = True
    return replace(settings, **overrides)


async def _load_fixtures(settings: Settings) -> str:
    from fixtures.demo import load_once

    store = make_store(settings)
    await store.open()
    try:
        return await load_once(store, settings.fhir_base, make_policy(settings))
    finally:
        await store.close()


def _serve(settings: Settings, workers: int) -> None:
    os.environ.update(settings.to_env())
    uvicorn.run(
        "server.app:from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=workers,
        log_level="info",
        access_log=False,  # ours, with the request id and the reason (`api.access_log`)
    )


if __name__ == "__main__":
    main()

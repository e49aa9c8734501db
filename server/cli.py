"""The `creneau` command: serve, load demo fixtures."""

from __future__ import annotations

import argparse
import asyncio
import os
from dataclasses import replace
from pathlib import Path

import uvicorn

from server.app import make_policy, make_store
from server.config import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="creneau", description="Créneau FHIR scheduling server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the FHIR server")
    _store_options(serve)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--fixtures", action="store_true", help="load the demo data set first, once (idempotent)"
    )
    fixtures = commands.add_parser("fixtures", help="load the demo data set (idempotent)")
    _store_options(fixtures)
    args = parser.parse_args(argv)
    settings = _settings(args)
    if args.command == "fixtures" or args.fixtures:
        print(asyncio.run(_load_fixtures(settings)))
    if args.command == "serve":
        _serve(settings, args.workers)


def _store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="embedded store folder (./.creneau)")
    parser.add_argument("--mongodb-uri", help="use this MongoDB instead of the embedded store")


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    overrides = {
        name: getattr(args, name)
        for name in ("host", "port", "data_dir", "mongodb_uri")
        if getattr(args, name, None) is not None
    }
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
    )


if __name__ == "__main__":
    main()

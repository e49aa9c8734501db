"""Settings, from the environment (`CRENEAU_*`) or the command line; passed down from
`create_app(settings)`, never read from globals."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from server.fhir.conformance import DEFAULT_PACKAGES
from server.limits import Limits, limits_from_env, limits_to_env
from server.scheduling import national_identifiers
from server.scheduling.vocabulary import DEFAULT_VACCINATION_CODES

NATIONAL_IDENTIFIER_SYSTEMS = "CRENEAU_NATIONAL_IDENTIFIER_SYSTEMS"
IG_PACKAGES = "CRENEAU_IG_PACKAGES"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path(".creneau")
    mongodb_uri: str | None = None
    base_url: str = ""  # public FHIR base; derived from host and port when empty
    max_body_bytes: int = 2 * 1024 * 1024
    hold_seconds: int = 300
    hold_sweep_seconds: float = 5.0  # how often lapsed holds are cancelled (0: never)
    federation_poll_seconds: float = 15.0  # how often sources due are polled (0: never)
    access_log: bool = False  # a line per request (`server.api.access_log`)
    vaccination_codes: str = ",".join(DEFAULT_VACCINATION_CODES)  # system|code, comma-separated
    # identifier systems unique per resource type, comma-separated (empty: the rule is off)
    national_identifier_systems: str = ",".join(national_identifiers.DEFAULT_SYSTEMS)
    sandbox: bool = False  # auth off: every request acts as an admin client (development only)
    token_seconds: int = 300  # access token lifetime
    key_rotation_seconds: int = 86400  # a new signing key this often (unless signing_key_file)
    signing_key_file: Path | None = None  # a private JWK (JSON) or PEM; no rotation then
    cors_origins: str = ""  # comma-separated origins allowed to call from a browser
    audit_reads: bool = False  # an AuditEvent for every read and search too (off: writes only)
    audit_flush_seconds: float = 1.0  # how often queued AuditEvents (refusals, reads) are written
    limits: Limits = field(default_factory=Limits)  # CRENEAU_LIMIT_*, see docs/limits.md
    # FHIR packages served as conformance resources: folders or .tgz files, comma-separated
    ig_packages: str = ",".join(DEFAULT_PACKAGES)
    stats_threshold: int = 10  # open statistics: cells of fewer are withheld ("< 10")

    @property
    def fhir_base(self) -> str:
        return (self.base_url or f"http://{self.host}:{self.port}/fhir").rstrip("/")

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "creneau.sqlite"

    def to_env(self) -> dict[str, str]:
        """The CRENEAU_* variables that recreate these settings in a worker process."""
        env = {
            "CRENEAU_HOST": self.host,
            "CRENEAU_PORT": str(self.port),
            "CRENEAU_DATA_DIR": str(self.data_dir),
            "CRENEAU_BASE_URL": self.base_url,
            "CRENEAU_MAX_BODY_BYTES": str(self.max_body_bytes),
            "CRENEAU_HOLD_SECONDS": str(self.hold_seconds),
            "CRENEAU_HOLD_SWEEP_SECONDS": str(self.hold_sweep_seconds),
            "CRENEAU_FEDERATION_POLL_SECONDS": str(self.federation_poll_seconds),
            "CRENEAU_ACCESS_LOG": "1" if self.access_log else "",
            "CRENEAU_VACCINATION_CODES": self.vaccination_codes,
            NATIONAL_IDENTIFIER_SYSTEMS: self.national_identifier_systems,
            IG_PACKAGES: self.ig_packages,
            "CRENEAU_SANDBOX": "1" if self.sandbox else "",
            "CRENEAU_TOKEN_SECONDS": str(self.token_seconds),
            "CRENEAU_KEY_ROTATION_SECONDS": str(self.key_rotation_seconds),
            "CRENEAU_CORS_ORIGINS": self.cors_origins,
            "CRENEAU_AUDIT_READS": "1" if self.audit_reads else "",
            "CRENEAU_AUDIT_FLUSH_SECONDS": str(self.audit_flush_seconds),
            "CRENEAU_STATS_THRESHOLD": str(self.stats_threshold),
            **limits_to_env(self.limits),
        }
        if self.mongodb_uri:
            env["CRENEAU_MONGODB_URI"] = self.mongodb_uri
        if self.signing_key_file:
            env["CRENEAU_SIGNING_KEY_FILE"] = str(self.signing_key_file)
        return env

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        settings = cls()
        overrides: dict[str, object] = {}
        for name, convert in (
            ("host", str),
            ("port", int),
            ("data_dir", Path),
            ("mongodb_uri", str),
            ("base_url", str),
            ("max_body_bytes", int),
            ("hold_seconds", int),
            ("hold_sweep_seconds", float),
            ("federation_poll_seconds", float),
            ("vaccination_codes", str),
            ("sandbox", _flag),
            ("access_log", _flag),
            ("token_seconds", int),
            ("key_rotation_seconds", int),
            ("signing_key_file", Path),
            ("cors_origins", str),
            ("audit_reads", _flag),
            ("audit_flush_seconds", float),
            ("stats_threshold", int),
        ):
            value = env.get(f"CRENEAU_{name.upper()}")
            if value:
                overrides[name] = convert(value)
        if NATIONAL_IDENTIFIER_SYSTEMS in env:  # set empty, it turns the rule off
            overrides["national_identifier_systems"] = env[NATIONAL_IDENTIFIER_SYSTEMS]
        if IG_PACKAGES in env:  # set empty, no package is loaded
            overrides["ig_packages"] = env[IG_PACKAGES]
        return replace(settings, limits=limits_from_env(env), **overrides)  # type: ignore[arg-type]


def _flag(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")

"""The TLS / mutual-TLS reverse proxy of docs/operations.md, run as documented: Debian's nginx
with the page's own configuration (only its paths and ports changed) in front of a live server.

nginx is installed by `make test` (the Makefile's `nginx` target). Without it this test fails,
so that CI cannot pass without running it; `CRENEAU_SKIP_NGINX=1` skips it instead."""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.factories import FHIR_JSON, fresh_rpps, make_practitioner
from tests.live import live_server

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
DOCUMENTED = re.compile(
    r"<!-- tests/api/test_tls_proxy\.py runs the next block[^>]*-->\n```nginx\n(.*?)```", re.DOTALL
)
# What Debian's nginx.conf sets around conf.d/*.conf, for what the page's server block overrides
# (TLS 1.0 and 1.1, gzip), and the paths it would take from /etc, /var and /run.
WRAPPER = """{user}
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/logs/error.log notice;
events {{ worker_connections 64; }}
http {{
    ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
    gzip on;
    gzip_types application/fhir+json application/json;
    access_log {root}/logs/access.log;
    client_body_temp_path {root}/temp/body;
    proxy_temp_path {root}/temp/proxy;
    fastcgi_temp_path {root}/temp/fastcgi;
    uwsgi_temp_path {root}/temp/uwsgi;
    scgi_temp_path {root}/temp/scgi;
    include {root}/creneau.conf;
}}
"""
REFUSED = "A client certificate issued by an accepted CA is required"


@dataclass(frozen=True)
class Proxy:
    url: str  # https://localhost:PORT, the proxy
    upstream: str  # http://127.0.0.1:PORT, the server itself
    root: Path  # certificates (`tls/`) and logs (`logs/`)

    def client(self, who: str | None = "client", **options: Any) -> httpx.Client:
        """An httpx client of the proxy presenting `who`'s certificate (None: no certificate)."""
        context = ssl.create_default_context(cafile=self.root / "tls" / "server-ca.pem")
        if who is not None:
            context.load_cert_chain(
                self.root / "tls" / f"{who}.crt", self.root / "tls" / f"{who}.key"
            )
        transport = httpx.HTTPTransport(verify=context, **options)
        return httpx.Client(base_url=self.url, transport=transport, timeout=30)


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found:
        return found
    if os.environ.get("CRENEAU_SKIP_NGINX") == "1":
        pytest.skip("nginx is not installed and CRENEAU_SKIP_NGINX=1")
    pytest.fail(
        "nginx is not installed: `make test` installs Debian's package (the Makefile's nginx "
        "target); set CRENEAU_SKIP_NGINX=1 to skip this test where it cannot be installed"
    )


def documented_config(proxy_port: int, upstream: str, root: Path) -> str:
    """The nginx block of docs/operations.md, with this test's ports and paths put in."""
    [config] = DOCUMENTED.findall(OPERATIONS.read_text())
    for example, here in (
        ("listen 443 ssl;", f"listen 127.0.0.1:{proxy_port} ssl;"),
        ("server 127.0.0.1:8080;", f"server {upstream.removeprefix('http://')};"),
        ("/etc/creneau/tls/", f"{root}/tls/"),
        ("/var/log/nginx/", f"{root}/logs/"),
    ):
        assert example in config, f"docs/operations.md's nginx block has no {example!r}"
        config = config.replace(example, here)
    return config


# Certificates: the server's CA, the accepted clients' CA (the SAS's) and a stranger CA.
Issuer = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]
SERVER = (
    x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ip_address("127.0.0.1"))]
    ),
    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
)
CLIENT = (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),)


def _issue(name: str, issuer: Issuer | None, *extensions: x509.ExtensionType) -> Issuer:
    """A certificate and its key: a CA's (`issuer` None: self-signed), or a leaf one."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Creneau tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def write_certificates(folder: Path) -> None:
    """server-ca.pem, server.crt/key (localhost), clients-ca.pem, client.crt/key (issued by the
    clients' CA) and stranger.crt/key (issued by another CA) in `folder`."""
    folder.mkdir()
    authorities = {ca: _issue(f"Test {ca}", None) for ca in ("server", "clients", "stranger")}
    for ca, (certificate, _) in authorities.items():
        (folder / f"{ca}-ca.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    for name, common_name, ca, extensions in (
        ("server", "localhost", "server", SERVER),
        ("client", "SAS test client", "clients", CLIENT),
        ("stranger", "Stranger client", "stranger", CLIENT),
    ):
        certificate, key = _issue(common_name, authorities[ca], *extensions)
        (folder / f"{name}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        private = serialization.PrivateFormat.PKCS8
        pem = key.private_bytes(serialization.Encoding.PEM, private, serialization.NoEncryption())
        (folder / f"{name}.key").write_bytes(pem)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_nginx(nginx: str, root: Path, port: int) -> Iterator[None]:
    """nginx in the foreground on `root`/nginx.conf until the block ends; what it printed and
    its error log are shown when it does not start."""
    (root / "logs").mkdir()
    (root / "temp").mkdir()
    with (root / "logs" / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(
            [nginx, "-p", str(root), "-c", str(root / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        _wait_for(process, port, root / "logs")
        yield
    finally:
        process.terminate()
        process.wait(timeout=20)


def _wait_for(process: subprocess.Popen[bytes], port: int, logs: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    shown = [p.read_text(errors="replace") for p in sorted(logs.glob("*.log"))]
    pytest.fail("nginx did not start:\n" + "\n".join(shown))


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    nginx = nginx_binary()
    root = tmp_path_factory.mktemp("tls-proxy")
    write_certificates(root / "tls")
    port = _free_port()
    url = f"https://localhost:{port}"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CRENEAU_BASE_URL", f"{url}/fhir")
        with live_server(tmp_path_factory.mktemp("tls-proxy-data"), "--sandbox") as upstream:
            (root / "creneau.conf").write_text(documented_config(port, upstream, root))
            # Run as root, nginx's workers would be `nobody`, unable to use the temp folders here.
            user = "user root;" if os.geteuid() == 0 else ""
            (root / "nginx.conf").write_text(WRAPPER.format(user=user, root=root))
            with running_nginx(nginx, root, port):
                yield Proxy(url, upstream, root)


def test_a_client_of_the_accepted_ca_gets_through(proxy: Proxy) -> None:
    with proxy.client() as http:
        response = http.get("/fhir/metadata")
    assert response.status_code == 200, response.text
    assert response.json()["resourceType"] == "CapabilityStatement"


@pytest.mark.parametrize("who", [None, "stranger"], ids=["no-certificate", "another-ca"])
def test_other_clients_are_refused_by_the_proxy(proxy: Proxy, who: str | None) -> None:
    with proxy.client(who) as http:
        response = http.get("/fhir/metadata")
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/fhir+json"
    [issue] = response.json()["issue"]
    assert (issue["code"], issue["diagnostics"]) == ("security", REFUSED)
    assert re.fullmatch("[0-9a-f]{32}", response.headers["x-request-id"])  # nginx's own


def handshake(proxy: Proxy, version: ssl.TLSVersion) -> str:
    """The protocol a client offering `version` alone agrees with the proxy."""
    context = ssl.create_default_context(cafile=proxy.root / "tls" / "server-ca.pem")
    context.load_cert_chain(proxy.root / "tls" / "client.crt", proxy.root / "tls" / "client.key")
    with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = version
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # so that this client can offer TLS 1.1 at all
    port = int(proxy.url.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return str(tls.version())


def test_tls_1_2_is_the_oldest_protocol_accepted(proxy: Proxy) -> None:
    assert handshake(proxy, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    with pytest.raises(ssl.SSLError) as refused:
        handshake(proxy, ssl.TLSVersion.TLSv1_1)
    # The proxy refuses the protocol (without `ssl_protocols`, OpenSSL's security level would
    # refuse TLS 1.1's ciphers instead: SSLV3_ALERT_HANDSHAKE_FAILURE)
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"


def test_links_carry_the_public_https_base(proxy: Proxy) -> None:
    base = f"{proxy.url}/fhir"
    family = f"Tls{fresh_rpps()}"
    with proxy.client() as http:
        for _ in range(2):
            practitioner = make_practitioner(rpps=fresh_rpps(), family=family)
            created = http.post("/fhir/Practitioner", json=practitioner, headers=FHIR_JSON)
            assert created.status_code == 201, created.text
            assert created.headers["location"].startswith(f"{base}/Practitioner/")
        found = http.get("/fhir/Practitioner", params={"family": family, "_count": "1"})
    assert found.status_code == 200, found.text
    bundle = found.json()
    assert {link["relation"] for link in bundle["link"]} >= {"self", "next"}
    assert all(link["url"].startswith(f"{base}/Practitioner?") for link in bundle["link"])
    assert bundle["entry"][0]["fullUrl"].startswith(f"{base}/Practitioner/")


def test_the_request_id_goes_through_both_ways(proxy: Proxy) -> None:
    with proxy.client() as http:
        given = http.get("/fhir/metadata", headers={"X-Request-ID": "sas-7f3a.1"})
        fresh = http.get("/fhir/metadata")
    assert given.headers["x-request-id"] == "sas-7f3a.1"
    made = fresh.headers["x-request-id"]  # nginx's $request_id, passed to the server
    assert re.fullmatch("[0-9a-f]{32}", made)
    for request_id in ("sas-7f3a.1", made):
        line = logged(proxy, f"id={request_id} ")
        assert 'client="CN=SAS test client,O=Creneau tests" verify=SUCCESS' in line


def logged(proxy: Proxy, text: str) -> str:
    """The line of the proxy's access log with `text`: nginx writes it once it has answered,
    so it may come a moment after the answer."""
    log = proxy.root / "logs" / "creneau-access.log"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if lines := [line for line in log.read_text().splitlines() if text in line]:
            [line] = lines
            return line
        time.sleep(0.05)
    pytest.fail(f"no line with {text!r} in the proxy's access log:\n{log.read_text()}")


@pytest.mark.parametrize("address", ["127.0.0.2", "127.0.0.1"])
def test_the_audit_trail_records_the_client_address_not_a_claimed_one(
    proxy: Proxy, address: str
) -> None:
    """The client connects from `address` and claims 203.0.113.7; the server sees the proxy at
    127.0.0.1 and trusts its X-Forwarded-For (the proxy's address too when the client's is
    127.0.0.1: had the proxy appended to the client's header, uvicorn would take the claim)."""
    with proxy.client(local_address=address) as http:
        created = http.post(
            "/fhir/Practitioner",
            json=make_practitioner(rpps=fresh_rpps()),
            headers={**FHIR_JSON, "X-Forwarded-For": "203.0.113.7"},
        )
        assert created.status_code == 201, created.text
        target = f"Practitioner/{created.json()['id']}"
        events = http.get("/fhir/AuditEvent", params={"entity": target}).json()["entry"]
    [agent] = events[0]["resource"]["agent"]
    assert agent["network"] == {"address": address, "type": "2"}


def test_the_token_endpoint_sees_https_through_the_proxy(proxy: Proxy) -> None:
    """The token endpoint refuses plain http from a host that is not loopback: straight to the
    server it is refused, through the proxy (X-Forwarded-Proto) it is checked."""
    form = {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"}
    public = {"Host": "fhir.example.org"}
    direct = httpx.post(f"{proxy.upstream}/auth/token", data=form, headers=public)
    assert direct.json()["error"] == "insecure_transport", direct.text
    with proxy.client() as http:
        proxied = http.post("/auth/token", data=form, headers=public)
    assert proxied.json()["error"] == "invalid_client", proxied.text


def test_a_body_over_the_servers_limit_is_refused_by_the_proxy(proxy: Proxy) -> None:
    limit = 2 * 1024 * 1024  # CRENEAU_MAX_BODY_BYTES, client_max_body_size
    under = make_practitioner(rpps=fresh_rpps())
    under["name"] = [{"family": "x" * 1000}] * (limit // 2 // 1000)  # 1 MiB: over nginx's default
    with proxy.client() as http:
        accepted = http.post("/fhir/Practitioner", json=under, headers=FHIR_JSON)
        refused = http.post("/fhir/Practitioner", content=b" " * (limit + 1), headers=FHIR_JSON)
    assert accepted.status_code == 201, accepted.text[:500]
    assert refused.status_code == 413, refused.text
    assert refused.headers["content-type"] == "application/fhir+json"
    assert refused.json()["issue"][0]["code"] == "too-costly"
    assert "x-request-id" in refused.headers


def test_answers_are_compressed_once_by_the_server(proxy: Proxy) -> None:
    gzip = {"Accept-Encoding": "gzip"}
    with proxy.client() as http:
        large = http.get("/fhir/metadata", headers=gzip)  # over 1 KiB: the server gzips it
        small = http.get("/fhir/Practitioner", params={"family": "nobody"}, headers=gzip)
    assert large.status_code == small.status_code == 200
    assert large.headers["content-encoding"] == "gzip"
    assert large.json()["resourceType"] == "CapabilityStatement"
    assert small.headers["content-type"].startswith("application/fhir+json")  # in gzip_types
    assert "content-encoding" not in small.headers

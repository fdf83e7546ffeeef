"""Real reverse proxies (Debian's nginx and Caddy) in front of a daemon, run from the shipped
``deploy/nginx.conf`` and ``deploy/Caddyfile``: the console's site is cut out of the file and
only its ports, certificate paths and upstream are substituted, so the file users copy is the
one tested. Each proxy runs in the foreground as a subprocess of the test with its own prefix,
pid, temp and log paths under the test's folder (no system config is read or touched), with a
self-signed certificate for the site's name made by ``cryptography``. ``pinned_session`` is a
requests session that speaks TLS to 127.0.0.1 as if the name resolved there (SNI, the
certificate's name check and the Host header all say the site's name)."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from support import ROOT, free_port, wait_for

__all__ = [
    "CADDYFILE",
    "CONSOLE_NAME",
    "NGINX_CONF",
    "Proxy",
    "caddy_binary",
    "caddy_check_whole",
    "caddy_site",
    "nginx_binary",
    "nginx_check_whole",
    "nginx_servers",
    "pinned_session",
    "running_caddy",
    "running_nginx",
    "self_signed",
]

NGINX_CONF = ROOT / "deploy" / "nginx.conf"
CADDYFILE = ROOT / "deploy" / "Caddyfile"
CONSOLE_NAME = "console.example.com"
DEPLOYED_UPSTREAM = "127.0.0.1:9108"

INSTALL = (
    "is not installed: the reverse-proxy tests run the shipped deploy/ files with it. Install "
    "Debian's packages with `.ci/nginx.sh` (apt-get install nginx caddy), or put it on "
    "PATH"
)


def nginx_binary() -> str:
    """Debian's nginx (in /usr/sbin, often not on a user's PATH); AssertionError with how to
    install it when missing."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    assert found, f"nginx {INSTALL}"
    return found


def caddy_binary() -> str:
    found = shutil.which("caddy")
    assert found, f"caddy {INSTALL}"
    return found


# ------------------------------------------------------------------ the certificate
def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (its own trust anchor: the client verifies
    against it), and its key; PEM files in ``folder``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# ------------------------------------------------------------------ the client
class _PinnedHost(HTTPAdapter):
    """Connects where the URL says (127.0.0.1) but speaks TLS to ``name``: SNI and the
    certificate's name check are ``name``'s, as a browser whose DNS gave 127.0.0.1."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self.name
        kwargs["assert_hostname"] = self.name
        super().init_poolmanager(*args, **kwargs)


def pinned_session(name: str, cert: Path) -> requests.Session:
    """A session to ``https://127.0.0.1:PORT`` that is, for TLS and HTTP, ``https://name``:
    verified against ``cert``, ``Host: name``."""
    s = requests.Session()
    # no REQUESTS_CA_BUNDLE (it would win over ``verify``), no proxy from the environment
    s.trust_env = False
    s.mount("https://", _PinnedHost(name))
    s.verify = str(cert)
    s.headers["Host"] = name
    return s


# ------------------------------------------------------------------ the proxies
@dataclass
class Proxy:
    """A running proxy: its https and http ports on 127.0.0.1, its log files."""

    name: str
    https_port: int
    http_port: int
    proc: subprocess.Popen[bytes]
    logs: list[Path]

    def https(self, path: str) -> str:
        return f"https://127.0.0.1:{self.https_port}{path}"

    def http(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())


def _blocks(text: str, opener: re.Pattern[str]) -> Iterator[str]:
    """Each top-level block of ``text`` whose opening line matches ``opener``, braces counted
    outside comments and quotes (enough for these files)."""
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        if not opener.match(lines[i]):
            i += 1
            continue
        depth, block = 0, []
        for j in range(i, len(lines)):
            code = re.sub(r'"[^"]*"', "", lines[j].split("#", 1)[0])
            depth += code.count("{") - code.count("}")
            block.append(lines[j])
            if depth == 0:
                break
        assert depth == 0, f"unbalanced braces from line {i + 1}"
        yield "".join(block)
        i = j + 1


def nginx_servers(name: str, text: str | None = None) -> list[str]:
    """The ``server { … }`` blocks of deploy/nginx.conf whose server_name is ``name``."""
    text = NGINX_CONF.read_text() if text is None else text
    return [
        b
        for b in _blocks(text, re.compile(r"server\s*\{"))
        if re.search(rf"^\s*server_name\s+{re.escape(name)}\s*;", b, re.M)
    ]


def caddy_site(name: str, text: str | None = None) -> str:
    """The site block of deploy/Caddyfile for ``name``."""
    text = CADDYFILE.read_text() if text is None else text
    found = list(_blocks(text, re.compile(rf"{re.escape(name)}\s*\{{")))
    assert len(found) == 1, f"deploy/Caddyfile: expected one site {name}, found {len(found)}"
    return found[0]


def _substitute(block: str, upstream: str, replace: dict[str, str] | None = None) -> str:
    assert DEPLOYED_UPSTREAM in block, f"the site does not proxy to {DEPLOYED_UPSTREAM}"
    block = block.replace(DEPLOYED_UPSTREAM, upstream)
    for old, new in (replace or {}).items():
        assert old in block, f"expected {old!r} in the site"
        block = block.replace(old, new)
    return block


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _wait_ready(proxy: Proxy) -> None:
    def ready() -> bool:
        assert proxy.proc.poll() is None, f"{proxy.name} exited:\n{proxy.log_text()}"
        return _listening(proxy.https_port) and _listening(proxy.http_port)

    wait_for(ready, 10, f"{proxy.name} listening")


def _nginx_conf(prefix: Path, servers: list[str]) -> tuple[Path, Path]:
    """An nginx.conf around ``servers`` with every path under ``prefix``, checked by
    ``nginx -t``; the config and the error log."""
    for sub in ("logs", "temp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    error_log, access_log = prefix / "logs" / "error.log", prefix / "logs" / "access.log"
    temp = prefix / "temp"
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""daemon off;
master_process off;
pid {prefix / "nginx.pid"};
error_log {error_log} info;
events {{ worker_connections 64; }}
http {{
    access_log {access_log};
    client_body_temp_path {temp / "body"};
    proxy_temp_path {temp / "proxy"};
    fastcgi_temp_path {temp / "fastcgi"};
    uwsgi_temp_path {temp / "uwsgi"};
    scgi_temp_path {temp / "scgi"};
{"".join(servers)}
}}
"""
    )
    check = subprocess.run(
        [nginx_binary(), "-t", "-p", str(prefix), "-c", str(conf), "-e", str(error_log)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, f"nginx -t refused the generated config:\n{check.stderr}"
    return conf, error_log


def nginx_check_whole(folder: Path, cert: Path, key: Path) -> None:
    """``nginx -t`` on every server of deploy/nginx.conf (ports and certificates substituted)."""
    text = re.sub(r"/etc/ssl/integrator/\S*privkey\.pem", str(key), NGINX_CONF.read_text())
    text = re.sub(r"/etc/ssl/integrator/\S*fullchain\.pem", str(cert), text)
    text = text.replace("listen 443 ssl", f"listen 127.0.0.1:{free_port()} ssl")
    text = text.replace("listen 80;", f"listen 127.0.0.1:{free_port()};")
    left = [line for line in text.splitlines() if "/etc/" in line.partition("#")[0]]
    assert not left, f"deploy/nginx.conf: paths the test does not substitute: {left}"
    _nginx_conf(folder / "nginx-whole", list(_blocks(text, re.compile(r"server\s*\{"))))


def caddy_check_whole(folder: Path) -> None:
    """deploy/Caddyfile adapted and validated by Caddy (no certificate is asked for)."""
    home = folder / "caddy-whole"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
    }
    check = subprocess.run(
        [
            caddy_binary(),
            "adapt",
            "--validate",
            "--adapter",
            "caddyfile",
            "--config",
            str(CADDYFILE),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert check.returncode == 0, f"caddy refused deploy/Caddyfile:\n{check.stderr}"


@contextmanager
def running_nginx(folder: Path, upstream_port: int, cert: Path, key: Path) -> Iterator[Proxy]:
    """nginx with the console's server blocks of deploy/nginx.conf, in the foreground: one
    process (no worker switching to another user), everything under ``folder``."""
    binary = nginx_binary()
    https_port, http_port = free_port(), free_port()
    blocks = nginx_servers(CONSOLE_NAME)
    upstream = f"127.0.0.1:{upstream_port}"
    tls = [b for b in blocks if "ssl_certificate" in b]
    plain = [b for b in blocks if "ssl_certificate" not in b]
    assert len(tls) == 1 and len(plain) == 1, "deploy/nginx.conf: the console's sites"
    servers = [
        _substitute(
            tls[0],
            upstream,
            {
                "listen 443 ssl": f"listen 127.0.0.1:{https_port} ssl",
                "/etc/ssl/integrator/console-fullchain.pem": str(cert),
                "/etc/ssl/integrator/console-privkey.pem": str(key),
            },
        ),
        plain[0].replace("listen 80;", f"listen 127.0.0.1:{http_port};"),
    ]
    conf, error_log = _nginx_conf(folder / "nginx", servers)
    proc = subprocess.Popen(
        [binary, "-p", str(conf.parent), "-c", str(conf), "-e", str(error_log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    proxy = Proxy("nginx", https_port, http_port, proc, [error_log])
    try:
        _wait_ready(proxy)
        yield proxy
    finally:
        _stop(proc)


@contextmanager
def running_caddy(folder: Path, upstream_port: int, cert: Path, key: Path) -> Iterator[Proxy]:
    """Caddy with the console's site of deploy/Caddyfile, our certificate instead of an ACME
    one, its own ports, no admin endpoint, its storage under ``folder``."""
    binary = caddy_binary()
    https_port, http_port = free_port(), free_port()
    site = _substitute(caddy_site(CONSOLE_NAME), f"127.0.0.1:{upstream_port}")
    head, _, body = site.partition("{")
    site = f"{head.strip()}:{https_port} {{\n\ttls {cert} {key}\n{body}"
    home = folder / "caddy"
    home.mkdir(parents=True, exist_ok=True)
    log = home / "caddy.log"
    conf = home / "Caddyfile"
    conf.write_text(
        f"""{{
	admin off
	http_port {http_port}
	https_port {https_port}
	default_bind 127.0.0.1
	storage file_system {home / "data"}
	log {{
		output file {log}
	}}
}}

{site}"""
    )
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
    }
    check = subprocess.run(
        [binary, "validate", "--adapter", "caddyfile", "--config", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert check.returncode == 0, f"caddy validate refused the generated config:\n{check.stderr}"
    with log.with_suffix(".err").open("wb") as err:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [binary, "run", "--adapter", "caddyfile", "--config", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
    proxy = Proxy("caddy", https_port, http_port, proc, [log, log.with_suffix(".err")])
    try:
        _wait_ready(proxy)
        yield proxy
    finally:
        _stop(proc)

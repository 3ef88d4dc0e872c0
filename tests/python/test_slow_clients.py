"""Slow clients cannot hold the gate's and the authority's connections: a client
that trickles its request headers a byte at a time (slowloris) is cut off after the
30 s header-read limit, while other clients are served as usual meanwhile."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import uuid
from urllib.parse import urlparse

import requests

from helpers import STORAGE_SCOPE, Report, allowed_soon

HEADER_READ_LIMIT = 30


def trickle(url: str, ca: str, result: dict) -> None:
    """Sends a request line, then one header byte a second until the server hangs up."""
    u = urlparse(url)
    context = ssl.create_default_context(cafile=ca)
    started = time.monotonic()
    with socket.create_connection((u.hostname, u.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=u.hostname) as tls:
            tls.sendall(f"GET {u.path or '/'} HTTP/1.1\r\nHost: {u.hostname}\r\n".encode())
            try:
                while time.monotonic() - started < HEADER_READ_LIMIT + 30:
                    tls.sendall(b"X")
                    tls.settimeout(1)
                    try:
                        if tls.recv(1024) == b"":
                            break  # closed
                        break  # an answer (408 or similar), then close
                    except (socket.timeout, TimeoutError):
                        continue
            except (ConnectionError, ssl.SSLError, OSError):
                pass
    result["held"] = time.monotonic() - started


def trickle_body(url: str, ca: str, token: str, result: dict) -> None:
    """Sends whole headers announcing 10,000 body bytes, then one byte a second."""
    u = urlparse(url)
    context = ssl.create_default_context(cafile=ca)
    started = time.monotonic()
    answer = b""
    with socket.create_connection((u.hostname, u.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=u.hostname) as tls:
            tls.sendall(f"PUT {u.path}/slow-body/x.bin HTTP/1.1\r\nHost: {u.hostname}\r\nx-ms-version: 2025-01-05\r\n"
                        f"Authorization: Bearer {token}\r\nx-ms-blob-type: BlockBlob\r\nContent-Length: 10000\r\n\r\n".encode())
            tls.settimeout(1)
            while time.monotonic() - started < 60:
                try:
                    tls.sendall(b"X")
                    chunk = tls.recv(4096)
                    answer += chunk
                    break
                except (socket.timeout, TimeoutError):
                    continue
                except (ConnectionError, ssl.SSLError, OSError):
                    break
    result["held"] = time.monotonic() - started
    result["answer"] = answer.split(b"\r\n", 1)[0].decode(errors="replace")


def writer_token(authority, gate) -> str:
    """A token allowed to write container slow-body, once the gate applies the role."""
    app = authority.new_app(f"slow-{uuid.uuid4().hex[:6]}")
    secret = authority.new_secret(app["appId"])
    gate.assign(app["spObjectId"], "Storage Blob Data Contributor", gate.scope)
    token = requests.post(authority.token_endpoint(), data={
        "grant_type": "client_credentials", "client_id": app["appId"], "client_secret": secret,
        "scope": STORAGE_SCOPE}, verify=authority.ca, timeout=30).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "x-ms-version": "2025-01-05"}

    def create():
        r = requests.put(f"{gate.endpoint}/slow-body?restype=container", headers=headers, verify=authority.ca,
                         timeout=30)
        if r.status_code != 409:
            r.raise_for_status()

    allowed_soon(create, "create the container")
    return token


def test_a_client_trickling_its_headers_is_cut_off(authority, gate):
    results = {name: {} for name in ("gate", "authority")}
    threads = [
        threading.Thread(target=trickle, args=(gate.endpoint, authority.ca, results["gate"])),
        threading.Thread(target=trickle, args=(authority.host + "/common/discovery/v2.0/keys", authority.ca,
                                               results["authority"])),
    ]
    token = writer_token(authority, gate)
    body = {}
    threads.append(threading.Thread(target=trickle_body, args=(gate.endpoint, authority.ca, token, body)))
    for t in threads:
        t.start()
    # Meanwhile everyone else is served.
    time.sleep(2)
    ok = requests.get(f"{authority.host}/common/v2.0/.well-known/openid-configuration", verify=authority.ca,
                      timeout=10)
    report = Report("reliability", "Slow clients")
    report.check("others are served while slow clients hold connections", "200", str(ok.status_code),
                 ok.status_code == 200)
    for t in threads:
        t.join(timeout=HEADER_READ_LIMIT + 40)
    for name, r in results.items():
        held = r.get("held")
        report.check(f"{name}: headers trickled a byte a second (slowloris)",
                     f"cut off after {HEADER_READ_LIMIT} s (within 10 s of it)",
                     "never cut off" if held is None else f"cut off after {held:.1f} s",
                     held is not None and HEADER_READ_LIMIT - 1 <= held <= HEADER_READ_LIMIT + 10)
    held = body.get("held")
    report.check("gate: a body trickled a byte a second (slow body)",
                 "cut off within 10 s (240 B/s after a 5 s grace)",
                 "never cut off" if held is None else f"cut off after {held:.1f} s ({body.get('answer') or 'closed'})",
                 held is not None and held <= 10)
    report.finish()

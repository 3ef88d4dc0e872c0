"""Slow clients cannot hold the gate's and the authority's connections: a client
that trickles its request headers a byte at a time (slowloris) is cut off after the
30 s header-read limit, while other clients are served as usual meanwhile."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from urllib.parse import urlparse

import requests

from helpers import Report

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


def test_a_client_trickling_its_headers_is_cut_off(authority, gate):
    results = {name: {} for name in ("gate", "authority")}
    threads = [
        threading.Thread(target=trickle, args=(gate.endpoint, authority.ca, results["gate"])),
        threading.Thread(target=trickle, args=(authority.host + "/common/discovery/v2.0/keys", authority.ca,
                                               results["authority"])),
    ]
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
    report.finish()

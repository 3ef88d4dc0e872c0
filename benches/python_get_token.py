"""Cached get_token from Python: entraflow's credential (Rust underneath) against
azure-identity's, side by side in one run against the same local authority.

    .venv/bin/python benches/python_get_token.py [--calls 200000]

Starts its own authority in a temporary data directory (needs target/debug/entraflow
or $ENTRAFLOW_BIN) and prints microseconds per call for each credential.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "python"))

from azure.identity import ClientSecretCredential as AzureIdentitySecret  # noqa: E402
from conftest import Authority  # noqa: E402

from entraflow.identity import ClientSecretCredential as EntraflowSecret  # noqa: E402

SCOPE = "https://storage.azure.com/.default"


def per_call_us(get, calls: int) -> float:
    get(SCOPE)  # warm: the first call fetches
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            get(SCOPE)
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        authority = Authority(Path(tmp))
        try:
            os.environ["SSL_CERT_FILE"] = os.environ["REQUESTS_CA_BUNDLE"] = authority.ca
            app = authority.new_app("bench")
            secret = authority.new_secret(app["appId"])
            ours = EntraflowSecret(authority.tenant, app["appId"], secret, authority=authority.host)
            theirs = AzureIdentitySecret(authority.tenant, app["appId"], secret, authority=authority.host,
                                         disable_instance_discovery=True)
            e = per_call_us(ours.get_token, args.calls)
            a = per_call_us(theirs.get_token, args.calls)
            print(f"entraflow.identity.ClientSecretCredential.get_token (cached): {e:8.2f} us/call")
            print(f"azure.identity.ClientSecretCredential.get_token (cached):     {a:8.2f} us/call")
            print(f"ratio azure-identity / entraflow: {a / e:.1f}x")
        finally:
            authority.stop()


if __name__ == "__main__":
    main()

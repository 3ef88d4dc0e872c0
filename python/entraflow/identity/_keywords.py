"""Keyword checking: azure-identity's credentials take ``**kwargs`` and ignore what they
do not know, so a misspelt ``authorty=`` silently signs in against the public cloud.
entraflow refuses unknown keywords, naming the closest valid one, and refuses
azure-identity keywords it cannot honour, saying why."""

from __future__ import annotations

import difflib
from typing import Any, Iterable, Mapping

# azure-identity keywords that entraflow does not honour, and why. Accepting them
# silently would let a caller believe they took effect.
_UNSUPPORTED = {
    "transport": "entraflow's HTTP client is Rust's, not an azure-core pipeline",
    "connection_verify": "entraflow trusts the system roots and SSL_CERT_FILE (the local authority's env file sets it)",
    "proxies": "entraflow's HTTP client takes HTTPS_PROXY/NO_PROXY from the environment",
    "retry_total": "entraflow retries by its own policy (backoff with jitter, Retry-After honoured)",
    "logging_enable": "entraflow logs through ENTRAFLOW_LOG, never a token",
    "cache_persistence_options": "entraflow caches in memory per process and, with ENTRAFLOW_SHARED_TOKEN_CACHE=1, in the node's shared cache",
    "password": "encrypted certificates are not supported; keep an unencrypted PEM in a 0600 file",
    "certificate_data": "pass certificate_path (a PEM file), which each worker process reads itself",
}

# Accepted because entraflow already behaves as they ask.
NO_OP = {"disable_instance_discovery"}


def check(owner: str, given: Mapping[str, Any], valid: Iterable[str]) -> None:
    """Raises ``TypeError`` for the first keyword in ``given`` that is not in ``valid``."""
    valid = sorted(set(valid) | NO_OP)
    for name in given:
        if name in NO_OP:
            continue
        if name in _UNSUPPORTED:
            raise TypeError(f"{owner}() does not support the keyword argument {name!r}: {_UNSUPPORTED[name]}")
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else f"; valid keywords are {', '.join(valid)}"
        raise TypeError(f"{owner}() got an unexpected keyword argument {name!r}{hint}")

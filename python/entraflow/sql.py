"""PostgreSQL with an Entra ID access token as the password, as Azure Database for
PostgreSQL takes it and as entraflow's SQL gate takes it.

    from entraflow.sql import connect
    with connect(user="trainer", dbname="labels") as conn:
        rows = conn.execute("SELECT id, label FROM labels WHERE split = %s", ("train",)).fetchall()

Host, port and TLS settings come from the keyword arguments, the conninfo string,
or libpq's own ``PG*`` variables (``source <data-dir>/sql-gate.env`` sets them for
the local SQL gate). The password is a token for
``https://ossrdbms-aad.database.windows.net`` from ``credential`` (any azure-core
``TokenCredential``; entraflow's ``DefaultCredential`` when omitted), fetched anew
for every connection: the credential caches and refreshes it, so reconnecting is
how a long job keeps going after a session ends at its token's expiry.
``application_name`` defaults to the run id (``ENTRAFLOW_RUN_ID``), which the
gate's audit log records beside the Blob reads of the same run.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional

if "tensorflow" in sys.modules and "psycopg" not in sys.modules:
    # Loaded after TensorFlow, libpq's TLS aborts the process on its first connection
    # (TensorFlow's bundled BoringSSL takes over its OpenSSL symbols). Refuse clearly.
    raise ImportError(
        "import entraflow.sql, entraflow.tensorflow or psycopg before tensorflow: libpq loaded after "
        "TensorFlow crashes on its first TLS connection"
    )

import psycopg

__all__ = ["OSSRDBMS_SCOPE", "EntraConnection", "connect", "describe"]

OSSRDBMS_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"


def _default_credential() -> Any:
    from entraflow.identity import DefaultCredential

    return DefaultCredential()


class EntraConnection(psycopg.Connection):
    """A ``psycopg.Connection`` whose password is a fresh Entra token.

    ``EntraConnection.connect(conninfo, credential=..., **kwargs)`` is what
    :func:`connect` calls; pass the class as ``connection_class`` to a
    ``psycopg_pool.ConnectionPool`` (with ``kwargs={"credential": ...}``) and every
    connection the pool opens gets its own current token.
    """

    @classmethod
    def connect(cls, conninfo: str = "", *, credential: Any = None, **kwargs: Any) -> "EntraConnection":
        """Connects with a current token from ``credential`` as the password."""
        if "password" in kwargs:
            raise TypeError("connect() takes no password: the password is the credential's token")
        params = psycopg.conninfo.conninfo_to_dict(conninfo, **kwargs)
        if not (params.get("user") or os.environ.get("PGUSER")):
            raise TypeError(
                "connect() needs user=: the Entra principal's name (a user's UPN, an application's or "
                "managed identity's display name, or a group's name), or PGUSER in the environment"
            )
        credential = credential if credential is not None else _default_credential()
        kwargs["password"] = credential.get_token(OSSRDBMS_SCOPE).token
        run_id = os.environ.get("ENTRAFLOW_RUN_ID")
        if run_id and "application_name" not in params and not os.environ.get("PGAPPNAME"):
            kwargs["application_name"] = run_id
        return super().connect(conninfo, **kwargs)


def connect(conninfo: str = "", *, credential: Any = None, **kwargs: Any) -> EntraConnection:
    """A psycopg connection signed in with the credential's token (see the module doc).

    Every keyword psycopg takes is passed on, except ``password``, which is refused:
    the token is the password.
    """
    return EntraConnection.connect(conninfo, credential=credential, **kwargs)


def describe(conn: psycopg.Connection, query: str, params: Optional[Any] = None) -> list[tuple[str, int]]:
    """The (name, type oid) of each column ``query`` returns, without running it whole."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM ({query}) AS q LIMIT 0", params)
        if cur.description is None:
            raise ValueError("the query returns no rows (give a SELECT, VALUES or TABLE query)")
        return [(c.name, c.type_code) for c in cur.description]

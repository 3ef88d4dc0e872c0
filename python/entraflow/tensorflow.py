"""TensorFlow over ``az://`` with Entra ID identity: importing this module registers
entraflow's filesystem plugin (Rust, inside ``entraflow._native``) once per process.

    import entraflow.tensorflow  # noqa: F401
    ds = tf.data.TFRecordDataset(tf.io.gfile.glob("az://account/container/train-*"))

Identity comes from the environment, as azure-identity reads it (workload identity,
managed identity, a service principal, an earlier ``entraflow login``); tokens are
cached and refreshed in Rust. Every request carries the run id (``ENTRAFLOW_RUN_ID``,
or one generated per process) so the audit log ties each read to the training run.
Use :func:`register` before any ``az://`` access to choose the run id or the scheme.

Labels and features in PostgreSQL come through :func:`sql_dataset`, signed in with
the same identity (see :mod:`entraflow.sql`).
"""

from __future__ import annotations

import os
import threading
from typing import Any, Optional

import numpy as np

# libpq (psycopg) must be loaded before TensorFlow: otherwise TensorFlow's bundled
# BoringSSL takes over libpq's OpenSSL symbols and the first TLS connection to
# PostgreSQL aborts the process ("free(): invalid pointer").
try:
    import psycopg  # noqa: F401
except ImportError:  # PostgreSQL support is optional
    pass

import tensorflow as tf

from entraflow import _native

__all__ = ["register", "scheme", "sql_dataset"]

_lock = threading.Lock()
_registered: Optional[str] = None
_ALTERNATIVE = "azent"


def register(*, run_id: Optional[str] = None, scheme: Optional[str] = None) -> str:
    """Registers the plugin (idempotent) and returns the scheme it serves.

    ``run_id`` tags every request for the audit log. ``scheme`` defaults to ``az``;
    if another plugin (tensorflow-io) already owns ``az``, ``azent`` is used instead
    and a warning says so.
    """
    global _registered
    with _lock:
        if _registered is not None:
            if run_id and os.environ.get("ENTRAFLOW_RUN_ID") != run_id:
                raise RuntimeError(
                    f"the az:// plugin is already registered with run id {os.environ.get('ENTRAFLOW_RUN_ID')!r}; "
                    "call entraflow.tensorflow.register(run_id=...) before the first az:// access"
                )
            return _registered
        if run_id:
            os.environ["ENTRAFLOW_RUN_ID"] = run_id
        wanted = scheme or os.environ.get("ENTRAFLOW_TF_SCHEME") or "az"
        os.environ["ENTRAFLOW_TF_SCHEME"] = wanted
        try:
            tf.experimental.register_filesystem_plugin(_native.__file__)
        except tf.errors.OpError as err:
            if "already" not in str(err).lower() or scheme is not None:
                raise
            import warnings

            warnings.warn(
                f"the '{wanted}' scheme is already registered (tensorflow-io?); entraflow serves "
                f"'{_ALTERNATIVE}://' instead. Set ENTRAFLOW_TF_SCHEME to choose another name.",
                stacklevel=2,
            )
            os.environ["ENTRAFLOW_TF_SCHEME"] = wanted = _ALTERNATIVE
            tf.experimental.register_filesystem_plugin(_native.__file__)
        _registered = wanted
        return wanted


def scheme() -> Optional[str]:
    """The registered scheme, or None before registration."""
    return _registered


# PostgreSQL type oids and the dtype each column becomes.
_SQL_DTYPES = {
    16: (tf.bool, np.bool_),  # bool
    20: (tf.int64, np.int64),  # int8
    21: (tf.int64, np.int64),  # int2
    23: (tf.int64, np.int64),  # int4
    700: (tf.float32, np.float32),  # float4
    701: (tf.float64, np.float64),  # float8
    1700: (tf.float64, np.float64),  # numeric
    25: (tf.string, object),  # text
    1043: (tf.string, object),  # varchar
    1042: (tf.string, object),  # bpchar
    19: (tf.string, object),  # name
    17: (tf.string, object),  # bytea
}


def sql_dataset(
    query: str,
    params: Optional[Any] = None,
    *,
    batch_size: int = 1024,
    credential: Any = None,
    conninfo: str = "",
    **connect_kwargs: Any,
) -> tf.data.Dataset:
    """The rows of a PostgreSQL query as a ``tf.data.Dataset`` of batches: each element
    a dict from column name to a 1-D tensor of up to ``batch_size`` values.

    The result is streamed, never held whole: one ``COPY (query) TO STDOUT`` in
    binary, read ``batch_size`` rows at a time. Being one statement, it runs to its
    end even if the token expires meanwhile (the SQL gate ends a session at its
    token's expiry only between statements); each pass over the dataset connects
    again with a current token. ``params`` are bound by psycopg (``%s`` placeholders).
    Connection settings are :func:`entraflow.sql.connect`'s. Columns must be
    boolean, integer, floating point, numeric, text or bytea and never NULL; cast
    others in the query (``ts::text``, ``extract(epoch FROM ts)``).
    """
    from entraflow import sql

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")

    def connect() -> Any:
        return sql.connect(conninfo, credential=credential, **connect_kwargs)

    with connect() as conn:
        columns = sql.describe(conn, query, params)
    kinds = []
    for name, oid in columns:
        if oid not in _SQL_DTYPES:
            raise TypeError(
                f"column {name!r} has a PostgreSQL type (oid {oid}) that has no TensorFlow dtype here; "
                f"cast it in the query, e.g. {name}::text or {name}::float8"
            )
        kinds.append(_SQL_DTYPES[oid])
    names = [name for name, _ in columns]
    signature = {name: tf.TensorSpec(shape=(None,), dtype=dtype) for name, (dtype, _) in zip(names, kinds)}

    def batch(values: list[list[Any]]) -> dict[str, np.ndarray]:
        out = {}
        for name, (_, np_type), column in zip(names, kinds, values):
            if any(v is None for v in column):
                raise ValueError(f"column {name!r} has NULL values; give a default in the query (COALESCE)")
            out[name] = np.array(column, dtype=np_type)
        return out

    def batches():
        with connect() as conn, conn.cursor() as cur:
            with cur.copy(f"COPY ({query}) TO STDOUT (FORMAT BINARY)", params) as copy:
                copy.set_types([oid for _, oid in columns])
                values: list[list[Any]] = [[] for _ in names]
                for row in copy.rows():
                    for column, value in zip(values, row):
                        column.append(value)
                    if len(values[0]) == batch_size:
                        yield batch(values)
                        values = [[] for _ in names]
                if values[0]:
                    yield batch(values)

    return tf.data.Dataset.from_generator(batches, output_signature=signature)


register()

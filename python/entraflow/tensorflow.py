"""TensorFlow over ``az://`` with Entra ID identity: importing this module registers
entraflow's filesystem plugin (Rust, inside ``entraflow._native``) once per process.

    import entraflow.tensorflow  # noqa: F401
    ds = tf.data.TFRecordDataset(tf.io.gfile.glob("az://account/container/train-*"))

Identity comes from the environment, as azure-identity reads it (workload identity,
managed identity, a service principal, an earlier ``entraflow login``); tokens are
cached and refreshed in Rust. Every request carries the run id (``ENTRAFLOW_RUN_ID``,
or one generated per process) so the audit log ties each read to the training run.
Use :func:`register` before any ``az://`` access to choose the run id or the scheme.
"""

from __future__ import annotations

import os
import threading
from typing import Optional

import tensorflow as tf

from entraflow import _native

__all__ = ["register", "scheme"]

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


register()

"""Train a digits classifier from az:// TFRecord shards — plain Keras and tf.data.

The job carries no secret: its identity is the pod's workload identity
(AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_AUTHORITY_HOST, AZURE_FEDERATED_TOKEN_FILE),
exchanged for short-lived Entra tokens by entraflow and refreshed as they expire.
The only entraflow line is the import that registers the az:// filesystem. With
``--manifest`` the shards are looked up in PostgreSQL (``demo.shards``) through the
SQL gate, signed in with the same identity, instead of listed by glob.

    python examples/train.py --data 'az://entraflowlocal/project-a/digits/train-*' \
        --out az://entraflowlocal/project-a/models/run-1 --epochs 5

With TF_CONFIG set (one process per worker), training runs under
MultiWorkerMirroredStrategy; every worker exchanges its own token.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import entraflow.tensorflow  # noqa: F401  registers az:// with this process's identity
import tensorflow as tf

FEATURES = {
    "image": tf.io.FixedLenFeature([64], tf.float32),
    "label": tf.io.FixedLenFeature([], tf.int64),
}


def parse(record):
    example = tf.io.parse_single_example(record, FEATURES)
    return example["image"] / 16.0, example["label"]


def manifest() -> list[str]:
    """This run's shards, as the staging job listed them in PostgreSQL."""
    import psycopg

    from entraflow.sql import connect

    try:
        with connect() as conn:
            rows = conn.execute("SELECT path FROM demo.shards WHERE run_id = %s ORDER BY path",
                                (os.environ["ENTRAFLOW_RUN_ID"],)).fetchall()
    except psycopg.errors.InsufficientPrivilege as denied:  # a missing GRANT, named by PostgreSQL
        raise PermissionError(str(denied).strip()) from None
    return [path for (path,) in rows]


def dataset(pattern: str, batch_size: int, from_manifest: bool) -> tf.data.Dataset:
    files = manifest() if from_manifest else tf.io.gfile.glob(pattern)
    if not files:
        sys.exit(f"no training shards match {pattern}")
    return (
        tf.data.TFRecordDataset(files, num_parallel_reads=min(4, len(files)))
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE)
        .shuffle(2048, seed=7)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def build_model() -> tf.keras.Model:
    model = tf.keras.Sequential([
        tf.keras.Input(shape=(64,)),
        tf.keras.layers.Dense(128, activation="relu"),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


class SaveCheckpoint(tf.keras.callbacks.Callback):
    """A checkpoint after every epoch, written through the same identity."""

    def __init__(self, manager: tf.train.CheckpointManager):
        super().__init__()
        self.manager = manager

    def on_epoch_end(self, epoch, logs=None):
        self.manager.save(checkpoint_number=epoch + 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="glob of TFRecord shards, e.g. az://acct/container/prefix/*")
    parser.add_argument("--out", required=True, help="where the model and checkpoints go")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--metrics", help="local JSON file for the training curve")
    parser.add_argument("--manifest", action="store_true",
                        help="take the shard list from PostgreSQL's demo.shards (PG* variables say where)")
    args = parser.parse_args()

    distributed = "TF_CONFIG" in os.environ
    strategy = tf.distribute.MultiWorkerMirroredStrategy() if distributed else tf.distribute.get_strategy()
    chief = not distributed or json.loads(os.environ["TF_CONFIG"])["task"]["index"] == 0

    try:
        with strategy.scope():
            model = build_model()
        data = dataset(args.data, args.batch_size * strategy.num_replicas_in_sync, args.manifest)
        # Saving is collective: every worker saves, only the chief's copy is kept.
        out = args.out if chief else tempfile.mkdtemp(prefix="worker-")
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), f"{out}/checkpoints", max_to_keep=2)
        history = model.fit(data, epochs=args.epochs, callbacks=[SaveCheckpoint(manager)], verbose=1 if chief else 0)
        model.save(f"{out}/model.keras")
    except tf.errors.PermissionDeniedError as denied:
        print(f"permission denied: {denied.message}", file=sys.stderr)
        return 3
    except PermissionError as denied:  # PostgreSQL's 42501, through the SQL gate
        print(f"permission denied: {denied}", file=sys.stderr)
        return 3
    except tf.errors.UnauthenticatedError as unauthenticated:
        print(f"not authenticated: {unauthenticated.message}", file=sys.stderr)
        return 4

    if chief and args.metrics:
        with open(args.metrics, "w") as f:
            json.dump({k: [float(x) for x in v] for k, v in history.history.items()}, f)
    if chief:
        print(f"final accuracy {history.history['accuracy'][-1]:.3f}; model saved to {args.out}/model.keras")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Stage scikit-learn's digits (shipped inside the package: nothing is downloaded)
as TFRecord shards in Blob storage, with a progress bar.

Runs as the platform team's data-staging identity, whatever credential the
environment provides (entraflow's DefaultCredential chain). With ``--manifest`` it
also lists the shards in PostgreSQL (``demo.shards``, through the SQL gate, signed
in with the same identity), where the trainers look them up.

    python examples/stage_digits.py --dest az://entraflowlocal/project-a/digits --shards 8
"""

from __future__ import annotations

import argparse
import os

import entraflow.tensorflow  # noqa: F401  registers az:// (and loads psycopg before TensorFlow)
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits
from tqdm import tqdm


def example(image: np.ndarray, label: int) -> bytes:
    features = {
        "image": tf.train.Feature(float_list=tf.train.FloatList(value=image.astype(np.float32).tolist())),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", required=True, help="az:// prefix for the shards")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--limit", type=int, default=0, help="stage only this many examples (tests)")
    parser.add_argument("--manifest", action="store_true",
                        help="list the shards in PostgreSQL's demo.shards (PG* variables say where)")
    args = parser.parse_args()

    digits = load_digits()
    images, labels = digits.data, digits.target
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    order = np.random.default_rng(7).permutation(len(labels))
    shards = np.array_split(order, args.shards)
    staged = []
    with tqdm(total=len(labels), unit="ex", desc="staging digits") as progress:
        for i, shard in enumerate(shards):
            path = f"{args.dest}/train-{i:05d}-of-{args.shards:05d}.tfrecord"
            with tf.io.TFRecordWriter(path) as writer:
                for j in shard:
                    writer.write(example(images[j], labels[j]))
            staged.append((path, len(shard)))
            progress.update(len(shard))
    print(f"staged {len(labels)} examples in {args.shards} shards under {args.dest}")
    if args.manifest:
        from entraflow.sql import connect

        run_id = os.environ["ENTRAFLOW_RUN_ID"]
        with connect() as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO demo.shards (run_id, path, examples) VALUES (%s, %s, %s)",
                            [(run_id, path, n) for path, n in staged])
        print(f"listed {len(staged)} shards in PostgreSQL (demo.shards) for run {run_id}")


if __name__ == "__main__":
    main()

"""Stage scikit-learn's digits (shipped inside the package: nothing is downloaded)
as TFRecord shards in Blob storage, with a progress bar.

Runs as the platform team's data-staging identity, whatever credential the
environment provides (entraflow's DefaultCredential chain).

    python examples/stage_digits.py --dest az://entraflowlocal/project-a/digits --shards 8
"""

from __future__ import annotations

import argparse

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits
from tqdm import tqdm

import entraflow.tensorflow  # noqa: F401  registers az://


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
    args = parser.parse_args()

    digits = load_digits()
    images, labels = digits.data, digits.target
    if args.limit:
        images, labels = images[: args.limit], labels[: args.limit]
    order = np.random.default_rng(7).permutation(len(labels))
    shards = np.array_split(order, args.shards)
    with tqdm(total=len(labels), unit="ex", desc="staging digits") as progress:
        for i, shard in enumerate(shards):
            path = f"{args.dest}/train-{i:05d}-of-{args.shards:05d}.tfrecord"
            with tf.io.TFRecordWriter(path) as writer:
                for j in shard:
                    writer.write(example(images[j], labels[j]))
            progress.update(len(shard))
    print(f"staged {len(labels)} examples in {args.shards} shards under {args.dest}")


if __name__ == "__main__":
    main()

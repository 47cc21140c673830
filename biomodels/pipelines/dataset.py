"""The prepared data set on disk (`dataset.json` beside the shards) and the tf.data
pipelines that feed training and evaluation from it."""

import os

from biomodels.config import read_json
from biomodels.errors import InputError
from biomodels.pipelines import tfrecord

MANIFEST = "dataset.json"


def read_manifest(data_dir):
    """The manifest of a prepared data set, checked for the schema and shard files, with
    `data_dir` (where it was read from) added so that a task can read other splits."""
    path = os.path.join(data_dir, MANIFEST)
    if not os.path.isfile(path):
        raise InputError(path, "not found: prepare the data with `python -m biomodels.prepare` first")
    manifest = read_json(path)
    if manifest.get("schema_version") != tfrecord.SCHEMA_VERSION:
        raise InputError(path, f"schema version {manifest.get('schema_version')} is not {tfrecord.SCHEMA_VERSION}; prepare the data again")
    for split, info in manifest["splits"].items():
        for shard in info["shards"]:
            if not os.path.isfile(os.path.join(data_dir, shard)):
                raise InputError(os.path.join(data_dir, shard), f"shard of split {split!r} is missing")
    manifest["data_dir"] = os.path.abspath(data_dir)
    return manifest


def examples(data_dir, manifest, split):
    """The decoded examples of one split, in file order."""
    import tensorflow as tf

    if split not in manifest["splits"] or not manifest["splits"][split]["shards"]:
        raise InputError(os.path.join(data_dir, MANIFEST), f"has no examples in split {split!r}")
    files = [os.path.join(data_dir, shard) for shard in manifest["splits"][split]["shards"]]
    records = tf.data.TFRecordDataset(files)
    return records.map(tfrecord.example_decoder(manifest["features"]), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def training_dataset(task, config, data_dir, manifest, batch_size, seed, split="train"):
    """Shuffled, repeated, augmented and batched (inputs, targets) for `model.fit`.

    Augmentation gets a stateless seed per element from (seed, element index), so a
    seeded run sees the same augmented batches every time.
    """
    import tensorflow as tf

    count = manifest["splits"][split]["count"]
    data = examples(data_dir, manifest, split).cache()
    data = data.shuffle(min(count, 2048), seed=seed, reshuffle_each_iteration=True).repeat()
    data = data.enumerate()

    def augment_and_split(index, example):
        element_seed = tf.stack([tf.cast(seed, tf.int64), index])
        return task.model_io(task.augment(example, element_seed, config), config)

    data = data.map(augment_and_split, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return _shard_by_example(task.batch(data, batch_size, training=True).prefetch(tf.data.AUTOTUNE))


def evaluation_dataset(task, config, data_dir, manifest, batch_size, split):
    """(inputs, targets) batches of a split, unshuffled and unaugmented."""
    import tensorflow as tf

    data = examples(data_dir, manifest, split)
    data = data.map(lambda example: task.model_io(example, config), num_parallel_calls=tf.data.AUTOTUNE)
    return _shard_by_example(task.batch(data, batch_size, training=False).prefetch(tf.data.AUTOTUNE))


def _shard_by_example(data):
    """Under several workers, split by element rather than by file: a small data set
    has fewer shard files than workers."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return data.with_options(options)

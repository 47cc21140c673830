"""The TFRecord schema: one `tf.train.Example` per example, each array stored as a
serialized TensorProto (what `tf.io.serialize_tensor` writes) beside an int64 shape
feature, in uncompressed shards written under temporary names and renamed when whole.
"""

import os

import numpy as np

SCHEMA_VERSION = 1
SHARD_SUFFIX = ".tfrecord"


def encode_example(arrays):
    """Serialize a dict of numpy arrays into one `tf.train.Example` byte string."""
    import tensorflow as tf

    feature = {}
    for name, array in arrays.items():
        array = np.asarray(array)
        proto = tf.make_tensor_proto(array)
        feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[proto.SerializeToString()]))
        feature[f"{name}/shape"] = tf.train.Feature(int64_list=tf.train.Int64List(value=list(array.shape)))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def feature_spec_of(arrays):
    """The manifest's description of an example: name -> dtype and rank."""
    return {name: {"dtype": np.asarray(a).dtype.name, "rank": np.asarray(a).ndim} for name, a in arrays.items()}


def example_decoder(feature_spec):
    """A TensorFlow function turning a serialized example back into a dict of tensors."""
    import tensorflow as tf

    description = {}
    for name in feature_spec:
        description[name] = tf.io.FixedLenFeature([], tf.string)
        description[f"{name}/shape"] = tf.io.VarLenFeature(tf.int64)

    def decode(serialized):
        parsed = tf.io.parse_single_example(serialized, description)
        example = {}
        for name, spec in feature_spec.items():
            tensor = tf.io.parse_tensor(parsed[name], out_type=tf.dtypes.as_dtype(spec["dtype"]))
            shape = tf.sparse.to_dense(parsed[f"{name}/shape"])
            tensor = tf.reshape(tensor, shape)
            example[name] = tf.ensure_shape(tensor, [None] * spec["rank"])
        return example

    return decode


def shard_name(split, index, count):
    return f"{split}-{index:05d}-of-{count:05d}{SHARD_SUFFIX}"


def commit_shards(output_dir, split, temporary_paths):
    """Rename a split's shards, written under temporary names, to
    `split-NNNNN-of-NNNNN.tfrecord` in their order; returns the new names."""
    names = [shard_name(split, i, len(temporary_paths)) for i in range(len(temporary_paths))]
    for path, name in zip(temporary_paths, names):
        os.replace(path, os.path.join(output_dir, name))
    return names


class SplitWriter:
    """Writes one split's examples into shards of at most `examples_per_shard`.

    Shards are written under hidden temporary names (with `tag` in them, so several
    writers can share a folder); `close()` gives their paths, `commit()` renames them to
    `split-NNNNN-of-NNNNN.tfrecord` once the count is known, `discard()` deletes them.
    """

    def __init__(self, output_dir, split, examples_per_shard=1000, tag=""):
        self.output_dir = output_dir
        self.split = split
        self.examples_per_shard = examples_per_shard
        self.tag = tag
        self.count = 0
        self._temporary = []
        self._writer = None

    def write(self, serialized):
        import tensorflow as tf

        if self.count % self.examples_per_shard == 0:
            self._close_writer()
            path = os.path.join(self.output_dir, f".{self.split}-{self.tag}{len(self._temporary):05d}.tmp-{os.getpid()}")
            self._temporary.append(path)
            self._writer = tf.io.TFRecordWriter(path)
        self._writer.write(serialized)
        self.count += 1

    def close(self):
        """Close the shard being written; returns the temporary paths of all its shards,
        which are then the caller's to commit (`commit_shards`) or remove."""
        self._close_writer()
        paths, self._temporary = self._temporary, []
        return paths

    def commit(self):
        """Rename the shards to their final names; returns those names."""
        return commit_shards(self.output_dir, self.split, self.close())

    def discard(self):
        self._close_writer()
        for path in self._temporary:
            if os.path.exists(path):
                os.remove(path)
        self._temporary = []

    def _close_writer(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

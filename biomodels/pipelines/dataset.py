"""The prepared data set on disk (`dataset.json` beside the shards) and the tf.data
pipelines that feed training and evaluation from it."""

import logging
import os

from biomodels.errors import InputError
from biomodels.pipelines import tfrecord
from biomodels.pipelines.manifest import MANIFEST

log = logging.getLogger("biomodels")


def examples(manifest, split, portion=None):
    """The decoded examples of one split of a data set read from disk (a `Manifest`
    with its `data_dir`), in file order; `portion` (start, count) keeps that range of
    them (the records before it are skipped undecoded)."""
    import tensorflow as tf

    if split not in manifest.splits or not manifest.splits[split].shards:
        raise InputError(os.path.join(manifest.data_dir, MANIFEST), f"has no examples in split {split!r}")
    records = tf.data.TFRecordDataset(manifest.shard_paths(split))
    if portion is not None:
        records = records.skip(portion[0]).take(portion[1])
    return records.map(tfrecord.example_decoder(manifest.features), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def kept_count(task, split="train"):
    """How many of a split's examples training uses (those `keep_for_training` keeps):
    one pass decoding the split."""
    import tensorflow as tf

    kept = examples(task.manifest, split).filter(task.keep_for_training)
    return int(kept.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))


def split_bytes(manifest, split):
    """The bytes of a split's shards: uncompressed, so about what it takes in memory."""
    return sum(os.path.getsize(path) for path in manifest.shard_paths(split))


def default_cache_bytes():
    """A quarter of the machine's memory: what training may hold of its split."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4


def training_dataset(task, seed, *, steps_per_epoch, first_epoch=0, cache_bytes=None, split="train", batch_size=None,
                     one_pass=False):
    """Augmented batches for `model.fit` of a task bound to its configuration and
    prepared data set (`Task.bind`), `steps_per_epoch` per epoch from `first_epoch` on, of
    `batch_size` examples (default: the configuration's). With `one_pass`, an epoch is
    each kept example once, the last batch smaller: `steps_per_epoch` must then be
    ceil(kept_count / batch_size).

    Each epoch's batches depend on (seed, epoch) alone: the epoch's shuffle order comes
    from them, and each element's stateless augmentation seed from (seed, epoch,
    position in the epoch). A run resumed at epoch k therefore sees exactly the batches
    an uninterrupted run sees from epoch k.

    The split is cached in memory when its shards fit `cache_bytes` (default: a quarter
    of the machine's memory); otherwise each epoch reads the shards again, interleaved in
    a seeded order and shuffled through a buffer of bounded size. A task that gathers
    batches from arrays (`Task.training_arrays`: ccp, lch) holds a split that fits as those
    arrays instead, and each epoch's batches still depend on (seed, epoch) alone.
    """
    import tensorflow as tf

    manifest, batch_size = task.manifest, batch_size or task.config.batch_size
    arrays = None if one_pass else _training_arrays(task, split, cache_bytes, batch_size)
    if arrays is not None:
        return _with_pipeline_options(_batches_from_memory(task, arrays, seed, steps_per_epoch, first_epoch, batch_size))
    source, buffer = _epoch_source(manifest, split, cache_bytes)
    seed_value, seed = seed, tf.constant(seed, tf.int64)

    def one_epoch(epoch):
        # TensorFlow pairs an op's seed with the graph's seed and, when the graph seed is
        # 0 (--seed=0), compares the op seed with 0 in Python, which a tensor cannot do:
        # give this function's graph a seed of its own
        tf.compat.v1.get_default_graph().seed = 1 + abs(seed_value)
        epoch_seed = seed * 1_000_003 + epoch
        elements = source(epoch_seed)
        elements = elements.filter(task.keep_for_training)
        elements = elements.shuffle(buffer, seed=epoch_seed, reshuffle_each_iteration=True)
        elements = (elements if one_pass else elements.repeat()).enumerate()

        def augment_and_split(index, example):
            augmented = task.augment(example, tf.stack([seed, epoch * 2**32 + index]))
            return augmented if task.model_io_on_batches else _model_io(task, training=True)(augmented)

        elements = elements.map(augment_and_split, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return _batched(task, elements, batch_size, training=True, whole=not one_pass).take(steps_per_epoch)

    epochs = tf.data.Dataset.range(first_epoch, 2**40).flat_map(one_epoch)
    return _with_pipeline_options(epochs.prefetch(tf.data.AUTOTUNE))


def _training_arrays(task, split, cache_bytes, batch_size):
    """`Task.training_arrays` of the kept examples of a split whose arrays fit
    `cache_bytes` (default: a quarter of the machine's memory; the arrays take the shards'
    bytes times `Task.training_arrays_scale`); None when they do not fit, for a task that
    streams its examples, or when a pass of them holds no whole batch (fewer examples than
    a batch, or for ccp no bucket of lengths filling one: the passes would be searched for
    a batch forever; the streamed split repeats examples until batches fill)."""
    import tensorflow as tf

    if split_bytes(task.manifest, split) * task.training_arrays_scale > _cache_budget(cache_bytes):
        return None
    arrays = task.training_arrays(examples(task.manifest, split).filter(task.keep_for_training))
    # a pass's batches are as many whatever its order (whole batches of each bucket)
    if arrays is None or task.epoch_batches(arrays, tf.constant([0, 0], tf.int64), batch_size).cardinality() < 1:
        return None
    return arrays


def _batches_from_memory(task, arrays, seed, steps_per_epoch, first_epoch, batch_size):
    """`training_dataset` from a split held in memory (`Task.training_arrays`): epoch k
    is `steps_per_epoch` batches of passes `Task.epoch_batches` gathers, pass p of it
    ordered and augmented from the stateless seed (seed, k) folded with p."""
    import tensorflow as tf

    seed = tf.constant(seed, tf.int64)

    def one_epoch(epoch):
        def one_pass(index):
            return task.epoch_batches(arrays, tf.random.experimental.stateless_fold_in(tf.stack([seed, epoch]), index),
                                      batch_size)

        return tf.data.Dataset.range(2**40).flat_map(one_pass).take(steps_per_epoch)

    return tf.data.Dataset.range(first_epoch, 2**40).flat_map(one_epoch).prefetch(tf.data.AUTOTUNE)


def shuffled_rows(count, seed, batch_size):
    """[batches, batch_size] positions of `count` examples in an order shuffled from the
    stateless [2] `seed`, whole batches only (the remainder waits for another pass)."""
    import tensorflow as tf

    order = tf.random.experimental.stateless_shuffle(tf.range(count), seed)
    return tf.reshape(order[:tf.size(order) // batch_size * batch_size], [-1, batch_size])


def gathered_batches(rows, gather):
    """A `Task.epoch_batches` pass: gather(index, positions) for each row of `rows`, in order."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(rows).enumerate().map(gather, num_parallel_calls=tf.data.AUTOTUNE,
                                                                    deterministic=True)


def _cache_budget(cache_bytes):
    return default_cache_bytes() if cache_bytes is None else cache_bytes


def _epoch_source(manifest, split, cache_bytes):
    """(source, shuffle buffer) for `training_dataset`: source(epoch_seed) gives a split's
    decoded examples for one epoch, from memory when the split fits `cache_bytes`
    (default: a quarter of the machine's memory), otherwise read again from its shards,
    interleaved in an order seeded by the epoch."""
    import tensorflow as tf

    count, size = manifest.count(split), split_bytes(manifest, split)
    budget = _cache_budget(cache_bytes)
    if size <= budget:
        cached = examples(manifest, split).cache()
        log.info("training split (%d examples, %.1f MB) cached in memory", count, size / 1e6)
        return (lambda epoch_seed: cached), min(count, 2048)
    files = manifest.shard_paths(split)
    decode = tfrecord.example_decoder(manifest.features)
    element_bytes = max(1, size // max(count, 1))
    buffer = int(min(count, 2048, max(16, budget // 4 // element_bytes)))
    log.info("training split (%d examples, %.1f MB) streamed from %d shard(s), shuffle buffer %d: "
             "over the cache budget of %.1f MB", count, size / 1e6, len(files), buffer, budget / 1e6)

    def streamed(epoch_seed):
        order = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=epoch_seed)
        elements = order.interleave(tf.data.TFRecordDataset, cycle_length=min(4, len(files)), block_length=1,
                                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return elements.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    return streamed, buffer


def evaluation_dataset(task, split, batch_size=None, portion=None):
    """(inputs, targets) batches of a split of the prepared data set a task is bound to,
    unshuffled and unaugmented, of `batch_size` examples (default: the configuration's);
    `portion` (start, count) keeps that range of the split's examples."""
    import tensorflow as tf

    batch_size = batch_size or task.config.batch_size
    data = examples(task.manifest, split, portion)
    if not task.model_io_on_batches:
        data = data.map(task.model_io, num_parallel_calls=tf.data.AUTOTUNE)
    return _with_pipeline_options(_batched(task, data, batch_size, training=False).prefetch(tf.data.AUTOTUNE))


def _batched(task, elements, batch_size, training, whole=True):
    """`task.batch` of model_io elements; of decoded examples, then model_io on each batch,
    for a task whose model_io takes batches (`Task.model_io_on_batches`)."""
    import tensorflow as tf

    batches = task.batch(elements, batch_size, training=training, whole=whole)
    if task.model_io_on_batches:
        batches = batches.map(_model_io(task, training), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return batches


def _model_io(task, training):
    """`task.model_io`; for training a task whose step reads no targets
    (`Task.training_reads_targets`), (inputs,) alone, in the same function so that
    tf.data prunes the ops only the targets need."""
    if training and not task.training_reads_targets:
        return lambda example: (task.model_io(example)[0],)
    return task.model_io


def _with_pipeline_options(data):
    """The options of the training and evaluation pipelines. Under several workers they
    split by element rather than by file: a small data set has fewer shard files than
    workers. tf.data's autotuning is off: with it, deleting an iterator that has run a
    while (fit's, when training ends) waits for the autotuner's thread to wake, up to a
    minute (measured: 17-48 s at the end of about half the ccp runs of 1,500-4,700 steps,
    TensorFlow 2.21), and on 2 cores its thread slowed ccp's steps; the AUTOTUNE maps then
    run one call a core (measured: 2 at once here)."""
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.autotune.enabled = False
    return data.with_options(options)

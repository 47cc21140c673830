"""prepare's work on the workers (or in this process): reading a batch of sources and
writing their examples into shards of their own, under hidden names in the staging
folder, with the partial sums of the training examples' statistics; and, for a data set
split example by example, writing a held shard into the splits drawn for its examples.
The driver (biomodels.prepare) decides the splits, renames the shards and writes
dataset.json.
"""

import dataclasses
import os

from biomodels.pipelines import partial_sums, tfrecord
from biomodels.pipelines.manifest import SPLITS, Source


@dataclasses.dataclass
class JobResult:
    """What one prepare job wrote and found: its shards' temporary paths and example
    counts per split, the partial sums of the training examples it wrote, and for the
    first pass its sources' records, the examples' feature spec, and (when the data set
    is split example by example) its held shard with each example's stratum and each
    source's count of examples; for the second pass, each source's examples per split."""

    shards: dict = dataclasses.field(default_factory=dict)
    counts: dict = dataclasses.field(default_factory=dict)
    train_sums: dict = dataclasses.field(default_factory=dict)
    sources: list = dataclasses.field(default_factory=list)
    feature_spec: dict = None
    held: str = None
    strata: list = dataclasses.field(default_factory=list)
    examples_per_source: list = dataclasses.field(default_factory=list)
    per_source: list = dataclasses.field(default_factory=list)


class _Writers:
    """One job's shard writers, one per split, with their counts and the partial sums of
    the training examples, added a batch at a time so memory stays bounded."""

    BATCH = 64

    def __init__(self, task, staging, tag):
        self.task = task
        self.writers = {split: tfrecord.SplitWriter(staging, split, tag=tag) for split in SPLITS}
        self.train, self.sums = [], []

    def write(self, split, serialized, example):
        self.writers[split].write(serialized)
        if split == "train":
            self.train.append(example)
            if len(self.train) >= self.BATCH:
                self._sum()

    def _sum(self):
        if self.train:
            self.sums.append(self.task.statistics_sums(self.train))
            self.train = []

    def close(self, result):
        self._sum()
        result.train_sums = partial_sums.add(self.sums)
        result.counts = {split: writer.count for split, writer in self.writers.items()}
        result.shards = {split: writer.close() for split, writer in self.writers.items()}
        return result

    def discard(self):
        for writer in self.writers.values():
            writer.discard()


class SourcesJob:
    """prepare's first pass over a batch of sources (all of them, or one on a cluster):
    each read once and its examples written to the shards of their splits, or, when the
    data set is split example by example, to one held shard with their strata."""

    def __init__(self, task_name, config, staging, *, split_by, split_of_group, fractions, show_progress):
        self.task_name, self.config, self.staging = task_name, config, staging
        self.split_by, self.split_of_group, self.fractions = split_by, split_of_group, fractions
        self.show_progress = show_progress

    def __call__(self, item):
        from biomodels import tasks
        from biomodels.report import progress_bar

        index, sources = item
        task = tasks.get(self.task_name).bind(self.config)
        writers, result = _Writers(task, self.staging, f"{index:05d}-"), JobResult()
        held = tfrecord.SplitWriter(self.staging, "held", tag=f"{index:05d}-", examples_per_shard=2 ** 62)
        bar = progress_bar(len(sources), "reading sources") if self.show_progress else None
        try:
            for done, source in enumerate(sources, start=1):
                self._read(task, source, writers, held, result)
                if bar:
                    bar.update(done)
        except BaseException:
            writers.discard()
            held.discard()
            raise
        result.held = (held.close() or [None])[0]
        return writers.close(result)

    def _read(self, task, source, writers, held, result):
        by_group = self.split_of_group is not None
        info, examples = task.read_source(source)
        examples = list(examples) if not by_group else examples
        result.sources.append(Source(source.name, source.group, tuple(os.path.abspath(p) for p in source.paths),
                                     self.split_of_group[source.group] if by_group else "all", dict(info)))
        count = 0
        for index, example in enumerate(examples):
            result.feature_spec = result.feature_spec or tfrecord.feature_spec_of(example)
            serialized = tfrecord.encode_example(example)
            count += 1
            if self.split_by == "example":
                held.write(serialized)
                result.strata.append(task.stratum(example))
                continue
            split = (self.split_of_group[source.group] if by_group
                     else _contiguous_split(index, len(examples), self.fractions))
            writers.write(split, serialized, example)
        result.examples_per_source.append(count)


@dataclasses.dataclass(frozen=True)
class HeldExamples:
    """One first-pass job's held shard, the split drawn for each of its examples, and
    how many of them each of its sources gave (in order)."""

    path: str
    splits: list
    examples_per_source: list


class HeldExamplesJob:
    """prepare's second pass when the data set is split example by example: a held
    shard's examples written to the shards of the splits drawn for them; returns the
    examples per split of each source too."""

    def __init__(self, task_name, config, feature_spec):
        self.task_name, self.config, self.feature_spec = task_name, config, feature_spec

    def __call__(self, item):
        import tensorflow as tf

        from biomodels import tasks

        index, held = item
        task = tasks.get(self.task_name).bind(self.config)
        staging = os.path.dirname(held.path) if held.path else None
        result = JobResult()
        if held.path is None:
            result.per_source = [dict.fromkeys(SPLITS, 0) for _ in held.examples_per_source]
            return result
        writers, decode = _Writers(task, staging, f"{index:05d}-"), tfrecord.example_decoder(self.feature_spec)
        owners = [source for source, count in enumerate(held.examples_per_source) for _ in range(count)]
        result.per_source = [dict.fromkeys(SPLITS, 0) for _ in held.examples_per_source]
        try:
            for serialized, split, owner in zip(tf.data.TFRecordDataset(held.path).as_numpy_iterator(), held.splits,
                                                owners):
                example = {name: value.numpy() for name, value in decode(serialized).items()} if split == "train" else None
                writers.write(split, serialized, example)
                result.per_source[owner][split] += 1
        except BaseException:
            writers.discard()
            raise
        writers.close(result)
        os.remove(held.path)
        return result


def _contiguous_split(index, count, fractions):
    position = (index + 0.5) / count
    if position < fractions[0]:
        return "train"
    return "val" if position < fractions[0] + fractions[1] else "test"

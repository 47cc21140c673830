"""Prepare a data set: raw files (or the task's synthetic generator) to TFRecord shards
and `dataset.json`.

    python -m biomodels.prepare --task=cryoet --output_dir=DIR (--input=PATH | --synthetic) [--scheduler=local:4]

The split keeps each group (a tomogram, a cell…) within one split, or, for tasks that
split example by example (tracks), is stratified by class. Everything is written into a
staging folder first and moved into place only when complete; staging folders that a
killed prepare left behind are removed by the next one.

With --scheduler (biomodels.cluster) each batch of sources (four per worker, or one
source each when there are few) is one task on a Dask cluster: the worker reads them and
writes their own shards under hidden names in the staging folder, and returns the
partial sums of its training examples' statistics; this process decides the
splits (seeded, as serially), renames the shards in the sources' order, adds the sums up
and writes dataset.json last. A data set split example by example takes a second pass:
each worker's held shard is written into the splits once every example's split is drawn.
The examples and splits are those of a serial run; only the shards' layout differs.
"""

import dataclasses
import datetime
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time

import numpy as np

from biomodels import config as config_lib
from biomodels.atomic import LOCK_FILE, FolderLock
from biomodels.cluster import InProcess, map_in_order
from biomodels.errors import ConfigError, InputError
from biomodels.pipelines import partial_sums, shard_jobs, tfrecord
from biomodels.pipelines.manifest import MANIFEST, SPLITS, Manifest, Split
STAGING_PREFIX = ".prepare-"
log = logging.getLogger("biomodels")


def parse_split(text):
    """(train, val, test) fractions from '0.8,0.1,0.1'."""
    try:
        fractions = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"--split={text}: expected three numbers like 0.8,0.1,0.1") from None
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6 or fractions[0] == 0:
        raise ConfigError(f"--split={text}: expected three non-negative fractions summing to 1, train > 0")
    return fractions


def assign_groups(groups, fractions, seed):
    """{group: split}, shuffled with `seed`; every split with a non-zero fraction gets at
    least one group when there are enough groups."""
    groups = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(groups))
    wanted = [i for i, f in enumerate(fractions) if f > 0]
    counts = [int(round(len(groups) * f)) for f in fractions]
    for i in wanted[1:]:
        counts[i] = max(counts[i], 1)
    counts[0] = len(groups) - sum(counts[1:])
    names = [SPLITS[i] for i, count in enumerate(counts) for _ in range(count)]
    return {groups[index]: split for index, split in zip(order, names)}


def prepare_dataset(task, config, output_dir, *, input_path=None, synthetic=False, num_examples=None,
                    seed=0, fractions=None, show_progress=True, executor=None):
    """Write the prepared data set into `output_dir`; returns its `Manifest`. `fractions`
    default to the task's split. `executor` (biomodels.cluster; this process by default)
    runs the reading and writing: on a cluster, one task per source, the staging folder
    on a filesystem the workers share."""
    executor = executor or InProcess()
    task = task.bind(config)
    fractions = tuple(fractions or task.default_split)
    if os.path.exists(os.path.join(output_dir, MANIFEST)):
        raise InputError(output_dir, "already holds a prepared data set (dataset.json); choose another --output_dir")
    if synthetic == (input_path is not None):
        raise ConfigError("give either --input=PATH or --synthetic")
    parent = os.path.dirname(os.path.abspath(output_dir))
    os.makedirs(parent, exist_ok=True)
    _remove_abandoned_staging(parent)
    staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=parent)
    staging_lock, _ = FolderLock.acquire(staging)
    try:
        if synthetic:
            raw_dir = os.path.join(staging, "raw")
            os.makedirs(raw_dir)
            count = num_examples or task.default_synthetic_examples()
            log.info("generating %d synthetic %s examples (seed %d)", count, task.name, seed)
            task.write_synthetic(raw_dir, count, seed)
            input_path = raw_dir
        manifest = _write_shards(task, input_path, staging, seed=seed, fractions=fractions,
                                 executor=executor, show_progress=show_progress)
        manifest = dataclasses.replace(manifest, provenance={**manifest.provenance, "synthetic": bool(synthetic)})
        shutil.rmtree(os.path.join(staging, "raw"), ignore_errors=True)
        config_lib.write_json_atomic(os.path.join(staging, MANIFEST), manifest.to_json())
        os.remove(os.path.join(staging, LOCK_FILE))  # the lock stays held until release
        _move_into(staging, output_dir)
    finally:
        staging_lock.release()
        shutil.rmtree(staging, ignore_errors=True)
    return dataclasses.replace(manifest, data_dir=os.path.abspath(output_dir))


def _remove_abandoned_staging(parent):
    """Remove the staging folders that killed runs of prepare left in `parent`: those
    whose lock no live process holds (a folder without a lock is a moment old, or older
    than this rule)."""
    for name in os.listdir(parent):
        path = os.path.join(parent, name)
        if not name.startswith(STAGING_PREFIX) or not os.path.isdir(path):
            continue
        if not os.path.exists(os.path.join(path, LOCK_FILE)):
            if time.time() - os.path.getmtime(path) < 3600:
                continue
        else:
            lock, _ = FolderLock.acquire(path)
            if lock is None:
                continue
            lock.release()
        log.info("removing %s, left by a prepare that was killed", path)
        shutil.rmtree(path, ignore_errors=True)


def stratified_assignment(strata, fractions, seed):
    """The split of each example: every stratum (class) is shuffled with `seed` and cut
    by `fractions`, so each split keeps the class mix of the whole."""
    strata = np.asarray(strata)
    rng = np.random.default_rng(seed)
    assignment = np.empty(len(strata), dtype=object)
    for value in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == value))
        val_count = int(round(len(members) * fractions[1]))
        test_count = int(round(len(members) * fractions[2]))
        train_count = len(members) - val_count - test_count
        for split, chosen in zip(SPLITS, np.split(members, [train_count, train_count + val_count])):
            assignment[chosen] = split
    return assignment.tolist()


def _split_plan(task, sources, fractions, seed, input_path):
    """(how sources are split: "example", "assigned", "group" or "blocks"; {group: split}
    when whole groups go to splits)."""
    groups = [source.group for source in sources]
    assigned = {source.group: task.assigned_split(source) for source in sources}
    assigned = {group: split for group, split in assigned.items() if split}
    if assigned:
        return "assigned", {group: assigned.get(group, "train") for group in groups}
    if task.split_by_example():
        return "example", None
    if len(set(groups)) >= sum(1 for f in fractions if f > 0):
        return "group", assign_groups(groups, fractions, seed)
    log.warning("only %d group(s) in %s: splitting each one's examples in contiguous blocks", len(set(groups)), input_path)
    return "blocks", None


SPLIT_BY = {"example": "example, stratified", "assigned": "task's assignment", "group": "group",
            "blocks": "contiguous blocks within each group"}


def _write_shards(task, input_path, staging, *, seed, fractions, executor, show_progress):
    """Read every source under `input_path` and write its examples into the shards of
    their splits in `staging`, through `executor` (biomodels.cluster): in this process
    all sources are one job; on a cluster each batch of sources (`source_batches`) is
    one, writing its own shards. Returns the manifest."""
    if executor.splits_work:  # workers elsewhere: absolute paths, and checked
        input_path = os.path.abspath(input_path)
        executor.check_workers([input_path, staging])
    sources = task.find_sources(input_path)
    split_by, split_of_group = _split_plan(task, sources, fractions, seed, input_path)
    batches = source_batches(sources, executor.workers) if executor.splits_work else [sources]
    job = shard_jobs.SourcesJob(task.name, task.config, staging, split_by=split_by, split_of_group=split_of_group,
                                fractions=fractions, show_progress=show_progress and not executor.splits_work)
    read = map_in_order(executor, job, list(enumerate(batches)), "sources", show_progress)
    feature_spec = next((result.feature_spec for result in read if result.feature_spec), None)
    if feature_spec is None:
        raise InputError(input_path, "holds no examples")
    source_records = [record for result in read for record in result.sources]
    if split_by == "example":
        read = _split_held_examples(task, read, feature_spec, fractions=fractions, seed=seed, executor=executor,
                                    show_progress=show_progress)
        source_records = [dataclasses.replace(record, details={**record.details, "examples": counts})
                          for record, counts in zip(source_records, (c for result in read for c in result.per_source))]
    counts = {split: sum(result.counts.get(split, 0) for result in read) for split in SPLITS}
    if counts["train"] == 0:
        raise InputError(input_path, "no examples fell into the training split")
    splits = {split: Split(counts[split], tuple(tfrecord.commit_shards(
        staging, split, [path for result in read for path in result.shards.get(split, [])]))) for split in SPLITS}
    provenance = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "seed": seed, "split_fractions": list(fractions), "split_by": SPLIT_BY[split_by],
                  "config": config_lib.to_dict(task.config)}
    statistics = task.statistics_from_sums(partial_sums.add([result.train_sums for result in read]))
    return Manifest(task.name, splits, feature_spec, tuple(source_records), skipped=_skipped_totals(source_records),
                    provenance=provenance, data_dir=staging, statistics=statistics)


#: tasks per worker that prepare aims at: enough to balance the load, few enough that a
#: task's scheduling (about 5 ms) stays a small share of reading its sources
TASKS_PER_WORKER = 4


def source_batches(sources, workers):
    """The sources cut into consecutive batches, one task each: TASKS_PER_WORKER tasks per
    worker, a source per task once there are few enough."""
    size = max(1, math.ceil(len(sources) / (TASKS_PER_WORKER * workers)))
    return [sources[start:start + size] for start in range(0, len(sources), size)]


def _split_held_examples(task, read, feature_spec, *, fractions, seed, executor, show_progress):
    """The second pass of a data set split example by example: every example's split
    drawn over the whole data set (stratified, as serial prepare always drew it), then
    each first-pass job's held shard written into the splits' shards."""
    strata = [stratum for result in read for stratum in result.strata]
    assignment = stratified_assignment(strata, fractions, seed)
    items, start = [], 0
    for index, result in enumerate(read):
        splits = assignment[start:start + len(result.strata)]
        items.append((index, shard_jobs.HeldExamples(result.held, splits, result.examples_per_source)))
        start += len(result.strata)
    job = shard_jobs.HeldExamplesJob(task.name, task.config, feature_spec)
    return map_in_order(executor, job, items, "splitting", show_progress)


def _skipped_totals(source_records):
    """{reason: count} over the sources' own `skipped` reports."""
    totals = {}
    for record in source_records:
        for reason, count in record.skipped.items():
            totals[reason] = totals.get(reason, 0) + count
    return totals


def _move_into(staging, output_dir):
    """The committed shards and dataset.json moved from `staging` to `output_dir`; hidden
    files (what a killed and retried worker left half-written) stay and go with staging."""
    os.makedirs(output_dir, exist_ok=True)
    names = sorted(name for name in os.listdir(staging) if not name.startswith("."))
    # the manifest last, so a data set without dataset.json is visibly incomplete
    names.sort(key=lambda name: name == MANIFEST)
    for name in names:
        os.replace(os.path.join(staging, name), os.path.join(output_dir, name))


def cache_root():
    """Where the embedded default data sets are kept: $BIOMODELS_CACHE, else the user's
    cache directory."""
    root = os.environ.get("BIOMODELS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "biomodels"
    )
    return os.path.join(root, "datasets")


def synthetic_dataset(task, config, seed=0):
    """The embedded default data set for `task`: prepared once, then reused. Its key
    holds the task, the generator's version, the size and the settings that shape it."""
    count = task.bind(config).default_synthetic_examples()
    settings = config_lib.to_dict(config)
    shaping = json.dumps({field: settings[field] for field in task.data_fields}, sort_keys=True)
    digest = hashlib.sha1(shaping.encode()).hexdigest()[:8]
    directory = os.path.join(cache_root(), f"{task.name}-synthetic-v{task.synthetic_version}-n{count}-seed{seed}-{digest}")
    if not os.path.isfile(os.path.join(directory, MANIFEST)):
        from biomodels.report import say

        say(f"Preparing the built-in synthetic {task.name} data set in {directory} (once)")
        prepare_dataset(task, config, directory, synthetic=True, num_examples=count, seed=seed)
    return directory


def main(argv):
    from biomodels import cli, cluster, report, tasks

    flags = cli.FLAGS
    task = tasks.get(flags.task)
    config = config_lib.resolve(task, flags.preset, flags.set)
    if not flags.output_dir:
        raise ConfigError("--output_dir is required")
    fractions = parse_split(flags.split) if flags.split else None
    with cluster.executor(flags.scheduler) as executor:
        manifest = prepare_dataset(
            task, config, flags.output_dir, input_path=flags.input, synthetic=flags.synthetic,
            num_examples=flags.num_examples, seed=flags.seed, fractions=fractions, executor=executor,
        )
    counts = ", ".join(f"{name} {split.count}" for name, split in manifest.splits.items())
    report.say(f"Wrote {flags.output_dir}: {counts} examples")
    if manifest.skipped:
        reasons = ", ".join(f"{count} {reason}" for reason, count in manifest.skipped.items())
        report.say(f"Left out: {reasons} (per source in dataset.json)")


def define_flags():
    from absl import flags

    from biomodels import cli, tasks

    flags.DEFINE_string("task", None, "Task name: " + ", ".join(tasks.names()))
    flags.DEFINE_string("output_dir", None, "Where the shards and dataset.json go.")
    flags.DEFINE_string("input", None, "Raw input file or folder.")
    flags.DEFINE_bool("synthetic", False, "Generate synthetic raw files and prepare those.")
    flags.DEFINE_integer("num_examples", None, "Synthetic raw examples to generate (task default if unset).")
    flags.DEFINE_integer("seed", 0, "Seed of the generator and of the split.")
    flags.DEFINE_string("split", None, "train,val,test fractions, like 0.8,0.1,0.1 (default: the task's split).")
    flags.DEFINE_string("preset", "quick", "Configuration preset (tile size and other data settings).")
    flags.DEFINE_multi_string("set", [], "Override a configuration value: --set key=value.")
    cli.define_scheduler_flag()
    flags.mark_flag_as_required("task")


if __name__ == "__main__":
    from biomodels import cli

    cli.import_tensorflow()
    define_flags()
    cli.run(main)

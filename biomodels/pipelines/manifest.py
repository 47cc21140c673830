"""The manifest of a prepared data set (`dataset.json`) as typed records: what prepare
writes, and what training, evaluation and export read, every field checked when read.

The file's layout is unchanged by these records: a source's task-specific fields (a
volume's shape, a cell line, the label classes…) sit beside its common ones on disk
and in `Source.details` here.
"""

import dataclasses
import os
from typing import Mapping, Optional

from biomodels.config import read_json
from biomodels.errors import InputError
from biomodels.pipelines import tfrecord

MANIFEST = "dataset.json"
SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of the data set: its example count and shard file names (relative to the
    data set's folder)."""

    count: int
    shards: tuple = ()


@dataclasses.dataclass(frozen=True)
class Source:
    """One source read by prepare (a tomogram, an image and its masks, a cell's tracks…).

    Attributes:
        name, group: the task's name for it and the group that stays within one split.
        files: absolute paths it was read from.
        split: the split its examples went to, or "all" when they were split one by one
            or in blocks.
        details: the task's own fields about it (a volume's shape, its cell line…).
    """

    name: str
    group: str = ""
    files: tuple = ()
    split: str = "train"
    details: Mapping = dataclasses.field(default_factory=dict)

    COMMON = ("name", "group", "files", "split")

    @property
    def skipped(self):
        """{reason: count} of what the task left out of this source."""
        return self.details.get("skipped") or {}

    def to_json(self):
        return {"name": self.name, "group": self.group, "files": list(self.files), "split": self.split,
                **self.details}

    @classmethod
    def from_json(cls, value):
        details = {key: item for key, item in value.items() if key not in cls.COMMON}
        return cls(str(value["name"]), str(value.get("group", "")), tuple(value.get("files", ())),
                   str(value.get("split", "all")), details)


@dataclasses.dataclass(frozen=True)
class Manifest:
    """A prepared data set's description.

    Attributes:
        task: the task it was prepared for.
        splits: {"train" | "val" | "test": Split}.
        features: each example's arrays, name -> {"dtype", "rank"} (tfrecord's spec).
        sources: the sources read, in order.
        statistics: what the task computed on the training split (its `statistics`).
        skipped: {reason: count} of what the sources left out, totalled.
        provenance: how it was made: created, seed, split_fractions, split_by, config,
            synthetic.
        data_dir: the folder it was read from (None for one not yet written).
    """

    task: str
    splits: Mapping = dataclasses.field(default_factory=dict)
    features: Mapping = dataclasses.field(default_factory=dict)
    sources: tuple = ()
    statistics: Mapping = dataclasses.field(default_factory=dict)
    skipped: Mapping = dataclasses.field(default_factory=dict)
    provenance: Mapping = dataclasses.field(default_factory=dict)
    data_dir: Optional[str] = None

    def count(self, split):
        """Examples in `split` (0 for a split it does not have)."""
        return self.splits[split].count if split in self.splits else 0

    def shard_paths(self, split):
        """The paths of a split's shard files."""
        return [os.path.join(self.data_dir, shard) for shard in self.splits[split].shards]

    def sources_in(self, split):
        """The sources whose examples all went to `split`."""
        return [source for source in self.sources if source.split == split]

    def to_json(self):
        """The dataset.json object."""
        return {"task": self.task, "schema_version": tfrecord.SCHEMA_VERSION, **self.provenance,
                "splits": {name: {"count": split.count, "shards": list(split.shards)} for name, split in self.splits.items()},
                "features": dict(self.features), "sources": [source.to_json() for source in self.sources],
                "skipped": dict(self.skipped), "statistics": dict(self.statistics)}


#: the fields every dataset.json has, and their JSON types
FIELDS = {"task": str, "schema_version": int, "splits": dict, "features": dict, "sources": list, "statistics": dict}
PROVENANCE = ("created", "seed", "split_fractions", "split_by", "config", "synthetic")


def read(data_dir, task=None):
    """The manifest of the data set prepared in `data_dir`, checked field by field and
    for its shard files, and, given the `task` that will use it, for that task's name and
    its `statistics_fields`: a missing, damaged, newer or other task's file is one
    InputError naming it and the field."""
    path = os.path.join(data_dir, MANIFEST)
    if not os.path.isfile(path):
        raise InputError(path, "not found: prepare the data with `python -m biomodels.prepare` first")
    manifest = parse(path, read_json(path))
    if task is not None:
        if manifest.task != task.name:
            raise InputError(path, f"was prepared for task {manifest.task!r}, not {task.name!r}")
        for field, kind in task.statistics_fields.items():
            _check(path, f"statistics.{field}", manifest.statistics.get(field), kind, field in manifest.statistics)
    manifest = dataclasses.replace(manifest, data_dir=os.path.abspath(data_dir))
    for split in manifest.splits:
        for shard in manifest.shard_paths(split):
            if not os.path.isfile(shard):
                raise InputError(shard, f"shard of split {split!r} is missing")
    return manifest


def parse(path, value):
    """A Manifest from the JSON object read from `path`, checked field by field."""
    if not isinstance(value, dict):
        raise InputError(path, "is not a JSON object: not a dataset.json of biomodels.prepare")
    version = value.get("schema_version")
    if isinstance(version, int) and version > tfrecord.SCHEMA_VERSION:
        raise InputError(path, f"field schema_version: {version} is from a newer biomodels (this one reads "
                               f"{tfrecord.SCHEMA_VERSION}); upgrade biomodels or prepare the data again")
    if version != tfrecord.SCHEMA_VERSION:
        raise InputError(path, f"field schema_version: {version} is not {tfrecord.SCHEMA_VERSION}; prepare the data again")
    for field, kind in FIELDS.items():
        _check(path, field, value.get(field), kind, field in value)
    splits = {}
    for split in SPLITS:
        info = value["splits"].get(split)
        if not (isinstance(info, dict) and isinstance(info.get("count"), int) and isinstance(info.get("shards"), list)):
            raise InputError(path, f"field splits.{split}: expected a count and a list of shards; prepare the data again")
        splits[split] = Split(info["count"], tuple(info["shards"]))
    for index, source in enumerate(value["sources"]):
        if not (isinstance(source, dict) and isinstance(source.get("name"), str)):
            raise InputError(path, f"field sources[{index}]: expected an object with a name; prepare the data again")
    return Manifest(value["task"], splits, value["features"], tuple(Source.from_json(s) for s in value["sources"]),
                    value["statistics"], value.get("skipped") or {},
                    {field: value[field] for field in PROVENANCE if field in value})


def _check(path, field, found, kind, present):
    if isinstance(found, kind) and not isinstance(found, bool):
        return
    names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
    what = "missing" if not present else f"a {type(found).__name__}"
    raise InputError(path, f"field {field}: expected a {names}, found {what}; prepare the data again")

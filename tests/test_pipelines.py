"""Readers, the TFRecord schema, the prepared data set and the tf.data pipelines."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from biomodels import tasks
from biomodels.errors import InputError
from biomodels.pipelines import dataset as dataset_lib
from biomodels.pipelines import manifest as manifest_lib
from biomodels.pipelines import readers, tfrecord


def test_mrc_round_trip_keeps_voxel_size_and_origin(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    path = tmp_path / "v.mrc"
    readers.write_mrc(str(path), data, voxel_size=(13.5, 13.5, 20.0), origin=(1.0, 2.0, 3.0))
    volume = readers.read_mrc(str(path))
    np.testing.assert_array_equal(volume.data, data)
    assert volume.voxel_size == pytest.approx((13.5, 13.5, 20.0))
    assert volume.origin == pytest.approx((1.0, 2.0, 3.0))
    assert not [name for name in os.listdir(tmp_path) if "tmp" in name]


def test_mrc_start_indices_survive_and_other_axis_orders_are_read_as_z_y_x(tmp_path):
    import mrcfile

    data = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # Z, Y, X
    readers.write_mrc(str(tmp_path / "s.mrc"), data, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), start=(-8, 5, 120))
    with mrcfile.open(tmp_path / "s.mrc") as mrc:  # as other programs read the header
        assert (int(mrc.header.nxstart), int(mrc.header.nystart), int(mrc.header.nzstart)) == (-8, 5, 120)
    assert readers.read_mrc(str(tmp_path / "s.mrc")).start == (-8, 5, 120)
    # columns along Z, rows along Y, sections along X: the array is stored as [x, y, z]
    with mrcfile.new(tmp_path / "zyx.mrc") as mrc:
        mrc.set_data(np.ascontiguousarray(data.transpose(2, 1, 0)))
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 3, 2, 1
        mrc.header.nxstart, mrc.header.nystart, mrc.header.nzstart = 7, 8, 9  # of columns (z), rows (y), sections (x)
    volume = readers.read_mrc(str(tmp_path / "zyx.mrc"))
    np.testing.assert_array_equal(volume.data, data)
    assert volume.start == (9, 8, 7)
    readers.write_mrc_like(str(tmp_path / "copy.mrc"), volume.data, volume)
    with mrcfile.open(tmp_path / "copy.mrc") as mrc:
        assert (int(mrc.header.mapc), int(mrc.header.mapr), int(mrc.header.maps)) == (1, 2, 3)
        np.testing.assert_array_equal(mrc.data, data)
        assert (int(mrc.header.nxstart), int(mrc.header.nystart), int(mrc.header.nzstart)) == (9, 8, 7)


def test_complex_and_badly_ordered_mrcs_are_refused(tmp_path):
    import mrcfile

    with mrcfile.new(tmp_path / "complex.mrc") as mrc:
        mrc.set_data(np.ones((2, 4, 4), np.complex64))
    with pytest.raises(InputError, match=r"complex.mrc: is a complex-valued MRC \(mode 4\)"):
        readers.read_mrc(str(tmp_path / "complex.mrc"))
    with mrcfile.new(tmp_path / "axes.mrc") as mrc:
        mrc.set_data(np.ones((2, 4, 4), np.float32))
        mrc.header.mapc, mrc.header.mapr, mrc.header.maps = 1, 1, 3
    with pytest.raises(InputError, match=r"axes.mrc: .*mapc/mapr/maps \(1, 1, 3\)"):
        readers.read_mrc(str(tmp_path / "axes.mrc"))


def test_truncated_mrc_is_an_input_error(tmp_path):
    path = tmp_path / "cut.mrc"
    readers.write_mrc(str(path), np.zeros((4, 16, 16), np.float32))
    with open(path, "r+b") as handle:
        handle.truncate(1024 + 500)
    with pytest.raises(InputError, match="cut.mrc: not a readable MRC"):
        readers.read_mrc(str(path))


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        readers.read_mrc(str(tmp_path / "absent.mrc"))
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match="garbage.tif: not a readable image"):
        readers.read_image(str(garbage))


def test_tiff_and_png_round_trip(tmp_path):
    image = (np.arange(64, dtype=np.uint8).reshape(8, 8))
    readers.write_tiff(str(tmp_path / "a.tif"), image)
    readers.write_png(str(tmp_path / "a.png"), image)
    np.testing.assert_array_equal(readers.read_image(str(tmp_path / "a.tif")), image)
    np.testing.assert_array_equal(readers.read_image(str(tmp_path / "a.png")), image)


def test_finite_and_label_checks():
    with pytest.raises(InputError, match="1 NaN or Inf"):
        readers.require_finite("x.mrc", np.array([0.0, np.nan]))
    with pytest.raises(InputError, match=r"0\.\.5, found values from 0 to 7"):
        readers.require_labels_in_range("y.mrc", np.array([0, 7]), 6)


def test_tfrecord_round_trip(tmp_path):
    arrays = {"image": np.random.rand(5, 7).astype(np.float32), "labels": np.arange(35, dtype=np.uint8).reshape(5, 7)}
    writer = tfrecord.SplitWriter(str(tmp_path), "train", examples_per_shard=2)
    for _ in range(3):
        writer.write(tfrecord.encode_example(arrays))
    names = writer.commit()
    assert names == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    assert sorted(os.listdir(tmp_path)) == names
    decode = tfrecord.example_decoder(tfrecord.feature_spec_of(arrays))
    decoded = [decode(r) for r in tf.data.TFRecordDataset([str(tmp_path / n) for n in names])]
    assert len(decoded) == 3
    for example in decoded:
        np.testing.assert_array_equal(example["image"].numpy(), arrays["image"])
        np.testing.assert_array_equal(example["labels"].numpy(), arrays["labels"])
        assert example["labels"].dtype == tf.uint8


def test_split_writer_discard_leaves_nothing(tmp_path):
    writer = tfrecord.SplitWriter(str(tmp_path), "val")
    writer.write(tfrecord.encode_example({"x": np.zeros(3)}))
    writer.discard()
    assert os.listdir(tmp_path) == []


def test_prepared_manifest_and_split_by_tomogram(prepared_cryoet, cryoet_task):
    manifest = manifest_lib.read(str(prepared_cryoet), cryoet_task)
    assert manifest.task == "cryoet" and manifest.data_dir == str(prepared_cryoet)
    splits = {source.name: source.split for source in manifest.sources}
    assert sorted(splits.values()) == ["test", "train", "val"]  # 3 tomograms, one per split
    # 6 slices of 64x64 in 32x32 tiles: 24 examples per tomogram
    assert {name: split.count for name, split in manifest.splits.items()} == {"train": 24, "val": 24, "test": 24}
    assert [manifest.count(split) for split in ("train", "all")] == [24, 0]
    assert manifest.shard_paths("val") == [str(prepared_cryoet / "val-00000-of-00001.tfrecord")]
    assert manifest.sources[0].files[0].endswith(".mrc") and manifest.sources[0].details["voxel_size"]
    # the typed record writes back the object it was read from, field for field
    on_disk = json.loads((prepared_cryoet / "dataset.json").read_text())
    assert manifest.to_json() == on_disk
    stats = manifest.statistics
    assert stats["class_names"][0] == "background" and len(stats["class_frequencies"]) == 6
    assert sum(stats["class_frequencies"]) == pytest.approx(1.0)


def test_training_dataset_shapes_dtypes_and_seeded_order(prepared_cryoet, cryoet_task, tiny_cryoet_config):
    manifest = manifest_lib.read(str(prepared_cryoet))

    def first_batches(seed):
        data = dataset_lib.training_dataset(cryoet_task.bind(tiny_cryoet_config, manifest=manifest), seed, batch_size=4, steps_per_epoch=3)
        return [(x.numpy(), y.numpy()) for x, y in data.take(2)]

    batches = first_batches(3)
    x, y = batches[0]
    assert x.shape == (4, 32, 32, 1) and x.dtype == np.float32
    assert y.shape == (4, 32, 32) and y.dtype == np.int32
    assert np.abs(x.mean(axis=(1, 2, 3))).max() > 0.05  # tiles keep their tomogram's standardisation, not their own
    again = first_batches(3)
    for (x1, y1), (x2, y2) in zip(batches, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    # tf.data's autotuner off: with it, deleting fit's iterator could wait up to a minute
    bound = cryoet_task.bind(tiny_cryoet_config, manifest=manifest)
    for data in (dataset_lib.training_dataset(bound, 0, steps_per_epoch=3), dataset_lib.evaluation_dataset(bound, "val")):
        assert data.options().autotune.enabled is False


def _batches(data, count):
    return [x.numpy() for x, _ in data.take(count)]


def test_training_epochs_depend_on_seed_and_epoch_alone_cached_or_streamed(prepared_cryoet, cryoet_task,
                                                                            tiny_cryoet_config):
    """A run resumed at epoch 2 sees the batches an uninterrupted run sees from epoch 2,
    whether the split is cached in memory or streamed from its shards."""
    manifest = manifest_lib.read(str(prepared_cryoet))
    config, steps = tiny_cryoet_config, 3
    whole = _batches(dataset_lib.training_dataset(cryoet_task.bind(config, manifest=manifest), 5, batch_size=4, steps_per_epoch=steps), 4 * steps)
    resumed = _batches(dataset_lib.training_dataset(cryoet_task.bind(config, manifest=manifest), 5, batch_size=4, steps_per_epoch=steps, first_epoch=2), 2 * steps)
    for a, b in zip(whole[2 * steps:], resumed):
        np.testing.assert_array_equal(a, b)
    # epochs differ from one another (a new order and new augmentation each epoch)
    assert not np.array_equal(whole[0], whole[steps])
    streamed = _batches(dataset_lib.training_dataset(cryoet_task.bind(config, manifest=manifest), 5, batch_size=4, steps_per_epoch=steps, first_epoch=1, cache_bytes=0), 3 * steps)
    streamed_again = _batches(dataset_lib.training_dataset(cryoet_task.bind(config, manifest=manifest), 5, batch_size=4, steps_per_epoch=steps, first_epoch=2, cache_bytes=0), 2 * steps)
    for a, b in zip(streamed[steps:], streamed_again):
        np.testing.assert_array_equal(a, b)
    assert streamed[0].shape == whole[0].shape


def test_missing_shard_is_reported(prepared_cryoet):
    os.remove(prepared_cryoet / "val-00000-of-00001.tfrecord")
    with pytest.raises(InputError, match="val-00000-of-00001.tfrecord: shard of split 'val' is missing"):
        manifest_lib.read(str(prepared_cryoet))


def test_a_single_tomogram_is_split_in_contiguous_blocks(tmp_path, cryoet_task, tiny_cryoet_config):
    from biomodels.pipelines.synthetic import cryoet as synthetic
    from biomodels.prepare import prepare_dataset

    synthetic.write_dataset(str(tmp_path / "raw"), count=1, seed=0, shape=(10, 32, 32))
    manifest = prepare_dataset(cryoet_task, tiny_cryoet_config, str(tmp_path / "out"), input_path=str(tmp_path / "raw"),
                               show_progress=False)
    assert manifest.provenance["split_by"] == "contiguous blocks within each group"
    assert {name: split.count for name, split in manifest.splits.items()} == {"train": 8, "val": 1, "test": 1}
    assert [source.split for source in manifest.sources] == ["all"] and manifest.sources_in("all") == list(manifest.sources)


def test_assign_groups_gives_every_split_a_group_and_is_seeded():
    from biomodels.prepare import assign_groups

    groups = [f"tomo{i}" for i in range(10)]
    first = assign_groups(groups, (0.8, 0.1, 0.1), seed=3)
    assert sorted(first.values()).count("train") == 8 and set(first.values()) == {"train", "val", "test"}
    assert assign_groups(groups, (0.8, 0.1, 0.1), seed=3) == first
    assert set(assign_groups(groups[:3], (0.8, 0.1, 0.1), seed=0).values()) == {"train", "val", "test"}


KILLED_PREPARE = """
import os, signal, sys
from biomodels import config as config_lib, tasks
from biomodels.prepare import prepare_dataset
task = tasks.get("cryoet")
config = config_lib.resolve(task, "quick", ["synthetic_shape=6,64,64", "tile_size=32"])
def die(*args):
    os.kill(os.getpid(), signal.SIGKILL)
type(task).write_synthetic = die  # on the class: prepare binds a task of its own to the configuration
prepare_dataset(task, config, sys.argv[1], synthetic=True, num_examples=2, show_progress=False)
"""


def test_a_killed_prepare_leaves_a_staging_folder_that_the_next_one_removes(tmp_path, cryoet_task, tiny_cryoet_config):
    import subprocess
    import sys

    from biomodels.atomic import FolderLock
    from biomodels.prepare import prepare_dataset

    script = tmp_path / "killed.py"
    script.write_text(KILLED_PREPARE)
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "data" / "a")], capture_output=True, text=True)
    assert result.returncode == -9, result.stderr[-2000:]
    assert len([name for name in os.listdir(tmp_path / "data") if name.startswith(".prepare-")]) == 1
    in_use = tmp_path / "data" / ".prepare-in-use"
    in_use.mkdir()
    lock, _ = FolderLock.acquire(str(in_use))  # as a prepare still running holds it
    prepare_dataset(cryoet_task, tiny_cryoet_config, str(tmp_path / "data" / "b"), synthetic=True, num_examples=2,
                    show_progress=False)
    assert sorted(os.listdir(tmp_path / "data")) == [".prepare-in-use", "b"]
    assert ".lock" not in os.listdir(tmp_path / "data" / "b")
    lock.release()


def test_mrc_slices_round_trip_with_mrcfiles_header(tmp_path):
    import mrcfile

    from biomodels.pipelines.mrc_slices import MrcSlices, MrcSliceWriter

    data = np.random.default_rng(0).normal(size=(3, 5, 7)).astype(np.float32)
    readers.write_mrc(str(tmp_path / "in.mrc"), data, voxel_size=(2.0, 2.0, 3.0), origin=(1.0, 2.0, 3.0), start=(4, 5, 6))
    slices = MrcSlices(str(tmp_path / "in.mrc"))
    assert len(slices) == 3 and slices.shape == (3, 5, 7) and slices.start == (4, 5, 6)
    np.testing.assert_array_equal(np.stack(list(slices)), data)
    with MrcSliceWriter(str(tmp_path / "out.mrc"), data.shape, np.float32, slices) as writer:
        for z in (2, 0, 1):  # any order
            writer[z] = data[z]
    written = readers.read_mrc(str(tmp_path / "out.mrc"))
    np.testing.assert_array_equal(written.data, data)
    assert (written.voxel_size, written.origin, written.start) == ((2.0, 2.0, 3.0), (1.0, 2.0, 3.0), (4, 5, 6))
    with mrcfile.open(tmp_path / "out.mrc") as ours, mrcfile.open(tmp_path / "in.mrc") as theirs:
        for field in ("dmin", "dmax", "dmean", "rms"):
            assert float(ours.header[field]) == pytest.approx(float(theirs.header[field]), rel=1e-5), field
    # a failure while writing leaves no file
    with pytest.raises(ValueError):
        with MrcSliceWriter(str(tmp_path / "bad.mrc"), data.shape, np.float32, slices) as writer:
            writer[0] = data[0, :2]
    assert sorted(os.listdir(tmp_path)) == ["in.mrc", "out.mrc"]
    # a file cut short is refused before any slice is read
    with open(tmp_path / "in.mrc", "r+b") as handle:
        handle.truncate(1024 + 100)
    with pytest.raises(InputError, match=r"in.mrc: not a readable MRC file \(cut short"):
        MrcSlices(str(tmp_path / "in.mrc"))


def test_a_damaged_manifest_names_the_file_and_the_field(prepared_cryoet, cryoet_task):
    """A dataset.json from a newer biomodels, or missing a field, or with a field of the
    wrong type, is one InputError naming the file and the field, not a KeyError."""
    path = prepared_cryoet / "dataset.json"
    original = json.loads(path.read_text())
    damages = [
        (lambda m: m.update(schema_version=99), "field schema_version: 99 is from a newer biomodels"),
        (lambda m: m.update(schema_version=0), "field schema_version: 0 is not 1"),
        (lambda m: m.pop("splits"), "field splits: expected a dict, found missing"),
        (lambda m: m.update(task=3), "field task: expected a str, found a int"),
        (lambda m: m["splits"].pop("val"), "field splits.val: expected a count and a list of shards"),
        (lambda m: m["splits"]["train"].update(count="many"), "field splits.train: expected a count"),
        (lambda m: m["sources"].append(7), r"field sources\[3\]: expected an object with a name"),
        (lambda m: m["statistics"].pop("class_frequencies"), "field statistics.class_frequencies: expected a list, "
                                                             "found missing"),
        (lambda m: m["statistics"].update(class_frequencies=True), "field statistics.class_frequencies: expected a "
                                                                   "list, found a bool"),
    ]
    for damage, message in damages:
        manifest = json.loads(json.dumps(original))
        damage(manifest)
        path.write_text(json.dumps(manifest))
        with pytest.raises(InputError, match=f"dataset.json: {message}"):
            manifest_lib.read(str(prepared_cryoet), cryoet_task)
    path.write_text(json.dumps(original))
    with pytest.raises(InputError, match="dataset.json: was prepared for task 'cryoet', not 'cellular'"):
        manifest_lib.read(str(prepared_cryoet), tasks.get("cellular"))
    path.write_text("[1, 2]")
    with pytest.raises(InputError, match="dataset.json: is not a JSON object"):
        manifest_lib.read(str(prepared_cryoet))


def test_a_damaged_tiff_is_one_error_and_no_log_lines(tmp_path, caplog):
    """tifffile logs every malformed tag of a cut file; the user sees our one line only."""
    import logging

    import tifffile

    tifffile.imwrite(tmp_path / "whole.tif", np.arange(64 * 60, dtype=np.uint16).reshape(64, 60))
    (tmp_path / "cut.tif").write_bytes((tmp_path / "whole.tif").read_bytes()[:200])
    with caplog.at_level(logging.WARNING):
        with pytest.raises(InputError, match="cut.tif: not a readable image"):
            readers.read_image(str(tmp_path / "cut.tif"))
        with pytest.raises(InputError, match="cut.tif: not a readable TIFF"):
            readers.read_tiff_volume(str(tmp_path / "cut.tif"))
    assert [record.getMessage() for record in caplog.records if record.name == "tifffile"] == []
    assert logging.getLogger("tifffile").level == logging.NOTSET  # left as it was


def test_partial_sums_add_up_to_the_whole():
    import collections

    from biomodels.pipelines import partial_sums

    values = np.random.default_rng(3).normal(1e4, 3.0, (101, 2))  # a large mean: raw sums of squares would cancel
    parts = [{"moments": partial_sums.Moments.of(chunk, 2), "count": len(chunk),
              "lengths": collections.Counter(np.round(chunk[:, 0]).astype(int).tolist())}
             for chunk in np.split(values, [0, 7, 60])]  # an empty part too
    total = partial_sums.add(parts)
    assert total["count"] == 101 and total["moments"].count == 101
    np.testing.assert_allclose(total["moments"].mean, values.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(total["moments"].variance, values.var(axis=0), rtol=1e-9)
    lengths = np.round(values[:, 0]).astype(int)
    assert partial_sums.median_of_counts(total["lengths"]) == np.median(lengths)
    assert partial_sums.median_of_counts(collections.Counter([1, 2, 2, 9])) == np.median([1, 2, 2, 9]) == 2.0
    assert partial_sums.median_of_counts(collections.Counter([1, 4])) == 2.5
    assert partial_sums.median_of_counts(collections.Counter()) == 0.0 and partial_sums.add([{}, {}]) == {}

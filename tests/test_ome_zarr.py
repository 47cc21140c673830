"""OME-Zarr in and out (biomodels.pipelines.ome_zarr): what we write is read by
ome-zarr-py's reader and by zarr, voxel size, origin and levels kept, in OME-NGFF 0.4
and 0.5; a store laid out as the cryoET Data Portal publishes its tomograms is read by
us; prepare reads OME-Zarr tomograms as it reads MRCs; damaged stores are one error."""

import json
import os
import shutil

import numpy as np
import pytest

from biomodels.errors import InputError
from biomodels.pipelines import ome_zarr


class Like:
    """What a writer copies from its input: voxel size and origin (x, y, z), ångström."""

    voxel_size = (13.48, 13.48, 20.0)
    origin = (1.0, 2.0, 3.0)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_what_we_write_ome_zarr_py_and_zarr_read_with_its_voxel_size(tmp_path, version):
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    volume = np.random.default_rng(0).normal(size=(5, 600, 530)).astype(np.float32)
    path = tmp_path / "t.zarr"
    with ome_zarr.ZarrSliceWriter(str(path), volume.shape, np.float32, Like(), version=version) as writer:
        for z, image in enumerate(volume):
            writer[z] = image
    assert sorted(os.listdir(tmp_path)) == ["t.zarr"]  # no temporary folder left
    node = list(Reader(parse_url(str(path)))())[0]
    levels = [np.asarray(level) for level in node.data]
    assert [level.shape for level in levels] == [(5, 600, 530), (3, 300, 265), (2, 150, 133)]
    np.testing.assert_array_equal(levels[0], volume)
    np.testing.assert_array_equal(levels[1], volume[::2, ::2, ::2])
    np.testing.assert_array_equal(levels[2], volume[::4, ::4, ::4])
    assert [axis["name"] for axis in node.metadata["axes"]] == ["z", "y", "x"]
    assert {axis["unit"] for axis in node.metadata["axes"]} == {"angstrom"}
    transforms = node.metadata["coordinateTransformations"]
    assert transforms[0] == [{"type": "scale", "scale": [20.0, 13.48, 13.48]},
                             {"type": "translation", "translation": [3.0, 2.0, 1.0]}]
    assert transforms[1][0]["scale"] == [40.0, 26.96, 26.96]
    group = zarr.open_group(str(path), mode="r")
    assert group.metadata.zarr_format == (2 if version == "0.4" else 3)
    np.testing.assert_array_equal(group["0"][2], volume[2])
    # and we read it back: slices, voxel size, origin, version
    slices = ome_zarr.ZarrSlices(str(path))
    assert slices.shape == volume.shape and slices.voxel_size == Like.voxel_size and slices.origin == Like.origin
    assert slices.image.version == version
    np.testing.assert_array_equal(np.stack(list(slices)), volume)


def write_data_portal_store(path, volume, voxel_angstrom):
    """A tomogram as the cryoET Data Portal publishes it: a Zarr v2 multiscale group of
    three levels "0", "1", "2" (each half the last), axes z, y, x in ångström, one scale
    transformation per level, chunks of 256 voxels; written with zarr and JSON by hand."""
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    datasets = []
    for level in range(3):
        data = volume[:: 2 ** level, :: 2 ** level, :: 2 ** level]
        group.create_array(str(level), shape=data.shape, chunks=(256, 256, 256), dtype=data.dtype)[...] = data
        datasets.append({"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": [voxel_angstrom * 2 ** level] * 3}]})
    attributes = {"multiscales": [{"version": "0.4", "name": "/", "type": "local_mean",
                                   "axes": [{"name": axis, "type": "space", "unit": "angstrom"} for axis in "zyx"],
                                   "datasets": datasets}]}
    (path / ".zattrs").write_text(json.dumps(attributes))


def test_a_data_portal_tomogram_is_read_lazily_with_its_voxel_size(tmp_path):
    volume = np.random.default_rng(1).normal(size=(20, 40, 36)).astype(np.float32)
    write_data_portal_store(tmp_path / "TS_026.zarr", volume, 13.48)
    slices = ome_zarr.ZarrSlices(str(tmp_path / "TS_026.zarr"))
    assert slices.shape == (20, 40, 36) and slices.voxel_size == (13.48, 13.48, 13.48)
    assert slices.origin == (0.0, 0.0, 0.0)
    np.testing.assert_array_equal(slices[7], volume[7])
    np.testing.assert_array_equal(ome_zarr.read_volume(str(tmp_path / "TS_026.zarr")).data, volume)


def test_nanometres_a_channel_axis_and_a_global_scale_are_read(tmp_path):
    image = np.arange(2 * 30 * 20, dtype=np.uint16).reshape(2, 30, 20)
    ome_zarr.write_image(str(tmp_path / "i.zarr"), image, "cyx", (1.0, 0.5, 0.25), version="0.5")
    attributes = json.loads((tmp_path / "i.zarr" / "zarr.json").read_text())["attributes"]
    multiscale = attributes["ome"]["multiscales"][0]
    multiscale["axes"][1]["unit"] = multiscale["axes"][2]["unit"] = "nanometer"
    multiscale["coordinateTransformations"] = [{"type": "scale", "scale": [1.0, 2.0, 2.0]}]
    (tmp_path / "i.zarr" / "zarr.json").write_text(json.dumps({**json.loads(
        (tmp_path / "i.zarr" / "zarr.json").read_text()), "attributes": attributes}))
    read = ome_zarr.Image(str(tmp_path / "i.zarr"))
    assert read.voxel_size("xy") == (0.25 * 2 * 10, 0.5 * 2 * 10)
    np.testing.assert_array_equal(read.spatial("yxc"), np.moveaxis(image, 0, -1))


def test_damaged_stores_are_one_error_naming_them(tmp_path):
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(InputError, match="empty.zarr: not a readable Zarr group|empty.zarr: not an OME-Zarr image"):
        ome_zarr.ZarrSlices(str(tmp_path / "empty.zarr"))
    ome_zarr.write_image(str(tmp_path / "flat.zarr"), np.zeros((8, 8), np.uint8), "yx", (1.0, 1.0))
    with pytest.raises(InputError, match="flat.zarr: has axes yx: a tomogram needs z, y and x"):
        ome_zarr.ZarrSlices(str(tmp_path / "flat.zarr"))
    ome_zarr.write_image(str(tmp_path / "two.zarr"), np.zeros((2, 3, 8, 8), np.uint8), "czyx", (1.0, 1.0, 1.0, 1.0))
    with pytest.raises(InputError, match="two.zarr: has 2 along axis 'c': expected one tomogram"):
        ome_zarr.ZarrSlices(str(tmp_path / "two.zarr"))
    from biomodels.pipelines.image_regions import ImageRegions

    with pytest.raises(InputError, match="two.zarr: has 3 along axis 'z': expected one 2-D image"):
        ImageRegions(str(tmp_path / "two.zarr"))
    shutil.rmtree(tmp_path / "two.zarr")
    attributes = json.loads((tmp_path / "flat.zarr" / ".zattrs").read_text())
    attributes["multiscales"][0]["axes"][0]["unit"] = "furlong"
    (tmp_path / "flat.zarr" / ".zattrs").write_text(json.dumps(attributes))
    with pytest.raises(InputError, match="axis y is in 'furlong'"):
        ome_zarr.Image(str(tmp_path / "flat.zarr"))
    # a failed write leaves nothing behind, and an existing store is kept
    with pytest.raises(ValueError):
        with ome_zarr.ZarrSliceWriter(str(tmp_path / "flat.zarr"), (2, 8, 8), np.uint8, Like()) as writer:
            writer[0] = np.zeros((4, 4))
    assert sorted(os.listdir(tmp_path)) == ["empty.zarr", "flat.zarr"]


def test_prepare_reads_ome_zarr_tomograms_as_it_reads_mrcs(tmp_path, cryoet_task, tiny_cryoet_config, tomogram_dir):
    from biomodels.pipelines import dataset, manifest, readers
    from biomodels.prepare import prepare_dataset

    zarr_dir = tmp_path / "zarr"
    for name in sorted(os.listdir(tomogram_dir)):
        volume = readers.read_mrc(str(tomogram_dir / name))
        ome_zarr.write_image(str(zarr_dir / name.replace(".mrc", ".zarr")), volume.data, "zyx", volume.voxel_size[::-1])
    for folder, out in ((tomogram_dir, "from_mrc"), (zarr_dir, "from_zarr")):
        prepare_dataset(cryoet_task, tiny_cryoet_config, str(tmp_path / out), input_path=str(folder), show_progress=False)
    expected, found = (manifest.read(str(tmp_path / out), cryoet_task) for out in ("from_mrc", "from_zarr"))
    assert [(s.name, s.split, s.details) for s in found.sources] == [(s.name, s.split, s.details) for s in expected.sources]
    assert found.statistics == expected.statistics
    for split in ("train", "val", "test"):
        for a, b in zip(dataset.examples(expected, split).as_numpy_iterator(),
                        dataset.examples(found, split).as_numpy_iterator()):
            np.testing.assert_array_equal(a["image"], b["image"])
            np.testing.assert_array_equal(a["labels"], b["labels"])

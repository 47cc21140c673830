"""Z-stacks (biomodels.tasks.cellular.stacks): 3-D segmentation against Cellpose 3.1.1.2's
own `eval(do_3D=True)` and `eval(stitch_threshold=...)` with the same network, a small
CPnet trained here on discs (the slices of spheres; synthetic.cell_stacks) and handed to
Cellpose as a state dict; the 3-D flows of a label volume against Cellpose's
`masks_to_flows`; the command line on ImageJ and OME-Zarr stacks with the voxel size
kept."""

import os
import shutil

import numpy as np
import pytest
import tifffile

from biomodels.pipelines.synthetic.cell_stacks import blob_stack, disc_training_set
from conftest import assert_one_line_error, run_cli, run_reference_script

NBASE = (16, 32, 256)  # Cellpose's eval takes styles of 256 only
DIAMETER = 16.0
ANISOTROPY = 2.0
STITCH_THRESHOLD = 0.25


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A CellularModel of a small CPnet trained on discs (about 20 s), and Cellpose's 3-D
    results with its weights on a stack of blobs."""
    from biomodels import cli

    cli.import_tensorflow()
    import keras

    from biomodels.models import CellposeLoss, CellposeNet
    from biomodels.predictors import KerasPredictor
    from biomodels.tasks import get
    from biomodels.tasks.cellular import inference

    images, targets = disc_training_set(np.random.default_rng(0))
    keras.utils.set_random_seed(0)
    network = CellposeNet(nchan=2, nbase=NBASE, diam_mean=DIAMETER)
    network.compile(optimizer=keras.optimizers.Adam(3e-3), loss=CellposeLoss())
    network.fit(images, targets, batch_size=8, epochs=20, verbose=0)
    task = get("cellular")
    model = inference.CellularModel(task, KerasPredictor(task, network, inference.cpnet_config(task, network), source="discs"))

    folder = tmp_path_factory.mktemp("cellpose_3d")
    stack, labels = blob_stack(np.random.default_rng(1), anisotropy=ANISOTROPY)
    np.savez(folder / "state.npz", **network.cellpose_state())
    np.save(folder / "stack.npy", stack)
    np.save(folder / "labels.npy", labels)
    run_reference_script("cellpose_3d.py", folder, ",".join(map(str, (2, *NBASE))), DIAMETER, ANISOTROPY,
                         STITCH_THRESHOLD, 0)
    cellpose = {name: np.load(folder / f"{name}.npy") for name in
                ("masks_3d", "masks_3d_isotropic", "flows_3d", "cellprob_3d", "masks_stitch", "flows_labels")}
    return {"model": model, "network": network, "stack": stack, "labels": labels, "cellpose": cellpose,
            "folder": folder}


def test_do_3D_follows_cellposes_eval(trained):
    """The same network on the same stack (anisotropy 2): the summed 3-D flows and logits
    equal Cellpose's to within its resampling, and our masks are the blobs (AP@0.75 ≥
    0.95) and match them at least as well as Cellpose's at every IoU threshold, whether
    Cellpose follows the flows on the stack's own grid (its default, the Z flow taken
    unconverted: cells overshoot in Z and lose voxels) or in the resampled stack
    (resample=False). The AP between the two is reported by benchmarks/cellular_3d.py."""
    from biomodels.ops.matching import average_precision

    result = trained["model"].predict(trained["stack"], do_3D=True, diameter=DIAMETER, anisotropy=ANISOTROPY)
    cellpose, labels = trained["cellpose"], trained["labels"]
    assert result.masks.shape == labels.shape and result.flows.shape == (3, *labels.shape)
    scale = np.abs(cellpose["flows_3d"] / 5).max()
    assert np.abs(result.flows - cellpose["flows_3d"] / 5).max() < 0.01 * scale
    assert np.abs(result.cellprob - cellpose["cellprob_3d"]).max() < 0.01 * np.abs(cellpose["cellprob_3d"]).max()
    ours = average_precision(labels, result.masks)[0]
    assert ours[0] == 1.0 and ours[1] >= 0.95
    for name in ("masks_3d", "masks_3d_isotropic"):
        assert (ours >= average_precision(labels, cellpose[name])[0]).all(), name


def test_stitching_follows_cellposes_eval(trained):
    from biomodels.ops.matching import average_precision

    result = trained["model"].predict(trained["stack"], stitch_threshold=STITCH_THRESHOLD, diameter=DIAMETER)
    assert result.masks.shape == trained["labels"].shape and result.flows.shape == (2, *trained["labels"].shape)
    assert average_precision(trained["cellpose"]["masks_stitch"], result.masks)[0][0] >= 0.95
    assert average_precision(trained["labels"], result.masks)[0][0] >= 0.95


def test_volume_flows_are_cellposes(trained):
    """masks_to_flows of a label volume against Cellpose's: cosine ≥ 0.99 in 99 % of
    the cells' voxels, 0.999 on average."""
    from biomodels.ops.flows import masks_to_flows

    labels, expected = trained["labels"], trained["cellpose"]["flows_labels"]
    found = masks_to_flows(labels)
    inside = labels > 0
    cosine = (found * expected).sum(0)[inside] / (np.linalg.norm(found, axis=0) * np.linalg.norm(expected, axis=0))[inside]
    assert np.percentile(cosine, 1) >= 0.99 and cosine.mean() >= 0.999
    assert not found[:, ~inside].any()


def test_a_label_volumes_flows_give_its_masks_back():
    """Known answer without a network: the 3-D flows of a label volume, followed in 3-D
    as volume_steps makes them, give the same cells (a cell-probability of +5 inside, -5
    outside); followed as sums, as Cellpose follows them, they overshoot and cells lose
    voxels. The same on a stack of every other slice, with anisotropy 2."""
    from biomodels.ops.flows import masks_from_flows, masks_to_flows, volume_steps
    from biomodels.ops.matching import average_precision

    _, labels = blob_stack(np.random.default_rng(3), shape=(24, 48, 48), count=6)
    flows, cellprob = masks_to_flows(labels), np.where(labels > 0, 5.0, -5.0)
    masks = masks_from_flows(volume_steps(flows), cellprob, niter=200)
    assert average_precision(labels, masks, thresholds=(0.9,))[0][0] == 1.0
    assert average_precision(labels, masks_from_flows(flows, cellprob, niter=200), thresholds=(0.9,))[0][0] < 0.5
    # every other slice: the flows of the isotropic volume, taken at the kept slices
    sparse = masks_from_flows(volume_steps(flows[:, ::2], anisotropy=2.0), cellprob[::2], niter=200, min_size=5)
    assert average_precision(labels[::2], sparse, thresholds=(0.75,))[0][0] == 1.0
    with pytest.raises(ValueError, match="expected flows"):
        masks_from_flows(np.zeros((2, 4, 8, 8)), np.zeros((4, 8, 8)))


def test_stitching_links_by_iou_as_cellpose_does():
    """Hand-made slices: a mask takes the label of the mask before it overlapping it most
    at IoU ≥ the threshold; an earlier mask goes to one later mask only (the best); an
    empty slice breaks the chain; new masks number on from the highest label."""
    from biomodels.ops.matching import stitch_slices

    masks = np.zeros((5, 12, 12), np.int32)
    masks[0, 1:5, 1:5] = 4           # a
    masks[1, 1:5, 1:6] = 7           # a again (IoU 0.8)
    masks[1, 7:10, 7:10] = 2         # b, new
    masks[2, 1:5, 1:3] = 1           # a's left half (IoU 0.4) ...
    masks[2, 1:5, 3:6] = 3           # ... and right half (IoU 0.6): only the better is a
    masks[4, 7:10, 7:10] = 5         # after an empty slice: new
    stitched = stitch_slices(masks, 0.25)
    assert stitched[0, 2, 2] == stitched[1, 2, 2] == stitched[2, 2, 4] == 1
    assert stitched[1, 8, 8] == 2 and stitched[2, 2, 1] == 3 and stitched[4, 8, 8] == 4
    assert stitch_slices(masks, 0.9)[1, 2, 2] != 1  # IoU 0.8 < 0.9: a new cell
    with pytest.raises(ValueError, match="stack of label images"):
        stitch_slices(masks[0], 0.25)


def test_predict_segments_stacks_from_the_command_line(trained, tmp_path, monkeypatch):
    """predict --do_3D on an ImageJ ZCYX stack and an OME-Zarr stack, the model by name
    from a Cellpose cache: 3-D uint16 ImageJ masks with the voxel size kept (read back
    by tifffile's ImageJ reader), the anisotropy taken from the files, the masks those of
    Python's predict; flows as a ZCYX hyperstack. Stacks without --do_3D, 2-D images with
    it and both ways at once are one line each."""
    from biomodels.pipelines import ome_zarr

    stack = trained["stack"]
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(trained["folder"] / "cpnet.pth", cache / "cyto3")
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(cache))
    monkeypatch.setenv("BIOMODELS_CELLPOSE_MODELS_URL", "http://127.0.0.1:9/models")
    inputs = tmp_path / "stacks"
    inputs.mkdir()
    two_channels = np.stack([stack, np.zeros_like(stack)], axis=1).astype(np.uint16)  # Z, C, Y, X
    tifffile.imwrite(inputs / "cells.tif", two_channels, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZCYX", "spacing": 1.0, "unit": "micron"})
    ome_zarr.write_image(str(inputs / "cells3.ome.zarr"), stack.astype(np.uint16), "zyx", (2e4, 1e4, 1e4))
    out = tmp_path / "out"
    result = run_cli("biomodels.predict", "--task=cellular", "--model=cellpose:cyto3", f"--input={inputs}",
                     f"--output={out}", "--do_3D", f"--diameter={DIAMETER}", "--channels=0,1")
    assert result.returncode == 0, result.stderr
    expected = trained["model"].predict(stack.astype(np.uint16), do_3D=True, diameter=DIAMETER, anisotropy=ANISOTROPY)
    with tifffile.TiffFile(out / "cells_cp_masks.tif") as masks:
        assert masks.is_imagej and masks.series[0].axes == "ZYX" and masks.series[0].dtype == np.uint16
        assert masks.imagej_metadata["spacing"] == 1.0 and masks.imagej_metadata["unit"] == "micron"
        assert masks.pages[0].tags["XResolution"].value == (2, 1)
        np.testing.assert_array_equal(masks.asarray(), expected.masks)
    with tifffile.TiffFile(out / "cells_cp_flows.tif") as flows:
        assert flows.series[0].axes == "ZCYX" and flows.series[0].shape == (20, 4, 64, 64)
    zarr_masks = ome_zarr.Image(str(out / "cells3_cp_masks.zarr"))
    assert zarr_masks.voxel_size("zyx") == (2e4, 1e4, 1e4)
    np.testing.assert_array_equal(zarr_masks.spatial("zyx"), expected.masks)
    assert not os.path.exists(out / "cells_cp_output.png")

    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, stack[0].astype(np.uint16))
    for path, flags, fragments in [
            (inputs / "cells.tif", [], ("cells.tif", "Z-stack", "--do_3D")),
            (flat, ["--do_3D"], ("flat.tif", "segment Z-stacks")),
            (inputs / "cells.tif", ["--do_3D", "--stitch_threshold=0.3"], ("choose one",))]:
        result = run_cli("biomodels.predict", "--task=cellular", "--model=cellpose:cyto3", f"--input={path}",
                         f"--output={tmp_path / 'bad'}", f"--diameter={DIAMETER}", *flags)
        assert_one_line_error(result, *fragments)


def test_evaluate_takes_a_cellpose_checkpoint_file(trained, tmp_path, dask_scheduler):
    """evaluate --model=CHECKPOINT --data_dir: the disc network, as the Cellpose file
    Cellpose wrote, scores discs of a data set prepared from a Cellpose folder (AP@0.5 ≥
    0.9) and writes the table under --output; the split in parts on two workers, which
    open the file themselves, gives the same table. --model without --data_dir, or with
    --model_dir, is one line."""
    import json

    from biomodels import cluster
    from biomodels import config as config_lib
    from biomodels.evaluation import evaluate_named
    from biomodels.pipelines.synthetic.cell_stacks import disc_image
    from biomodels.prepare import prepare_dataset
    from biomodels.tasks import get

    folder = tmp_path / "discs"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for name in ("train0", "train1", "test0", "test1", "test2"):
        image, labels = disc_image(rng, 96, tries=20)
        tifffile.imwrite(folder / f"{name}.tif", (image * 1000).astype(np.uint16))
        tifffile.imwrite(folder / f"{name}_masks.tif", labels.astype(np.uint16))
    task = get("cellular")
    prepare_dataset(task, config_lib.resolve(task, "quick", ["test_pattern=test"]), str(tmp_path / "data"),
                    input_path=str(folder), fractions=(1.0, 0.0, 0.0), show_progress=False)
    checkpoint = trained["folder"] / "cpnet.pth"
    result = run_cli("biomodels.evaluate", "--task=cellular", f"--model={checkpoint}", f"--data_dir={tmp_path / 'data'}",
                     f"--output={tmp_path / 'scores'}")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "scores" / "metrics_test.json").read_text())
    assert metrics["images"] == 3 and metrics["ap@0.5"] >= 0.9, metrics
    with cluster.executor(dask_scheduler) as executor:
        parted = evaluate_named(task, str(checkpoint), str(tmp_path / "data"), executor=executor)
    assert parted == pytest.approx(metrics)
    for flags, fragment in [([f"--model={checkpoint}"], "needs --data_dir"),
                            ([f"--model={checkpoint}", f"--model_dir={tmp_path}"], "one of --model_dir")]:
        assert_one_line_error(run_cli("biomodels.evaluate", "--task=cellular", *flags), fragment)


def test_the_bioimageio_package_answers_instance_masks(trained, tmp_path, monkeypatch):
    """The package of the disc network declares Cellpose's flow dynamics on its output
    (the run's thresholds): bioimage.io's validator accepts it; in an environment with
    bioimageio.core 0.11 and Cellpose 3.1.1.2, bioimage.io's own test passes and its
    predict gives the labels of the package's test output, which are our masks of the
    test image (AP@0.5 ≥ 0.95 against predict's, with its tiles and border). The test
    image is discs, what this network knows (a run's is a synthetic cell image)."""
    import zipfile

    from bioimageio.spec import load_description

    from biomodels.export.bioimageio import write_package
    from biomodels.export.savedmodel import export_saved_model
    from biomodels.ops.matching import average_precision
    from conftest import assert_bioimageio_core_passes

    from biomodels.pipelines.synthetic.cell_stacks import disc_image
    from biomodels.tasks.cellular import serving
    from biomodels.tasks.cellular.inference import cpnet_config

    discs, _ = disc_image(np.random.default_rng(7), 128, tries=40)
    monkeypatch.setattr(serving, "bioimageio_test_input", lambda config: (
        "images", np.stack([discs * 1000, np.zeros_like(discs)], axis=-1)[np.newaxis]))
    model, network = trained["model"], trained["network"]
    config = cpnet_config(model.task, network)
    saved_model = export_saved_model(model.task, network, config, str(tmp_path / "saved_model"))
    package = write_package(model.task, saved_model, config, str(tmp_path / "1.bioimageio.zip"))
    summary = load_description(package, perform_io_checks=True).validation_summary
    assert summary.status in ("passed", "valid-format"), [error.msg for d in summary.details for error in d.errors]
    with zipfile.ZipFile(package) as archive:
        image = np.load(archive.open("test_input_images.npy"))[0]
        labels = np.load(archive.open("test_output_masks.npy"))[0, 0]
    assert labels.dtype == np.uint16 and labels.max() >= 5
    ours = model.predict(image, diameter=config.diameter_mean)
    assert average_precision(ours.masks, labels)[0][0] >= 0.95
    assert_bioimageio_core_passes(package, seeds=(1,), environment="bioimageio-cellpose")

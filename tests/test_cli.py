"""The command lines end to end on a tiny synthetic data set, and their handling of
user mistakes: one line naming the file or flag, exit status 2, nothing half-written."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from biomodels.pipelines import readers
from conformance import StudyConformance, predict_files
from conftest import TINY_CRYOET, assert_bioimageio_core_passes, assert_one_line_error, run_cli

SETS = [arg for item in TINY_CRYOET for arg in ("--set", item)]


class TestCryoETConformance(StudyConformance):
    task_name = "cryoet"
    settings = TINY_CRYOET
    prepare_flags = ("--num_examples=3", "--seed=2")
    train_flags = ("--epochs=2", "--steps_per_epoch=2")
    served_options = {"tile": 32, "overlap": 8, "probabilities": True}

    def write_input(self, folder):
        folder.mkdir()
        volume = np.random.default_rng(5).normal(size=(2, 40, 56)).astype(np.float32)
        readers.write_mrc(str(folder / "tomo.mrc"), volume, voxel_size=(21.0, 21.0, 21.0))
        return folder / "tomo.mrc"

    def assert_python_equals_files(self, run, path, files, tmp_path):
        import biomodels
        from biomodels.tasks.cryoet.config import CLASS_NAMES, FEATURE_CLASSES

        predict_files("cryoet", run, path, files, probabilities=True)
        assert (files / "tomo_labels.mrc").exists() and (files / "tomo_ribosome.mrc").exists()
        for model in (biomodels.load(run), biomodels.load(run / "export")):
            result = model.predict(path)
            np.testing.assert_array_equal(result.labels, readers.read_mrc(str(files / "tomo_labels.mrc")).data)
            for index in FEATURE_CLASSES:
                written = readers.read_mrc(str(files / f"tomo_{CLASS_NAMES[index]}.mrc")).data
                np.testing.assert_allclose(result.probabilities[..., index], written, atol=1e-5)
        # an array answers as its file does
        array = biomodels.load(run).predict(readers.read_mrc(str(path)).data)
        np.testing.assert_array_equal(array.labels, result.labels)

    def write_damaged_input(self, folder):
        path = self.write_input(folder)
        with open(path, "r+b") as handle:
            handle.truncate(1024 + 100)
        return path, "not a readable MRC file (cut short"

    def bad_arrays(self):
        from biomodels.errors import InputError

        return [(np.zeros(5), {}, InputError, r"expected a tomogram \(Z, Y, X\) or a slice")]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """prepare --synthetic, then train a few steps, through the command lines."""
    run = TestCryoETConformance.trained(tmp_path_factory)
    return run.root, run.data_dir, run.model_dir, run.trained


@pytest.mark.slow
def test_prepare_writes_shards_and_manifest(trained_run):
    _, data_dir, _, _ = trained_run
    names = sorted(os.listdir(data_dir))
    assert names == ["dataset.json", "test-00000-of-00001.tfrecord", "train-00000-of-00001.tfrecord", "val-00000-of-00001.tfrecord"]
    manifest = json.loads((data_dir / "dataset.json").read_text())
    assert manifest["synthetic"] is True and manifest["seed"] == 2


@pytest.mark.slow
def test_train_writes_a_complete_run(trained_run):
    _, _, model_dir, result = trained_run
    for name in ("config.json", "best.keras", "last.keras", "metrics_test.json", "log.txt", "history.csv", "export/saved_model.pb"):
        assert (model_dir / name).exists(), name
    config = json.loads((model_dir / "config.json").read_text())
    assert config["task"] == "cryoet" and config["config"]["depth"] == 3
    assert "mean of the 5 features" in result.stdout
    # stdout is a pipe, not a terminal: one line per epoch, no progress-bar redraws
    assert "━" not in result.stdout and "\r" not in result.stdout
    assert [line[:6] for line in result.stdout.splitlines() if line.startswith("2/2 - ")] == ["2/2 - "] * 2
    metrics = json.loads((model_dir / "metrics_test.json").read_text())
    assert 0.0 <= metrics["mean_iou_features"] <= 1.0
    events = [f for _, _, files in os.walk(model_dir / "logs") for f in files if "tfevents" in f]
    assert len(events) >= 2  # scalars and validation images
    assert "cuInit" not in result.stderr and "oneDNN" not in result.stderr


@pytest.mark.slow
def test_evaluate_export_and_predict(trained_run, tmp_path):
    root, data_dir, model_dir, _ = trained_run
    result = run_cli("biomodels.evaluate", "--task=cryoet", f"--model_dir={model_dir}", "--split=val")
    assert result.returncode == 0, result.stderr
    assert json.loads((model_dir / "metrics_val.json").read_text())["pixels"] > 0
    # the console command runs the same command with the same flags
    console = subprocess.run([os.path.join(os.path.dirname(sys.executable), "biomodels"), "evaluate", "--task=cryoet",
                              f"--model_dir={model_dir}", "--split=val"], capture_output=True, text=True, timeout=600)
    assert console.returncode == 0, console.stderr
    assert console.stdout == result.stdout

    export_dir = tmp_path / "serving"
    for version in (1, 2):
        result = run_cli("biomodels.export", "--task=cryoet", f"--model_dir={model_dir}", f"--export_dir={export_dir}", "--bioimageio")
        assert result.returncode == 0, result.stderr
        assert (export_dir / "cryoet" / str(version) / "saved_model.pb").exists()
    with zipfile.ZipFile(export_dir / "cryoet" / "2.bioimageio.zip") as archive:
        rdf = json.loads(archive.read("rdf.yaml"))
    assert rdf["inputs"][0]["axes"][1]["scale"] == 20.0  # the synthetic tomograms' 2 nm voxels, in ångström
    assert_bioimageio_core_passes(export_dir / "cryoet" / "2.bioimageio.zip", seeds=(3,))
    assert "cryoet" in (export_dir / "models.config").read_text()

    volume = np.random.default_rng(0).normal(size=(3, 40, 72)).astype(np.float32)
    readers.write_mrc(str(tmp_path / "tomo.mrc"), volume, voxel_size=(21.0, 21.0, 21.0), origin=(5.0, 6.0, 7.0),
                      start=(100, -20, 3))
    for model in (export_dir / "cryoet" / "1", model_dir):
        out = tmp_path / f"out_{model.name}"
        result = run_cli("biomodels.predict", "--task=cryoet", f"--model={model}", f"--input={tmp_path / 'tomo.mrc'}",
                         f"--output={out}", "--probabilities", "--tile=32", "--overlap=8")
        assert result.returncode == 0, result.stderr
        labels = readers.read_mrc(str(out / "tomo_labels.mrc"))
        assert labels.data.shape == (3, 40, 72) and labels.data.dtype == np.int8 and 0 <= labels.data.min() and labels.data.max() <= 5
        assert labels.voxel_size == pytest.approx((21.0, 21.0, 21.0)) and labels.origin == pytest.approx((5.0, 6.0, 7.0))
        assert labels.start == (100, -20, 3)  # programs that place maps by their start indices put ours in place
        ribosome = readers.read_mrc(str(out / "tomo_ribosome.mrc")).data
        assert ribosome.dtype == np.float32 and 0.0 <= ribosome.min() and ribosome.max() <= 1.0
    np.testing.assert_array_equal(readers.read_mrc(str(tmp_path / "out_1" / "tomo_labels.mrc")).data,
                                  readers.read_mrc(str(tmp_path / "out_run" / "tomo_labels.mrc")).data)


@pytest.mark.slow
def test_unknown_task_and_bad_flag():
    assert_one_line_error(run_cli("biomodels.train", "--task=nope"), "unknown task 'nope'")
    assert_one_line_error(run_cli("biomodels.train", "--task=cryoet", "--precision=float8"), "precision")
    assert_one_line_error(run_cli("biomodels.prepare", "--task=cryoet", "--output_dir=x", "--synthetic", "--no_such_flag"), "no_such_flag")


@pytest.mark.slow
def test_train_on_a_missing_data_set_writes_nothing(tmp_path):
    result = run_cli("biomodels.train", "--task=cryoet", f"--data_dir={tmp_path / 'nowhere'}", f"--model_dir={tmp_path / 'run'}")
    assert_one_line_error(result, "nowhere/dataset.json", "not found")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_bad_inputs_leave_nothing_behind(tmp_path):
    raw = tmp_path / "raw"
    density = np.random.default_rng(0).normal(size=(2, 16, 16)).astype(np.float32)
    readers.write_mrc(str(raw / "good.mrc"), density)
    readers.write_mrc(str(raw / "good_labels.mrc"), np.zeros((2, 16, 16), np.uint8))
    readers.write_mrc(str(raw / "worse.mrc"), density)
    readers.write_mrc(str(raw / "worse_labels.mrc"), np.full((2, 16, 16), 9, np.uint8))
    out = tmp_path / "prepared"
    result = run_cli("biomodels.prepare", "--task=cryoet", f"--input={raw}", f"--output_dir={out}", *SETS)
    assert_one_line_error(result, "worse_labels.mrc", "labels must lie in 0..5")
    assert not out.exists() or os.listdir(out) == []
    assert [name for name in os.listdir(tmp_path) if name.startswith(".prepare")] == []

    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run_cli("biomodels.prepare", "--task=cryoet", f"--input={empty}", f"--output_dir={out}"), "empty", "no tomograms")

    truncated = tmp_path / "cut" / "t.mrc"
    readers.write_mrc(str(truncated), density)
    readers.write_mrc(str(truncated.parent / "t_labels.mrc"), np.zeros((2, 16, 16), np.uint8))
    with open(truncated, "r+b") as handle:
        handle.truncate(1100)
    assert_one_line_error(run_cli("biomodels.prepare", "--task=cryoet", f"--input={truncated.parent}", f"--output_dir={out}"),
                           "t.mrc", "not a readable MRC")


def test_an_error_after_a_progress_bar_starts_its_own_line(tmp_path):
    """On a terminal the bar is redrawn in place with no line end; the error line must
    not be glued to it."""
    import pty
    import subprocess
    import sys

    raw = tmp_path / "raw"
    density = np.random.default_rng(0).normal(size=(2, 16, 16)).astype(np.float32)
    for name, labels in (("a", 0), ("b", 0), ("c", 9)):
        readers.write_mrc(str(raw / f"{name}.mrc"), density)
        readers.write_mrc(str(raw / f"{name}_labels.mrc"), np.full((2, 16, 16), labels, np.uint8))
    primary, secondary = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "biomodels.prepare", "--task=cryoet", f"--input={raw}",
                                f"--output_dir={tmp_path / 'out'}", *SETS], stdout=secondary, stderr=secondary,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=300) == 2
    text = output.decode(errors="replace").replace("\r\n", "\n")
    assert "item" in text  # the bar was drawn
    (line,) = [line for line in text.split("\n") if "error:" in line]
    assert line.startswith("error: ") and "c_labels.mrc" in line, repr(text[-500:])


@pytest.mark.slow
def test_predict_bad_inputs(trained_run, tmp_path):
    _, _, model_dir, _ = trained_run
    assert_one_line_error(run_cli("biomodels.predict", "--task=cryoet", f"--model={model_dir}", f"--input={tmp_path / 'absent.mrc'}",
                                   f"--output={tmp_path / 'o'}"), "absent.mrc", "no such file")
    nan_volume = np.zeros((1, 16, 16), np.float32)
    nan_volume[0, 3, 3] = np.nan
    readers.write_mrc(str(tmp_path / "nan.mrc"), nan_volume)
    result = run_cli("biomodels.predict", "--task=cryoet", f"--model={model_dir}", f"--input={tmp_path / 'nan.mrc'}", f"--output={tmp_path / 'o'}")
    assert_one_line_error(result, "nan.mrc", "NaN or Inf")
    assert not (tmp_path / "o" / "nan_labels.mrc").exists()
    assert_one_line_error(run_cli("biomodels.evaluate", "--task=cryoet", f"--model_dir={tmp_path}"), "config.json", "not found")
    assert_one_line_error(run_cli("biomodels.console", "fit", "--task=cryoet"), "unknown command 'fit'", "prepare, train")
    # an output folder that is a file, and an output file that is a folder
    volume = np.zeros((1, 16, 16), np.float32)
    readers.write_mrc(str(tmp_path / "tomo.mrc"), volume)
    (tmp_path / "taken").write_text("a file")
    assert_one_line_error(run_cli("biomodels.predict", "--task=cryoet", f"--model={model_dir}", f"--input={tmp_path / 'tomo.mrc'}",
                                  f"--output={tmp_path / 'taken'}"), "taken", "is a file")
    # a folder whose second tomogram is bad: the first one's outputs are whole, kept and listed
    readers.write_mrc(str(tmp_path / "folder" / "a.mrc"), volume)
    readers.write_mrc(str(tmp_path / "folder" / "b.mrc"), nan_volume)
    result = run_cli("biomodels.predict", "--task=cryoet", f"--model={model_dir}", f"--input={tmp_path / 'folder'}",
                     f"--output={tmp_path / 'partial'}")
    assert_one_line_error(result, "b.mrc", "NaN or Inf", "the 1 file(s) already written for earlier inputs are whole and "
                          f"kept in {tmp_path / 'partial'}: a_labels.mrc")
    assert sorted(os.listdir(tmp_path / "partial")) == ["a_labels.mrc"]
    (tmp_path / "out" / "tomo_labels.mrc").mkdir(parents=True)
    assert_one_line_error(run_cli("biomodels.predict", "--task=cryoet", f"--model={model_dir}", f"--input={tmp_path / 'tomo.mrc'}",
                                  f"--output={tmp_path / 'out'}"), "tomo_labels.mrc", "is a folder")


@pytest.mark.slow
def test_task_options_are_flags_of_that_task_only(tmp_path):
    # another task's option is an unknown flag: one line, exit status 2
    result = run_cli("biomodels.predict", "--task=ccp", f"--model={tmp_path}", f"--input={tmp_path}",
                     f"--output={tmp_path / 'out'}", "--diameter=30")
    assert_one_line_error(result, "diameter")
    result = run_cli("biomodels.evaluate", "--task=cryoet", f"--model_dir={tmp_path}", "--flow_threshold=0.4")
    assert_one_line_error(result, "flow_threshold")
    # --help with --task lists that task's options and not another's
    shown = run_cli("biomodels.predict", "--task=cellular", "--help")
    assert "--flow_threshold" in shown.stdout and "--diameter" in shown.stdout and "--target_recall" not in shown.stdout
    shown = run_cli("biomodels.evaluate", "--task=cellular", "--help")
    assert "--min_size" in shown.stdout and "--tile" not in shown.stdout


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_predict_on_an_ome_zarr_tomogram_writes_ome_zarr_equal_to_the_mrc_outputs(trained_run, tmp_path, version):
    """The command on a tomogram stored as OME-Zarr (as the cryoET Data Portal serves
    them) writes its labels and probabilities as OME-Zarr of the same version, with the
    voxel size and origin kept, equal to what it writes for the same tomogram as MRC."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    from biomodels.pipelines import ome_zarr

    _, _, model_dir, _ = trained_run
    folder = TestCryoETConformance().write_input(tmp_path / "mrc")
    volume = readers.read_mrc(str(folder))
    ome_zarr.write_image(str(tmp_path / "zarr" / "tomo.zarr"), volume.data, "zyx", volume.voxel_size[::-1],
                         origin=(5.0, 6.0, 7.0), version=version)
    result = run_cli("biomodels.predict", "--task=cryoet", f"--model={model_dir}", f"--input={tmp_path / 'zarr'}",
                     f"--output={tmp_path / 'from_zarr'}", "--probabilities", "--tile=32", "--overlap=8")
    assert result.returncode == 0, result.stderr
    predict_files("cryoet", model_dir, folder, tmp_path / "from_mrc", probabilities=True, tile=32, overlap=8)
    assert sorted(os.listdir(tmp_path / "from_zarr")) == [name.replace(".mrc", ".zarr")
                                                         for name in sorted(os.listdir(tmp_path / "from_mrc"))]
    for name in os.listdir(tmp_path / "from_mrc"):
        written = ome_zarr.ZarrSlices(str(tmp_path / "from_zarr" / name.replace(".mrc", ".zarr")))
        assert written.voxel_size == (21.0, 21.0, 21.0) and written.origin == (7.0, 6.0, 5.0)
        assert written.image.version == version
        expected = readers.read_mrc(str(tmp_path / "from_mrc" / name)).data
        np.testing.assert_allclose(np.stack(list(written)), expected, atol=1e-6)
    node = list(Reader(parse_url(str(tmp_path / "from_zarr" / "tomo_labels.zarr")))())[0]
    assert np.asarray(node.data[0]).dtype == np.int8 and np.asarray(node.data[0]).shape == (2, 40, 56)


@pytest.mark.parametrize("suffix", [".mrc", ".zarr"])
def test_one_tomogram_in_slabs_on_workers_writes_the_files_of_the_whole(trained_run, tmp_path, dask_scheduler, suffix):
    """--block=2 on a five-slice tomogram: three slab tasks on the workers (statistics
    from every slab first) write the labels and probabilities of the tomogram predicted
    in one piece, MRC header statistics and voxel size included, or OME-Zarr."""
    import mrcfile

    from biomodels import tasks
    from biomodels.cluster import InProcess
    from biomodels.pipelines import ome_zarr
    from biomodels.tasks.base import option_values
    from biomodels.tasks.cryoet.slabs import predict_in_slabs

    _, _, model_dir, _ = trained_run
    volume = np.random.default_rng(8).normal(size=(5, 40, 56)).astype(np.float32)
    path = tmp_path / "in" / f"tomo{suffix}"
    if suffix == ".mrc":
        readers.write_mrc(str(path), volume, voxel_size=(21.0, 21.0, 21.0))
    else:
        ome_zarr.write_image(str(path), volume, "zyx", (21.0, 21.0, 21.0))
    result = run_cli("biomodels.predict", "--task=cryoet", f"--model={model_dir}", f"--input={path}",
                     f"--output={tmp_path / 'slabs'}", "--probabilities", "--tile=32", "--overlap=8", "--block=2",
                     f"--scheduler={dask_scheduler}")
    assert result.returncode == 0, result.stderr
    predict_files("cryoet", model_dir, path, tmp_path / "whole", probabilities=True, tile=32, overlap=8)
    names = sorted(os.listdir(tmp_path / "whole"))
    assert sorted(os.listdir(tmp_path / "slabs")) == names and len(names) == 6
    for name in names:
        if suffix == ".mrc":
            whole, slabs = (mrcfile.open(tmp_path / out / name) for out in ("whole", "slabs"))
            np.testing.assert_allclose(slabs.data, whole.data, atol=1e-6)
            for field in ("dmin", "dmax", "dmean", "rms"):
                assert float(slabs.header[field]) == pytest.approx(float(whole.header[field]), rel=1e-6), field
            assert slabs.voxel_size == whole.voxel_size
            whole.close(), slabs.close()
        else:
            whole, slabs = (ome_zarr.ZarrSlices(str(tmp_path / out / name)) for out in ("whole", "slabs"))
            np.testing.assert_allclose(np.stack(list(slabs)), np.stack(list(whole)), atol=1e-6)
            assert slabs.voxel_size == whole.voxel_size == (21.0, 21.0, 21.0)
    # the slabs are the tasks: three of them, each mapped once per pass
    class Recording(InProcess):
        def __init__(self):
            self.items = []

        def map(self, function, items):
            items = list(items)
            self.items += [item for _, item in items]
            return super().map(function, items)

    executor = Recording()
    task = tasks.get("cryoet")
    written = predict_in_slabs(executor, "cryoet", str(model_dir), str(path), str(tmp_path / "recorded"),
                               option_values(task.predict_options, {"probabilities": True, "tile": 32, "overlap": 8,
                                                                     "block": 2}))
    assert executor.items == [(0, 2), (2, 4), (4, 5)] * 2 and len(written) == 6

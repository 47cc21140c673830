"""Shared fixtures: tiny configurations and tiny raw data in the real formats."""

import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY_CRYOET = ["base_filters=4", "depth=3", "tile_size=32", "synthetic_shape=6,64,64", "batch_size=4"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """No test touches the user's cache of built-in data sets."""
    monkeypatch.setenv("BIOMODELS_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def cryoet_task():
    from biomodels import tasks

    return tasks.get("cryoet")


@pytest.fixture
def tiny_cryoet_config(cryoet_task):
    from biomodels import config as config_lib

    return config_lib.resolve(cryoet_task, "quick", TINY_CRYOET)


@pytest.fixture
def tomogram_dir(tmp_path):
    """Three small synthetic tomograms with their label volumes, as MRC files."""
    from biomodels.pipelines.synthetic import cryoet

    directory = tmp_path / "tomograms"
    cryoet.write_dataset(str(directory), count=3, seed=1, shape=(6, 64, 64))
    return directory


@pytest.fixture
def prepared_cryoet(tmp_path, cryoet_task, tiny_cryoet_config, tomogram_dir):
    from biomodels.prepare import prepare_dataset

    output = tmp_path / "prepared"
    prepare_dataset(cryoet_task, tiny_cryoet_config, str(output), input_path=str(tomogram_dir), seed=0, show_progress=False)
    return output


def run_cli(module, *args, cwd=None, timeout=600):
    """Run `python -m module args…`; returns the CompletedProcess (text)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def reference_environment(name):
    """The python of a reference environment (benchmarks/reference_env.py), created on
    first use."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    import reference_env

    return reference_env.environment_python(name)


def run_reference_script(name, *args):
    """Run benchmarks/reference/<name> in the Cellpose reference environment (created on
    first use, see benchmarks/reference_env.py); returns its stdout."""
    reference_environment("cellpose")
    import reference_env

    return reference_env.run_script(name, *args)


@pytest.fixture(scope="session")
def dask_scheduler():
    """The address of a LocalCluster of two worker processes, one per test process,
    started by biomodels' own executor (`--scheduler=local:2`) and closed at the end."""
    from biomodels import cluster

    with cluster.executor("local:2") as executor:
        yield executor.client.scheduler.address


def train_synthetic_run(root, task, sets, epochs=1, steps_per_epoch=2):
    """Prepare the task's synthetic data under `root` and train a run on it with the
    command lines; returns (model_dir, the train command's CompletedProcess)."""
    data_dir, model_dir = root / "data", root / "run"
    result = run_cli("biomodels.prepare", f"--task={task}", f"--output_dir={data_dir}", "--synthetic", *sets)
    assert result.returncode == 0, result.stderr
    result = run_cli("biomodels.train", f"--task={task}", f"--data_dir={data_dir}", f"--model_dir={model_dir}",
                     f"--epochs={epochs}", f"--steps_per_epoch={steps_per_epoch}", *sets)
    assert result.returncode == 0, result.stderr
    return model_dir, result


FRESH_PROCESS = r"""
import importlib.abc, json, sys
class NoBiomodels(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "biomodels" or name.startswith("biomodels."):
            raise ImportError("biomodels is hidden from this process")
sys.meta_path.insert(0, NoBiomodels())
try:
    import biomodels
    raise SystemExit("biomodels was importable")
except ImportError:
    pass
import numpy as np, tensorflow as tf
saved_model, folder = sys.argv[1:]
inputs = np.load(folder + "/inputs.npz")
signatures = tf.saved_model.load(saved_model).signatures
arrays, dtypes = {}, {}
for signature in sorted({key.split("/")[0] for key in inputs.files}):
    given = {key.split("/")[1]: tf.constant(inputs[key]) for key in inputs.files if key.split("/")[0] == signature}
    for name, value in signatures[signature](**given).items():
        arrays[f"{signature}/{name}"] = value.numpy()
        dtypes.setdefault(signature, {})[name] = value.dtype.name
np.savez(folder + "/outputs.npz", **arrays)
print(json.dumps(dtypes))
"""


def call_without_biomodels(tmp_path, saved_model, calls):
    """Call SavedModel signatures, {signature: {input name: array}}, in one fresh Python
    process where biomodels cannot be imported; returns ({signature: {output: array}},
    {signature: {output: dtype name}})."""
    import json

    folder = tmp_path / "fresh"
    folder.mkdir(exist_ok=True)
    np.savez(folder / "inputs.npz", **{f"{signature}/{name}": array for signature, inputs in calls.items()
                                       for name, array in inputs.items()})
    (folder / "fresh.py").write_text(FRESH_PROCESS)
    result = subprocess.run([sys.executable, str(folder / "fresh.py"), str(saved_model), str(folder)],
                            capture_output=True, text=True, cwd=folder, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    arrays = {signature: {} for signature in calls}
    with np.load(folder / "outputs.npz") as outputs:
        for key in outputs.files:
            signature, name = key.split("/")
            arrays[signature][name] = outputs[key]
    return arrays, json.loads(result.stdout.strip().splitlines()[-1])


def run_without_biomodels(tmp_path, saved_model, inputs, signature="serving_default"):
    """One signature's ({output name: array}, {output name: dtype name}) from a fresh
    process without biomodels (see call_without_biomodels)."""
    arrays, dtypes = call_without_biomodels(tmp_path, saved_model, {signature: inputs})
    return arrays[signature], dtypes[signature]


def error_lines(result):
    """The stderr lines that are not warnings from libraries."""
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def assert_one_line_error(result, *fragments):
    """Exit status 2 and one `error:` line holding every fragment."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def random_volume(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def assert_served_like_local(task_name, export_path, input_path, tmp_path, options):
    """Predict `input_path` with the local SavedModel at `export_path`, through TF
    Serving's REST API (the predict command line) and through its gRPC API, all three
    with the task's predict `options`; every file written must be the same, floats to
    1e-5 and everything else exactly. Returns the REST run's output folder."""
    from biomodels import tasks
    from biomodels.predictors import GrpcPredictor, SavedModelPredictor
    from tf_serving_standin import TFServingStandIn

    task = tasks.get(task_name)
    full = {option.name: option.default for option in task.predict_options} | options
    parsed = {option.name: option.value(full[option.name]) for option in task.predict_options}
    local, rest, grpc = tmp_path / "served_local", tmp_path / "served_rest", tmp_path / "served_grpc"
    for folder in (local, grpc):
        folder.mkdir()
    task.predict_files(SavedModelPredictor(str(export_path)), str(input_path), str(local), parsed)
    flags = [f"--{name}={','.join(map(str, value)) if isinstance(value, (list, tuple)) else value}"
             for name, value in options.items()]
    with TFServingStandIn({task_name: {1: export_path}}) as server:
        result = run_cli("biomodels.predict", f"--task={task_name}", f"--model={server.rest_url}/v1/models/{task_name}",
                         f"--input={input_path}", f"--output={rest}", *flags)
        assert result.returncode == 0, result.stderr[-3000:]
        task.predict_files(GrpcPredictor(server.grpc_url, model=task_name), str(input_path), str(grpc), parsed)
    for other in (rest, grpc):
        assert sorted(os.listdir(other)) == sorted(os.listdir(local))
        for name in os.listdir(local):
            assert_same_file(local / name, other / name)
    return rest


def assert_same_file(expected, found, atol=1e-5):
    """The same content by kind of file: arrays (TIFF, MRC, PNG, .npy), tables (CSV),
    JSON; floats to `atol`, other values exactly; what names the model (its path or
    address) is left out."""
    import csv
    import json

    import tifffile
    from PIL import Image

    from biomodels.pipelines import readers

    suffix = expected.suffix.lower()
    if suffix in (".tif", ".tiff", ".mrc", ".png", ".npy", ".gif"):
        load = {".tif": tifffile.imread, ".tiff": tifffile.imread, ".npy": np.load,
                ".mrc": lambda path: readers.read_mrc(str(path)).data}.get(suffix, lambda path: np.asarray(Image.open(path)))
        assert_same_values(load(expected), load(found), expected.name, atol)
    elif suffix == ".csv":
        with open(expected) as a, open(found) as b:
            rows_a, rows_b = list(csv.reader(a)), list(csv.reader(b))
        assert len(rows_a) == len(rows_b), expected.name
        for row_a, row_b in zip(rows_a, rows_b):
            assert len(row_a) == len(row_b), expected.name
            for cell_a, cell_b in zip(row_a, row_b):
                try:
                    assert abs(float(cell_a) - float(cell_b)) <= atol, (expected.name, cell_a, cell_b)
                except ValueError:
                    assert cell_a == cell_b, (expected.name, cell_a, cell_b)
    elif suffix == ".json":
        a, b = json.loads(expected.read_text()), json.loads(found.read_text())
        a.pop("model", None), b.pop("model", None)
        assert_same_json(a, b, expected.name, atol)
    else:
        assert expected.read_bytes() == found.read_bytes(), expected.name


def assert_same_values(a, b, name, atol=1e-5):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, name
    if np.issubdtype(a.dtype, np.floating):
        assert np.abs(a.astype(np.float64) - b).max(initial=0.0) <= atol, name
    else:
        np.testing.assert_array_equal(a, b, err_msg=name)


def assert_same_json(a, b, name, atol=1e-5):
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), name
        for key in a:
            assert_same_json(a[key], b[key], f"{name}:{key}", atol)
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), name
        for x, y in zip(a, b):
            assert_same_json(x, y, name, atol)
    elif isinstance(a, float):
        assert abs(a - b) <= atol or (np.isnan(a) and np.isnan(b)), (name, a, b)
    else:
        assert a == b, (name, a, b)


def assert_bioimageio_core_passes(package, seeds=(1,), environment=None):
    """bioimage.io's own test of `package` (bioimageio.core 0.11, what the model zoo
    runs) passes in a fresh process under each hash seed, and its `predict` on the test
    input gives the test output: in this environment, or in the reference environment
    `environment` names (benchmarks/reference_env.py)."""
    import json

    import tempfile

    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bioimageio_core_check.py")
    python = reference_environment(environment) if environment else sys.executable
    for seed in seeds:
        env = dict(os.environ, PYTHONHASHSEED=str(seed), TF_CPP_MIN_LOG_LEVEL="2")
        # bioimageio.core unzips the weights into ./bioimageio_unzipped_tf_weights: a folder of its own per
        # run, or two test workers load each other's models
        with tempfile.TemporaryDirectory() as cwd:
            result = subprocess.run([python, script, os.path.abspath(package)], capture_output=True, text=True,
                                    env=env, timeout=600, cwd=cwd)
        assert result.returncode == 0, result.stderr[-3000:]
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["status"] == "passed", f"hash seed {seed}: " + "; ".join(report["failures"])
        assert report["output_shape"] == report["expected_shape"] and report["max_difference"] < 1e-4, (seed, report)


def export_package(task_name, model_dir, export_dir):
    """The bioimage.io package the export command writes for a trained run."""
    result = run_cli("biomodels.export", f"--task={task_name}", f"--model_dir={model_dir}", f"--export_dir={export_dir}",
                     "--bioimageio", "--warmup=0")
    assert result.returncode == 0, result.stderr
    return export_dir / task_name / "1.bioimageio.zip"

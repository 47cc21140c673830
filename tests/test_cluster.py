"""The cluster executor (biomodels.cluster) on a LocalCluster of two worker processes on
loopback: work really runs in two processes at once, each worker's threads are kept to
its cores, a worker killed mid-task has its task retried, errors travel back whole, and
the predict command on `--scheduler=local:2` stops at a damaged input with one line,
keeping the files of the inputs done. Every study's predict on a cluster against serial
predict is in the conformance harness (tests/conformance.py)."""

import os
import pickle
import sys

import numpy as np
import pytest
import tifffile

from biomodels import cluster
from biomodels.errors import CheckpointError, ConfigError, InputError
from conftest import assert_one_line_error, run_cli


@pytest.fixture(scope="module")
def executor(dask_scheduler):
    with cluster.executor(dask_scheduler) as connected:
        yield connected


def wait_for_the_other(name):
    """Set this task's event, then wait for the other's: only two tasks running at once
    can both finish."""
    import distributed

    distributed.Event(name).set()
    other = distributed.Event("b" if name == "a" else "a")
    return os.getpid() if other.wait(timeout=60) else None


def test_two_worker_processes_run_at_once(executor):
    results = dict(executor.map(wait_for_the_other, ["a", "b"]))
    assert None not in results.values()
    assert len({results["a"], results["b"], os.getpid()}) == 3
    assert executor.workers == 2


def worker_threads(_):
    return {name: os.environ.get(name) for name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS",
                                                     "BIOMODELS_WORKER")}


def test_each_worker_keeps_its_threads_to_its_cores(executor):
    # the workers' settings stay theirs: this process (where a LocalCluster's nannies live) keeps its own
    assert "BIOMODELS_WORKER" not in os.environ and os.environ.get("PYTHONHASHSEED") != "6640"
    cores = str(max(1, (os.cpu_count() or 1) // 2))
    for _, found in executor.map(worker_threads, range(4)):
        assert found == {"TF_NUM_INTRAOP_THREADS": cores, "OMP_NUM_THREADS": cores, "NUMBA_NUM_THREADS": cores,
                         "BIOMODELS_WORKER": "1"}


def die_the_first_time(marker):
    """Kill this worker process the first time `marker` is seen; answer the next time."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return "done"
    os._exit(1)


def test_a_task_whose_worker_dies_is_retried(executor, tmp_path):
    results = dict(executor.map(die_the_first_time, [str(tmp_path / "first"), str(tmp_path / "second")]))
    assert results == {str(tmp_path / "first"): "done", str(tmp_path / "second"): "done"}


def refuse(path):
    raise InputError(path, "is damaged")


def test_a_users_error_comes_back_whole_from_a_worker(executor):
    with pytest.raises(InputError) as raised:
        list(executor.map(refuse, ["/data/x.tif"]))
    assert raised.value.path == "/data/x.tif" and raised.value.problem == "is damaged"


def test_errors_survive_pickling():
    for error in (InputError("/a/b.tif", "cut short"), CheckpointError("c.pth", "not a CPnet"), ConfigError("--x=1: no")):
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error)
        assert getattr(again, "path", None) == getattr(error, "path", None)


def test_scheduler_values_and_the_missing_extra(monkeypatch):
    assert cluster.parse_scheduler("local:3") == ("local", 3)
    assert cluster.parse_scheduler("tcp://10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")
    assert cluster.parse_scheduler("file:/shared/scheduler.json") == ("file", "/shared/scheduler.json")
    assert cluster.parse_scheduler("slurm:4") == ("slurm", 4)
    for wrong in ("local:0", "local:two", "slurm:", "10.0.0.1:8786", "file:"):
        with pytest.raises(ConfigError, match=f"--scheduler={wrong}: expected"):
            cluster.parse_scheduler(wrong)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"--scheduler=local:2 needs the optional extra distributed: "
                                          r"pip install 'biomodels\[distributed\]'"):
        with cluster.executor("local:2"):
            pass
    with cluster.executor(None) as in_process:
        assert list(in_process.map(str, [1, 2])) == [(1, "1"), (2, "2")]


def test_slurm_workers_come_from_dasks_jobqueue_configuration():
    import dask

    with pytest.raises(ConfigError, match=r"^--scheduler=slurm:2: You must specify how much cores and memory per job "
                                          r"you want to use \(set them in Dask's jobqueue.slurm configuration\)$"):
        cluster._slurm_cluster("slurm:2")
    settings = {"jobqueue.slurm.cores": 4, "jobqueue.slurm.memory": "8GB", "jobqueue.slurm.queue": "cpu",
                "jobqueue.slurm.walltime": "01:00:00"}
    with dask.config.set(settings), cluster._slurm_cluster("slurm:2") as slurm:
        script = slurm.job_script()
    for line in ("#SBATCH -p cpu", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=8G", "#SBATCH -t 01:00:00",
                 f"{sys.executable} -m distributed.cli.dask_worker tcp://"):
        assert line in script, script


class FakeClient:
    """A client whose workers answer `run` with hand-made facts."""

    def __init__(self, facts):
        self.facts = facts

    def run(self, function, paths):
        return self.facts


def test_a_worker_that_differs_or_cannot_see_the_folders_is_named(tmp_path):
    mine = cluster.worker_facts([])
    same = {"tcp://w1:1": {"versions": mine["versions"], "unseen": {}}}
    cluster.DaskExecutor(FakeClient(same)).check_workers([tmp_path])
    older = {**same, "tcp://w2:1": {"versions": {**mine["versions"], "tensorflow": "2.20.0"}, "unseen": {}}}
    with pytest.raises(cluster.ClusterError, match=f"worker tcp://w2:1 runs tensorflow 2.20.0, this process "
                                                   f"{mine['versions']['tensorflow']}"):
        cluster.DaskExecutor(FakeClient(older)).check_workers([tmp_path])
    blind = {**same, "tcp://w3:1": {"versions": mine["versions"], "unseen": {"/data/in": "is not visible"}}}
    with pytest.raises(InputError, match="/data/in: is not visible from worker tcp://w3:1: the workers need"):
        cluster.DaskExecutor(FakeClient(blind)).check_workers([tmp_path])
    assert cluster.worker_facts([str(tmp_path / "absent")])["unseen"] == {str(tmp_path / "absent"): "is not visible"}


@pytest.mark.slow
def test_predict_on_local_workers_stops_at_a_damaged_input_and_keeps_the_rest(tmp_path, monkeypatch):
    """The command on its own LocalCluster: one line naming the damaged image, exit 2,
    the other images' files whole and kept. The model: Cellpose's cyto3 by name, a CPnet
    that Cellpose 3.1.1.2 wrote (random weights) in a cache laid out as Cellpose's,
    which the workers find as the command does (no training needed)."""
    from conftest import run_reference_script

    cache = tmp_path / "cellpose_models"
    cache.mkdir()
    run_reference_script("cpnet_outputs.py", cache, "2,4,8,16,32", 32, 3)
    (cache / "cpnet.pth").rename(cache / "cyto3")
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(cache))
    monkeypatch.setenv("BIOMODELS_CELLPOSE_MODELS_URL", "http://127.0.0.1:9/models")  # nothing listens
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b"):
        tifffile.imwrite(images / f"{name}.tif", np.random.default_rng(0).integers(0, 4000, (48, 40), np.uint16))
    (images / "z_damaged.tif").write_bytes((images / "a.tif").read_bytes()[:200])
    out = tmp_path / "out"
    result = run_cli("biomodels.predict", "--task=cellular", "--model=cellpose:cyto3", f"--input={images}",
                     f"--output={out}", "--scheduler=local:2", "--diameter=24")
    assert_one_line_error(result, "z_damaged.tif", "not a readable image")
    assert "Traceback" not in result.stderr
    for name in ("a", "b"):
        assert tifffile.imread(out / f"{name}_cp_masks.tif").shape == (48, 40)
    assert not [name for name in os.listdir(out) if name.startswith("z_damaged") or name.startswith(".")]


def prepared_examples(data_dir, task):
    """{split: [example, …]} of a prepared data set, in the manifest's order, and its manifest."""
    from biomodels.pipelines import dataset, manifest

    prepared = manifest.read(str(data_dir), task)
    return {split: list(dataset.examples(prepared, split).as_numpy_iterator()) for split in prepared.splits}, prepared


@pytest.mark.parametrize("task_name, sets", [
    ("cryoet", ["tile_size=32", "synthetic_shape=6,64,64"]),
    ("cellular", []),
    ("ccp", []),  # split example by example: a second pass over the workers' held shards
])
def test_prepare_on_workers_gives_the_serial_examples_splits_and_statistics(task_name, sets, executor, tmp_path):
    """The same synthetic raw files (the seeded generator's) prepared in one process
    and on the workers, one task per source (the command's --scheduler flag is in the
    damaged-source test below)."""
    from biomodels import config as config_lib
    from biomodels import tasks
    from biomodels.prepare import prepare_dataset
    from conftest import assert_same_json

    task = tasks.get(task_name)
    config = config_lib.resolve(task, "quick", sets)
    for folder, runs_on in (("serial", None), ("workers", executor)):
        prepare_dataset(task, config, str(tmp_path / folder), synthetic=True, num_examples=3, show_progress=False,
                        executor=runs_on)
    serial, serial_manifest = prepared_examples(tmp_path / "serial", task)
    spread, spread_manifest = prepared_examples(tmp_path / "workers", task)
    for split, examples in serial.items():
        assert len(spread[split]) == len(examples) and (split != "train" or examples)
        for expected, found in zip(examples, spread[split]):
            assert expected.keys() == found.keys()
            for name in expected:
                np.testing.assert_array_equal(found[name], expected[name])
    assert [(s.name, s.split, s.details) for s in spread_manifest.sources] == [
        (s.name, s.split, s.details) for s in serial_manifest.sources]
    assert_same_json(serial_manifest.statistics, spread_manifest.statistics, "statistics", atol=1e-9)
    # one source per task: each wrote its own shards, which the driver renamed in order
    shards = spread_manifest.splits["train"].shards
    assert len(shards) == sum(1 for source in spread_manifest.sources if source.split in ("train", "all"))
    assert not [name for name in os.listdir(tmp_path / "workers") if name.startswith(".")]


def test_prepare_on_workers_stops_at_a_damaged_source_and_writes_nothing(dask_scheduler, tomogram_dir, tmp_path):
    names = sorted(name for name in os.listdir(tomogram_dir) if not name.endswith("_labels.mrc"))
    with open(tomogram_dir / names[-1], "r+b") as handle:
        handle.truncate(1024 + 100)
    output = tmp_path / "out"
    result = run_cli("biomodels.prepare", "--task=cryoet", f"--output_dir={output}", f"--input={tomogram_dir}",
                     f"--scheduler={dask_scheduler}", "--set=tile_size=32")
    assert_one_line_error(result, names[-1], "not a readable MRC file")
    assert "Traceback" not in result.stderr
    assert not output.exists()
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".prepare-")]


FAKE_SBATCH = """#!/usr/bin/env bash
# sbatch as dask-jobqueue calls it (sbatch SCRIPT, a file it removes at once): the job runs here, now
jobs="$FAKE_SLURM/jobs"; mkdir -p "$jobs"
id=$(( $(ls "$jobs" | grep -c '\\.sh$') + 100 ))
cp "$1" "$jobs/$id.sh"
setsid bash "$jobs/$id.sh" > "$jobs/$id.log" 2>&1 < /dev/null &
echo $! > "$jobs/$id.pid"
echo "Submitted batch job $id"
"""
FAKE_SCANCEL = """#!/usr/bin/env bash
for id in "$@"; do
  kill -- -"$(cat "$FAKE_SLURM/jobs/$id.pid")" 2>/dev/null
  echo "$id" >> "$FAKE_SLURM/cancelled"
done
"""
FAKE_SQUEUE = """#!/usr/bin/env bash
for pid in "$FAKE_SLURM"/jobs/*.pid; do
  kill -0 "$(cat "$pid")" 2>/dev/null && echo "$(basename "$pid" .pid) R"
done
"""


@pytest.mark.slow
def test_prepare_on_slurm_workers_through_a_fake_sbatch(tmp_path):
    """--scheduler=slurm:1 end to end: dask-jobqueue writes its job script from Dask's
    jobqueue configuration and hands it to `sbatch` (here a stand-in on PATH that runs
    it on this machine); the worker it starts prepares the data set; on leaving, the job
    is cancelled with `scancel` and no worker is left running."""
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("sbatch", FAKE_SBATCH), ("scancel", FAKE_SCANCEL), ("squeue", FAKE_SQUEUE)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_SLURM=str(tmp_path), TF_CPP_MIN_LOG_LEVEL="2",
               DASK_JOBQUEUE__SLURM__CORES="1", DASK_JOBQUEUE__SLURM__MEMORY="4GB",
               DASK_JOBQUEUE__SLURM__WALLTIME="00:10:00",
               DASK_JOBQUEUE__SLURM__SCHEDULER_OPTIONS="{'host': '127.0.0.1'}",
               DASK_JOBQUEUE__SLURM__WORKER_EXTRA_ARGS="['--host', '127.0.0.1']")
    result = subprocess.run([sys.executable, "-m", "biomodels.prepare", "--task=cellular", "--synthetic",
                             "--num_examples=3", f"--output_dir={tmp_path / 'data'}", "--scheduler=slurm:1"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "data" / "dataset.json").exists()
    script = (tmp_path / "jobs" / "100.sh").read_text()
    assert "#SBATCH --cpus-per-task=1" in script and "#SBATCH -t 00:10:00" in script
    assert "distributed.cli.dask_worker tcp://127.0.0.1:" in script
    assert (tmp_path / "cancelled").read_text().split() == ["100"]
    pid = int((tmp_path / "jobs" / "100.pid").read_text())
    assert not running_in_group(pid, seconds=20)


def running_in_group(group, seconds):
    """The live (not zombie) processes of process group `group` after up to `seconds`."""
    import time

    deadline = time.time() + seconds
    while True:
        alive = []
        for entry in os.listdir("/proc"):
            try:
                fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == group and fields[0] != "Z":
                alive.append(int(entry))
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.5)

"""Training runs: resuming a killed run, determinism, precision, and replicas
(MirroredStrategy over two logical CPUs; two workers on 127.0.0.1)."""

import csv
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from biomodels import runtime
from biomodels.training import RunOptions, train


def _tiny(config, **changes):
    return config.__class__(**{**config.__dict__, "epochs": 2, "steps_per_epoch": 2, **changes})


def test_auto_precision_is_float32_on_cpu_and_jit_follows_the_task(cryoet_task):
    assert runtime.set_precision("auto") == "float32"
    assert runtime.jit_compile("auto", cryoet_task) is False
    assert runtime.jit_compile("true", cryoet_task) is True


KILLED_AFTER_EPOCH = """
import os, runpy, signal, sys
from biomodels import callbacks
save = callbacks.EpochCheckpoints.on_epoch_end
def save_then_die(self, epoch, logs=None):
    save(self, epoch, logs)
    if epoch + 1 == int(os.environ["KILL_AFTER_EPOCH"]):
        os.kill(os.getpid(), signal.SIGKILL)
callbacks.EpochCheckpoints.on_epoch_end = save_then_die
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_module("biomodels.train", run_name="__main__")
"""


def _weights(path):
    import keras

    import biomodels.models  # noqa: F401  registers the custom classes

    return keras.saving.load_model(path).get_weights()


@pytest.mark.slow
def test_the_plain_command_resumes_a_killed_run_to_the_weights_of_an_uninterrupted_one(tmp_path):
    """ccp (dropout and augmentation are random), checkpointed every second epoch, killed
    with SIGKILL after epoch 3 of 4, then the same command again: it continues from epoch
    2's checkpoint, trains epoch 3 again (its logged row forgotten) and ends where a run
    never interrupted ends."""
    from conftest import run_cli
    from test_ccp import TINY_CCP

    sets = [arg for item in TINY_CCP for arg in ("--set", item)]
    data_dir = tmp_path / "data"
    result = run_cli("biomodels.prepare", "--task=ccp", f"--output_dir={data_dir}", "--synthetic", "--num_examples=3", *sets)
    assert result.returncode == 0, result.stderr
    command = ["--task=ccp", f"--data_dir={data_dir}", "--epochs=4", "--steps_per_epoch=3", "--deterministic",
               "--checkpoint_every=2", *sets]
    work = tmp_path / "work"
    work.mkdir()
    (work / "killed.py").write_text(KILLED_AFTER_EPOCH)
    killed = subprocess.run([sys.executable, "killed.py", *command], cwd=work, capture_output=True, text=True,
                            env=dict(os.environ, KILL_AFTER_EPOCH="3"), timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    (run,) = (work / "runs" / "ccp").iterdir()
    assert sorted(os.listdir(run / "backup")) == ["epoch-0002"]
    with open(run / "history.csv") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == [0, 1, 2]
    assert not (run / "finished.json").exists()

    resumed = run_cli("biomodels.train", *command, cwd=work)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"Continuing the unfinished run in {os.path.join('runs', 'ccp', run.name)}" in resumed.stdout
    assert "resuming after epoch 2" in resumed.stdout
    assert os.listdir(work / "runs" / "ccp") == [run.name] and (run / "finished.json").exists()
    with open(run / "history.csv") as handle:
        assert [int(row["epoch"]) for row in csv.DictReader(handle)] == [0, 1, 2, 3]

    whole = run_cli("biomodels.train", *command, f"--model_dir={tmp_path / 'whole'}")
    assert whole.returncode == 0, whole.stderr[-2000:]
    for a, b in zip(_weights(run / "last.keras"), _weights(tmp_path / "whole" / "last.keras"), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    with open(run / "metrics_test.json") as a, open(tmp_path / "whole" / "metrics_test.json") as b:
        assert json.load(a) == pytest.approx(json.load(b), abs=1e-6)

    # a finished run is never touched: the same command now starts a new one
    again = run_cli("biomodels.train", *command, "--epochs=1", cwd=work)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Continuing" not in again.stdout and len(os.listdir(work / "runs" / "ccp")) == 2


@pytest.mark.slow
def test_a_loss_that_turns_nan_leaves_the_last_finite_weights(tmp_path, prepared_cryoet, cryoet_task,
                                                                tiny_cryoet_config, monkeypatch):
    from biomodels import callbacks
    from biomodels.errors import BiomodelsError

    config = _tiny(tiny_cryoet_config, epochs=3)

    def poison_in_second_epoch(self, batch, logs=None):
        if self._epoch == 1 and batch == 1:
            weight = self.model.trainable_weights[0]
            weight.assign(np.full(weight.shape, np.nan, weight.dtype))

    monkeypatch.setattr(callbacks.StopOnNaN, "on_train_batch_begin", poison_in_second_epoch, raising=False)
    run = tmp_path / "run"
    with pytest.raises(BiomodelsError, match=r"epoch 2, batch 1; last.keras and backup/ hold the weights after epoch 1"):
        train(cryoet_task, config, str(prepared_cryoet), str(run), RunOptions(export=False, verbose=0))
    assert os.listdir(run / "backup") == ["epoch-0001"]
    last = _weights(run / "last.keras")
    assert all(np.isfinite(w).all() for w in last)
    monkeypatch.undo()
    # the same run again resumes from the finite epoch and finishes
    metrics = train(cryoet_task, config, str(prepared_cryoet), str(run), RunOptions(export=False, verbose=0))
    assert np.isfinite(list(metrics.values())[0]) and (run / "finished.json").exists()


def test_a_run_directory_in_use_is_refused_in_one_line(tmp_path, prepared_cryoet):
    from biomodels.run_state import lock_run
    from conftest import TINY_CRYOET, assert_one_line_error, run_cli

    run = tmp_path / "run"
    run.mkdir()
    lock = lock_run(str(run))
    sets = [arg for item in TINY_CRYOET for arg in ("--set", item)]
    result = run_cli("biomodels.train", "--task=cryoet", f"--data_dir={prepared_cryoet}", f"--model_dir={run}",
                     "--epochs=1", "--steps_per_epoch=1", *sets)
    assert_one_line_error(result, str(run), f"another train command (process {os.getpid()}) is using this run directory")
    assert not (run / "config.json").exists()
    lock.release()
    lock_run(str(run)).release()  # free again once released


@pytest.mark.slow
def test_a_run_directory_of_another_configuration_is_refused(tmp_path, prepared_cryoet, cryoet_task, tiny_cryoet_config):
    from biomodels.errors import InputError

    options = RunOptions(export=False, verbose=0)
    train(cryoet_task, _tiny(tiny_cryoet_config, epochs=1), str(prepared_cryoet), str(tmp_path / "run"), options)
    with pytest.raises(InputError, match="another task or configuration"):
        train(cryoet_task, _tiny(tiny_cryoet_config, depth=2), str(prepared_cryoet), str(tmp_path / "run"), options)


@pytest.mark.slow
def test_deterministic_runs_give_identical_metrics(tmp_path, prepared_cryoet, cryoet_task, tiny_cryoet_config):
    options = RunOptions(seed=4, deterministic=True, export=False, verbose=0)
    config = _tiny(tiny_cryoet_config)
    first = train(cryoet_task, config, str(prepared_cryoet), str(tmp_path / "a"), options)
    second = train(cryoet_task, config, str(prepared_cryoet), str(tmp_path / "b"), options)
    assert first == second


MIRRORED = """
import sys, json, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from biomodels import config as config_lib, tasks
from biomodels.training import RunOptions, train
task = tasks.get("ccp")
config = config_lib.resolve(task, "quick", sys.argv[3].split())
options = RunOptions(strategy=sys.argv[4], seed=1, deterministic=True, export=False, verbose=0)
print(json.dumps(train(task, config, sys.argv[1], sys.argv[2], options)))
"""


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpus_trains_as_one_device(tmp_path):
    """ccp's feature network (no batch norm, no dropout), 3 steps of global batch 8:
    two replicas of 4 must reach the weights of one device on the same batches."""
    from conftest import run_cli
    from test_ccp import TINY_CCP

    settings = [*TINY_CCP, "model=features", "batch_size=8", "epochs=1", "steps_per_epoch=3"]
    data_dir = tmp_path / "data"
    result = run_cli("biomodels.prepare", "--task=ccp", f"--output_dir={data_dir}", "--synthetic", "--num_examples=2",
                     *[arg for item in settings for arg in ("--set", item)])
    assert result.returncode == 0, result.stderr
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED)
    for strategy in ("default", "mirrored"):
        result = subprocess.run([sys.executable, str(script), str(data_dir), str(tmp_path / strategy), " ".join(settings),
                                 strategy], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"{2 if strategy == 'mirrored' else 1} replica(s)" in result.stdout
    for a, b in zip(_weights(tmp_path / "mirrored" / "last.keras"), _weights(tmp_path / "default" / "last.keras"),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def worker_environments(launcher, ports):
    """The two workers' environments: TF_CONFIG written by hand, or what `srun -n 2` on
    one node sets (SlurmClusterResolver reads it; no TF_CONFIG)."""
    if launcher == "tf_config":
        cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
        return [dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
                for index in range(2)]
    slurm = {"SLURM_JOB_ID": "42", "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_NODELIST": "127.0.0.1",
             "SLURM_STEP_TASKS_PER_NODE": "2", "BIOMODELS_SLURM_PORT": str(ports[0])}
    base = {name: value for name, value in os.environ.items() if name not in ("TF_CONFIG", "CUDA_VISIBLE_DEVICES")}
    return [dict(base, **slurm, SLURM_PROCID=str(index)) for index in range(2)]


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["tf_config", "slurm"])
def test_two_workers_train_to_the_weights_of_one_process_on_the_same_global_batch(tmp_path, launcher):
    """ccp's feature network (no batch norm, no dropout) for 3 epochs of two steps of
    global batch 8: two workers on 127.0.0.1 (4 examples each, gradients all-reduced) must
    end with the weights one process reaches on the same batches, so the test fails if the
    workers' gradients were never applied or never combined. The workers learn of each
    other from TF_CONFIG, or from SLURM's job step as `srun` starts them. Every epoch's
    validation runs (the second used to find the first one's pass finished). Both
    checkpoint every epoch (epochs this short would space out one process's saves): each
    resumes from its own checkpoints, so they must hold the same epochs."""
    from conftest import run_cli
    from test_ccp import TINY_CCP

    sets = [arg for item in [*TINY_CCP, "model=features"] for arg in ("--set", item)]
    data_dir = tmp_path / "data"
    result = run_cli("biomodels.prepare", "--task=ccp", f"--output_dir={data_dir}", "--synthetic", "--num_examples=2", *sets)
    assert result.returncode == 0, result.stderr
    command = [sys.executable, "-m", "biomodels.train", "--task=ccp", f"--data_dir={data_dir}", "--epochs=3",
               "--steps_per_epoch=2", "--batch_size=8", "--deterministic", *sets]
    single = subprocess.run([*command, f"--model_dir={tmp_path / 'single'}"], capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    ports = _free_ports(2)
    if launcher == "slurm":
        ports = [ports[0], ports[0] + 1]  # the resolver gives a node's tasks consecutive ports
    processes = []
    for env in worker_environments(launcher, ports):
        processes.append(subprocess.Popen([*command, f"--model_dir={tmp_path / 'run'}", "--strategy=multi_worker"],
                                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    assert "2 replica(s)" in outputs[0][0]
    one = _weights(tmp_path / "single" / "last.keras")
    for path in (tmp_path / "run" / "last.keras", tmp_path / "run" / "worker-1" / "last.keras"):
        for a, b in zip(_weights(path), one, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    for run in (tmp_path / "run", tmp_path / "run" / "worker-1"):
        assert sorted(os.listdir(run / "backup")) == ["epoch-0002", "epoch-0003"]
    assert (tmp_path / "run" / "export" / "saved_model.pb").exists()
    assert not (tmp_path / "run" / "worker-1" / "export").exists()


def test_the_multi_worker_fix_refuses_a_keras_release_it_was_not_made_for(monkeypatch):
    from biomodels.errors import ConfigError

    monkeypatch.setattr(runtime, "_PATCHED", False)
    monkeypatch.setattr(runtime, "PATCHED_KERAS", ("3.99",))
    with pytest.raises(ConfigError, match=r"made for Keras 3.99, and this is Keras 3\.\d+"):
        runtime.make_strategy("multi_worker")


def test_stop_on_nan_remembers_where():
    import keras

    from biomodels.callbacks import StopOnNaN

    guard = StopOnNaN()
    guard.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    guard.model.stop_training = False  # as model.fit sets it
    guard.on_epoch_begin(2)
    guard.on_train_batch_end(5, {"loss": 0.3})
    assert guard.stopped_at is None and not guard.model.stop_training
    guard.on_train_batch_end(6, {"loss": float("nan")})
    assert guard.stopped_at == (2, 6) and guard.model.stop_training


def _small_compiled_model(seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.BatchNormalization(),
                              keras.layers.Dropout(0.5), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse")
    return model


def test_an_epoch_saves_the_model_once_and_links_best_and_the_epoch_checkpoint(tmp_path, monkeypatch):
    """Three epoch ends (validation loss better, worse, better): one Keras save each, to
    last.keras; best.keras and backup/epoch-N/state.keras are that file (its inode) when
    they are written, and the epoch checkpoint restores weights and optimizer state into a
    fresh model."""
    from biomodels import callbacks, run_state

    model = _small_compiled_model()
    x, y = np.random.default_rng(0).random((32, 4), np.float32), np.ones((32, 1), np.float32)
    saves = []
    monkeypatch.setattr(run_state, "save_model", lambda model, path, save=run_state.save_model: (
        saves.append(path), save(model, path)))
    checkpoints = callbacks.EpochCheckpoints(str(tmp_path), monitor="val_loss", every=1)
    checkpoints.set_model(model)
    inode = lambda name: os.stat(tmp_path / name).st_ino  # noqa: E731
    for epoch, val_loss in enumerate((1.0, 2.0, 0.5)):
        model.fit(x, y, epochs=1, verbose=0)
        model.stop_training = False
        checkpoints.on_epoch_end(epoch, {"val_loss": val_loss})
        assert len(saves) == epoch + 1 and checkpoints.last_saved == epoch + 1
        assert inode(f"backup/epoch-{epoch + 1:04d}/state.keras") == inode("last.keras")
        assert (inode("best.keras") == inode("last.keras")) == (epoch != 1)
    assert sorted(os.listdir(tmp_path / "backup")) == ["epoch-0002", "epoch-0003"]
    fresh = _small_compiled_model(seed=1)
    assert run_state.restore_latest(fresh, str(tmp_path)) == 3
    for ours, theirs in zip(model.get_weights() + model.optimizer.variables, fresh.get_weights() + fresh.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    assert int(fresh.optimizer.iterations) == 3


def test_checkpoints_are_saved_as_often_as_they_cost_at_most_their_budget(tmp_path, monkeypatch):
    """On a clock where an epoch takes 1 s and a Keras save 1/16 s, a 5 % budget saves
    epoch 1 (to measure a save), then the first epoch end at which the last save took at
    most 5 % of the time since it ended: epoch 3 (2 s after a 1/16 s save), epoch 6 (3 s
    after epoch 3's save, which also wrote epoch 2's weights to best.keras: 1/8 s), and
    the last epoch when training ends. An improved epoch that is not saved reaches
    best.keras with the next save, with its own weights, and the model keeps training
    from the weights it had."""
    from biomodels import callbacks, run_state

    clock = [0.0]
    model = _small_compiled_model()
    x, y = np.random.default_rng(0).random((32, 4), np.float32), np.ones((32, 1), np.float32)
    monkeypatch.setattr(run_state, "save_model", lambda model, path, save=run_state.save_model: (
        clock.__setitem__(0, clock[0] + 1 / 16), save(model, path)))
    checkpoints = callbacks.EpochCheckpoints(str(tmp_path), monitor="val_loss", clock=lambda: clock[0])
    checkpoints.set_model(model)
    model.stop_training = False
    checkpoints.on_train_begin()
    weights, saved_after = {}, []

    def assert_holds(name, epochs):
        for ours, theirs in zip(_weights(tmp_path / name), weights[epochs], strict=True):
            np.testing.assert_array_equal(ours, theirs)

    for epoch, val_loss in enumerate((1.0, 0.5, 0.7, 0.9, 0.6, 0.8, 0.8)):
        model.fit(x, y, epochs=1, verbose=0)
        clock[0] += 1.0
        weights[epoch + 1] = model.get_weights()
        checkpoints.on_epoch_end(epoch, {"val_loss": val_loss})
        saved_after.append(checkpoints.last_saved)
        for ours, theirs in zip(model.get_weights(), weights[epoch + 1], strict=True):
            np.testing.assert_array_equal(ours, theirs)
        if epoch + 1 == 3:
            assert_holds("best.keras", 2)
            assert_holds("last.keras", 3)
    assert saved_after == [1, 1, 3, 3, 3, 6, 6] and checkpoints.saves == 3
    checkpoints.on_train_end()
    assert checkpoints.last_saved == 7 and checkpoints.saves == 4
    assert sorted(os.listdir(tmp_path / "backup")) == ["epoch-0006", "epoch-0007"]
    assert_holds("best.keras", 2)
    assert_holds("last.keras", 7)


def test_checkpoints_skip_an_epoch_cut_short_and_save_one_ended_by_early_stopping(tmp_path):
    """With the run's StopOnNaN: an epoch it stopped is never saved, not even at the end of
    training (its weights are not the last whole epoch's), while an epoch after which
    early stopping stopped the run is saved although a save was not yet due."""
    from biomodels import callbacks

    model = _small_compiled_model()
    guard = callbacks.StopOnNaN()
    checkpoints = callbacks.EpochCheckpoints(str(tmp_path), every=10, nan_guard=guard)
    checkpoints.set_model(model)
    model.stop_training = False
    checkpoints.on_epoch_end(0, {"loss": 1.0})
    model.stop_training = True  # early stopping's verdict after epoch 2
    checkpoints.on_epoch_end(1, {"loss": 1.0})
    assert checkpoints.last_saved == 2 and sorted(os.listdir(tmp_path / "backup")) == ["epoch-0002"]
    model.stop_training = False
    checkpoints.on_epoch_end(2, {"loss": 1.0})
    guard.stopped_at = (3, 1)
    model.stop_training = True
    checkpoints.on_epoch_end(3, {"loss": float("nan")})
    checkpoints.on_train_end()
    assert checkpoints.last_saved == 2 and checkpoints.saves == 1


def test_a_save_does_not_rebuild_keras_attribute_skip_sets(tmp_path, monkeypatch):
    """Keras 3 looks its skip sets up under another name than it caches them under, so
    each save built a throwaway Layer() for every layer type it walked; run_state.save_model
    builds none after the first."""
    from keras.src.backend.common import global_state
    from keras.src.layers.layer import Layer

    from biomodels import run_state

    model = _small_compiled_model()
    for kind in ("Layer", "Sequential", "Optimizer", "Metric", "Loss"):  # as in a fresh process
        global_state.set_global_attribute(f"saving_attr_skiplist_{kind}", None)
    model.save(str(tmp_path / "plain.keras"))
    throwaway = []
    original = Layer.__init__

    def counting(self, *args, **kwargs):
        if type(self) is Layer:
            throwaway.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(Layer, "__init__", counting)
    model.save(str(tmp_path / "plain.keras"))
    assert len(throwaway) >= 3  # Keras's own save, as the bug stands
    run_state.save_model(model, str(tmp_path / "first.keras"))
    throwaway.clear()
    run_state.save_model(model, str(tmp_path / "second.keras"))
    assert throwaway == []


def test_best_in_history_reads_the_csv_log(tmp_path):
    from biomodels.callbacks import best_in_history

    history = tmp_path / "history.csv"
    assert best_in_history(str(history), "val_feature_iou", "max") is None
    history.write_text("epoch,val_feature_iou,val_loss\n0,0.2,1.5\n1,0.4,1.1\n2,0.3,nan\n")
    assert best_in_history(str(history), "val_feature_iou", "max") == 0.4
    assert best_in_history(str(history), "val_loss", "min") == 1.1


@pytest.mark.slow
def test_init_from_a_run_copies_its_weights(tmp_path, prepared_cryoet, cryoet_task, tiny_cryoet_config):
    import keras

    from biomodels.errors import InputError
    from biomodels.training import _initial_weights, _set_initial_weights

    options = RunOptions(export=False, verbose=0)
    train(cryoet_task, _tiny(tiny_cryoet_config, epochs=1), str(prepared_cryoet), str(tmp_path / "first"), options)
    source = keras.saving.load_model(tmp_path / "first" / "best.keras")
    fresh = cryoet_task.bind(tiny_cryoet_config).build_model()
    weights = _initial_weights(cryoet_task.bind(tiny_cryoet_config), str(tmp_path / "first"))
    _set_initial_weights(fresh, weights, str(tmp_path / "first"))
    for a, b in zip(fresh.get_weights(), source.get_weights()):
        np.testing.assert_array_equal(a, b)
    other = cryoet_task.bind(_tiny(tiny_cryoet_config, depth=2)).build_model()
    with pytest.raises(InputError, match="do not fit this model"):
        _set_initial_weights(other, weights, str(tmp_path / "first"))


def test_early_stopping_goes_on_counting_across_a_resume(tmp_path):
    """Validation losses fed to Keras's own EarlyStopping (patience 3) stop it at some
    epoch; a run resumed after any epoch, its earlier epochs replayed from history.csv,
    stops at the same epoch, and one resumed after that epoch knows it had stopped."""
    import keras

    from biomodels.callbacks import ResumableEarlyStopping

    losses = [1.0, 0.8, 0.85, 0.7, 0.71, 0.72, 0.69, 0.75, 0.76, 0.77, 0.78, 0.6]

    def stop_epoch(callback, epochs):
        callback.set_model(type("Model", (), {"stop_training": False})())
        for epoch in epochs:
            callback.on_epoch_end(epoch, {"val_loss": losses[epoch]})
            if callback.model.stop_training:
                return epoch
        return None

    keras_callback = keras.callbacks.EarlyStopping(monitor="val_loss", mode="min", patience=3)
    keras_callback.on_train_begin()
    expected = stop_epoch(keras_callback, range(len(losses)))
    assert expected == 9
    history = tmp_path / "history.csv"
    for resumed_after in range(1, len(losses)):
        history.write_text("epoch,loss,val_loss\n" + "".join(f"{e},0.5,{losses[e]!r}\n" for e in range(resumed_after)))
        callback = ResumableEarlyStopping(3, str(history))
        if resumed_after <= expected:
            callback.on_train_begin()
            assert stop_epoch(callback, range(resumed_after, len(losses))) == expected, resumed_after
        else:
            assert callback.replay(), resumed_after
    # a fresh EarlyStopping after the resume (the old behaviour) stops later
    fresh = keras.callbacks.EarlyStopping(monitor="val_loss", mode="min", patience=3)
    fresh.on_train_begin()
    assert stop_epoch(fresh, range(8, len(losses))) is None  # it never stops

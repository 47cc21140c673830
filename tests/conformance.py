"""One conformance harness for every study, as keras-hub's `run_task_test`: a test class
per study inherits `StudyConformance`, names its task, how its tiny run is prepared and
trained, and its own small inputs in the study's file formats, and gets every check a
study must pass:

- the trained `.keras` file saved and loaded again answers the same on each signature;
- the SavedModel export answers as the Keras model on each signature's warm-up inputs;
- predict's files are the same from the local export, through TF Serving's REST API (the
  predict command line) and through its gRPC API (the stand-in server), and on a Dask
  cluster of two worker processes (each input a task);
- evaluate on that cluster (the split in parts) gives the serial table;
- `biomodels.load(...).predict` answers what predict writes to files, from the run and
  from its export, and the inference module's docstring examples run;
- a damaged input file is one error naming it (the predict command's code, which says
  it in one line with exit status 2), and nothing is written; bad arrays and options
  given to `.predict` are one clear error.

The tiny run is trained once per test process through the command lines (prepare, then
train, as a user types them) and shared by the study's module: its command-line chain
tests read the same run (`trained`).
"""

import doctest
import importlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_served_like_local, run_cli

#: {task name: StudyRun} of this test process
_RUNS = {}


@dataclass(frozen=True)
class StudyRun:
    """A tiny run trained through the command lines."""

    root: Path
    data_dir: Path
    model_dir: Path
    prepared: object  # the prepare command's CompletedProcess
    trained: object  # the train command's CompletedProcess


def flatten(values):
    """{name: array} of a signature's outputs (a dict, or one tensor), as numpy."""
    if isinstance(values, dict):
        return {name: np.asarray(value) for name, value in values.items()}
    return {"output": np.asarray(values)}


def assert_same_outputs(expected, found, what, atol):
    """Floats within `atol`, everything else exactly, output by output."""
    assert sorted(expected) == sorted(found), what
    for name, value in expected.items():
        assert value.shape == found[name].shape and value.dtype == found[name].dtype, (what, name)
        if np.issubdtype(value.dtype, np.floating):
            assert np.abs(value.astype(np.float64) - found[name]).max(initial=0.0) <= atol, (what, name)
        else:
            np.testing.assert_array_equal(value, found[name], err_msg=f"{what}: {name}")


class StudyConformance:
    #: the study's task name
    task_name = None
    #: `--set` values of its tiny configuration (prepare and train)
    settings = ()
    #: further flags of prepare and of train
    prepare_flags = ()
    train_flags = ("--epochs=1", "--steps_per_epoch=2")
    #: predict's options for the serving parity check, as flags' values
    served_options = {}
    #: the files the serving parity check's predict writes (None: not checked)
    served_files = None
    #: how far the export may differ from the Keras model (float outputs)
    export_tolerance = 1e-4

    # -- what each study gives --------------------------------------------------------
    def write_input(self, folder):
        """Write a small predict input in the study's file format under `folder`; returns
        the path predict is given (a file or a folder)."""
        raise NotImplementedError

    def assert_python_equals_files(self, run, path, files, tmp_path):
        """`biomodels.load(run).predict(path)` equals the files predict wrote in `files`."""
        raise NotImplementedError

    def write_damaged_input(self, folder):
        """Write an input file predict must refuse; returns (path, a fragment of the
        error line after the file's name)."""
        raise NotImplementedError

    def bad_arrays(self):
        """[(data, options of .predict, exception type, message pattern)]."""
        return []

    # -- the shared run ---------------------------------------------------------------------
    @classmethod
    def trained(cls, tmp_path_factory):
        """The study's tiny run, trained once per test process."""
        if cls.task_name not in _RUNS:
            root = tmp_path_factory.mktemp(f"{cls.task_name}_conformance")
            data_dir, model_dir = root / "data", root / "run"
            sets = [f"--set={item}" for item in cls.settings]
            prepared = run_cli("biomodels.prepare", f"--task={cls.task_name}", f"--output_dir={data_dir}", "--synthetic",
                               *cls.prepare_flags, *sets)
            assert prepared.returncode == 0, prepared.stderr
            trained = run_cli("biomodels.train", f"--task={cls.task_name}", f"--data_dir={data_dir}",
                              f"--model_dir={model_dir}", *cls.train_flags, *sets)
            assert trained.returncode == 0, trained.stderr
            _RUNS[cls.task_name] = StudyRun(root, data_dir, model_dir, prepared, trained)
        return _RUNS[cls.task_name]

    @pytest.fixture
    def study_run(self, tmp_path_factory):
        return self.trained(tmp_path_factory)

    def bound_task(self, run):
        from biomodels import config as config_lib
        from biomodels import tasks
        from biomodels.runs import run_config

        task = tasks.get(self.task_name)
        return task.bind(run_config(task, run.model_dir), calibration=config_lib.read_calibration(task, run.model_dir))

    # -- the checks ---------------------------------------------------------------------------
    def test_keras_file_round_trip(self, study_run, tmp_path):
        import keras

        from biomodels.runs import load_trained_model

        task = self.bound_task(study_run)
        model = load_trained_model(study_run.model_dir)
        model.save(tmp_path / "again.keras")
        again = keras.saving.load_model(tmp_path / "again.keras", safe_mode=True)
        assert [w.shape for w in again.weights] == [w.shape for w in model.weights]
        before, after = task.serving_functions(model), task.serving_functions(again)
        for signature, inputs in task.warmup_inputs():
            assert_same_outputs(flatten(before[signature](**inputs)), flatten(after[signature](**inputs)),
                                f"{signature} after a .keras round trip", 1e-6)

    def test_export_answers_as_the_keras_model(self, study_run):
        import tensorflow as tf

        from biomodels.runs import load_trained_model

        task = self.bound_task(study_run)
        functions = task.serving_functions(load_trained_model(study_run.model_dir))
        exported = tf.saved_model.load(str(study_run.model_dir / "export"))
        assert set(exported.signatures) == set(functions)
        for signature, inputs in task.warmup_inputs():
            assert_same_outputs(flatten(functions[signature](**inputs)), flatten(exported.signatures[signature](**inputs)),
                                f"{signature} of the export", self.export_tolerance)

    def test_served_predictions_equal_the_local_exports(self, study_run, tmp_path):
        path = self.write_input(tmp_path / "input")
        rest = assert_served_like_local(self.task_name, study_run.model_dir / "export", path, tmp_path,
                                        self.served_options)
        assert os.listdir(rest)
        if self.served_files is not None:
            assert sorted(os.listdir(rest)) == sorted(self.served_files)

    def test_predict_on_a_cluster_writes_the_files_of_serial_predict(self, study_run, tmp_path, dask_scheduler):
        """Each of `predict_inputs` a task on a cluster of two worker processes: the
        same files as predict in one process, integers exactly, floats to 1e-6."""
        from biomodels import cluster, tasks
        from biomodels.predict import predict_with
        from biomodels.tasks.base import option_values

        from conftest import assert_same_file

        task = tasks.get(self.task_name)
        path = self.write_input(tmp_path / "input")
        options = option_values(task.predict_options, self.served_options)
        serial = predict_files(self.task_name, study_run.model_dir / "export", path, tmp_path / "serial",
                               **self.served_options)
        with cluster.executor(dask_scheduler) as executor:
            written = predict_with(executor, task, str(study_run.model_dir / "export"), str(path),
                                   str(tmp_path / "cluster"), options)
        assert sorted(os.path.basename(name) for name in written) == sorted(os.listdir(serial))
        for name in os.listdir(serial):
            assert_same_file(serial / name, tmp_path / "cluster" / name, atol=1e-6)

    def test_evaluate_on_a_cluster_gives_the_serial_table(self, study_run, dask_scheduler, monkeypatch):
        """The test split evaluated in parts (two examples each, or a volume each), one
        task each on the workers, added up: the serial table, floats to 1e-6."""
        from biomodels import cluster, tasks
        from biomodels.evaluation import evaluate_run

        from conftest import assert_same_json

        task = tasks.get(self.task_name)
        serial = evaluate_run(task, str(study_run.model_dir))
        if type(task).evaluation_examples:
            monkeypatch.setattr(type(task), "evaluation_examples", 2)
        with cluster.executor(dask_scheduler) as executor:
            spread = evaluate_run(task, str(study_run.model_dir), executor=executor)
        assert_same_json(serial, spread, "metrics", atol=1e-6)

    def test_python_predict_equals_the_files_of_predict(self, study_run, tmp_path):
        path = self.write_input(tmp_path / "input")
        self.assert_python_equals_files(study_run.model_dir, path, tmp_path / "files", tmp_path)

    def test_inference_docstring_examples_run(self, study_run, tmp_path):
        import biomodels

        module = importlib.import_module(f"biomodels.tasks.{self.task_name}.inference")
        globs = {**vars(module), "biomodels": biomodels, "np": np, "tmp": tmp_path,
                 f"{self.task_name}_run": study_run.model_dir}
        assert run_docstring_examples(module, globs) > 0, f"{module.__name__} has no examples"

    def test_a_damaged_input_file_is_one_clear_error_and_nothing_written(self, study_run, tmp_path):
        from biomodels.errors import InputError

        path, fragment = self.write_damaged_input(tmp_path / "damaged")
        out = tmp_path / "out"
        with pytest.raises(InputError) as raised:
            predict_files(self.task_name, study_run.model_dir / "export", path, out)
        assert os.path.basename(path) in str(raised.value) and fragment in str(raised.value), str(raised.value)
        assert os.listdir(out) == []

    def test_bad_arrays_are_one_clear_error(self, study_run):
        import biomodels

        model = biomodels.load(study_run.model_dir)
        for data, options, error, pattern in self.bad_arrays():
            with pytest.raises(error, match=pattern):
                model.predict(data, **options)


def run_docstring_examples(module, globs):
    """Run every docstring example of `module` with `globs`; returns how many ran, and
    fails the test on any that fails."""
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    examples = 0
    for test in finder.find(module, globs=globs):
        examples += len(test.examples)
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} example(s) of {module.__name__} failed (see the output above)"
    return examples


def predict_files(name, model, input_path, output_dir, **options):
    """What `python -m biomodels.predict --task=NAME --model=MODEL` writes, run in this process."""
    from biomodels import tasks
    from biomodels.predictors import open_predictor
    from biomodels.tasks.base import option_values

    task = tasks.get(name)
    os.makedirs(output_dir, exist_ok=True)
    task.predict_files(open_predictor(task, str(model)), str(input_path), str(output_dir),
                       option_values(task.predict_options, options))
    return Path(output_dir)

"""What runs inside a Dask worker process: the plugin that keeps its thread pools to its
own cores, and the models it has opened, kept for the process's life (a model is opened
once per worker, never pickled). Imported only where Dask is installed."""

import os
import sys

import distributed

from biomodels.cluster import worker_environment

#: {(task name, model): Predictor} opened in this process
_PREDICTORS = {}


class WorkerThreads(distributed.WorkerPlugin):
    """Sets `worker_environment` on each worker before its first task: the cores given, else
    the worker's own thread count (workers started elsewhere had no say in their
    environment)."""

    name = "biomodels-threads"

    def __init__(self, cores=None):
        self.cores = cores

    def setup(self, worker):
        settings = worker_environment(self.cores or worker.state.nthreads)
        os.environ.update(settings)
        if "numba" in sys.modules:
            sys.modules["numba"].set_num_threads(int(settings["NUMBA_NUM_THREADS"]))


def predictor(task, model):
    """The predictor of `model` for `task` in this process, opened on first use."""
    from biomodels.predictors import open_predictor

    key = (task.name, str(model))
    if key not in _PREDICTORS:
        _PREDICTORS[key] = open_predictor(task, str(model))
    return _PREDICTORS[key]


class PredictJob:
    """predict's work on one input (a path of `Task.predict_inputs`), as a worker runs
    it: the task's `predict_files` with this process's predictor of the model. Returns
    the paths written."""

    def __init__(self, task_name, model, output_dir, options):
        self.task_name, self.model, self.output_dir, self.options = task_name, model, output_dir, options

    def __call__(self, input_path):
        from biomodels import tasks

        task = tasks.get(self.task_name)
        return task.predict_files(predictor(task, self.model), input_path, self.output_dir, self.options)

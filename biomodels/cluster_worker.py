"""What every Dask worker process gets: its environment (thread pools kept to its own
cores, TensorFlow's log quiet, progress bars silent) and the plugin that sets it on
workers started elsewhere. Imported only where Dask is installed (a worker plugin must
subclass Dask's)."""

import os
import sys

import distributed

from biomodels.report import WORKER_ENVIRONMENT


def worker_environment(cores):
    """The environment of a worker process: TensorFlow's, numba's and OpenMP's thread
    pools kept to its `cores` (each library reads it when it starts), TensorFlow's C++
    log quiet, and progress bars silent."""
    cores = str(max(1, int(cores)))
    return {"OMP_NUM_THREADS": cores, "NUMBA_NUM_THREADS": cores, "TF_NUM_INTRAOP_THREADS": cores,
            "TF_NUM_INTEROP_THREADS": "1" if cores == "1" else "2", "MKL_NUM_THREADS": cores,
            "OPENBLAS_NUM_THREADS": cores, "TF_CPP_MIN_LOG_LEVEL": "2", WORKER_ENVIRONMENT: "1"}


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

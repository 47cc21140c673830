"""The plugin every Dask worker process gets: its thread pools kept to its own cores.
Imported only where Dask is installed (a worker plugin must subclass Dask's)."""

import os
import sys

import distributed

from biomodels.cluster import worker_environment


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

"""Where the commands' work runs: in this process, or on a Dask cluster.

    --scheduler=            in this process (the default)
    --scheduler=local:N     a LocalCluster of N worker processes on this machine
    --scheduler=tcp://H:P   an existing Dask scheduler
    --scheduler=file:PATH   the scheduler named in a scheduler file (`dask worker
                            --scheduler-file`, dask-jobqueue's runners)
    --scheduler=slurm:N     N workers in SLURM jobs (dask-jobqueue's SLURMCluster, its
                            queue, cores, memory and walltime from Dask's jobqueue
                            configuration)

An executor has one method that matters, `map(function, items)`, yielding (item,
result) as each finishes, and says whether it `splits_work` (a cluster) or runs it
here; the tasks do not know which executor they have.
Dask is the optional extra `biomodels[distributed]`, imported only when a scheduler is
named. Each worker process keeps its TensorFlow, numba and OpenMP threads to its own
cores, checks that it runs the driver's package versions and sees the driver's folders,
and prints no progress bars (the driver shows one over the items).
"""

import contextlib
import logging
import os
import uuid

from biomodels.errors import BiomodelsError, ConfigError, InputError

EXTRA = "distributed"
#: the packages whose versions every worker must share with the driver
SHARED_PACKAGES = ("biomodels", "tensorflow", "keras", "numpy", "dask", "distributed")
log = logging.getLogger("biomodels")


class ClusterError(BiomodelsError):
    """The cluster could not run the work: a worker kept dying, or differs from the driver."""


class InProcess:
    """Runs each item here, in order."""

    workers = 1
    #: whether work is worth splitting into many tasks (here, one task does it all)
    splits_work = False

    def map(self, function, items):
        for item in items:
            yield item, function(item)

    def check_workers(self, paths):
        """Nothing to check: this process is the one that was given the paths."""


class DaskExecutor:
    """Runs each item as one Dask task; results come back as they finish. At most two
    tasks per worker are in flight, so a list of thousands of inputs does not flood the
    scheduler, and the first failure stops new submissions: the tasks then running are
    let finish (their files whole) before the error is raised. Dask retries a task whose
    worker died (`distributed.scheduler.allowed-failures` times)."""

    splits_work = True

    def __init__(self, client, expected_workers=1):
        self.client = client
        #: the workers asked for (SLURM's jobs start one by one: work is planned for all of them)
        self.expected_workers = expected_workers

    @property
    def workers(self):
        return max(self.expected_workers, len(self.client.scheduler_info(n_workers=-1)["workers"]))

    def map(self, function, items):
        import distributed

        queue, running, finished = list(items)[::-1], {}, distributed.as_completed(loop=self.client.loop)

        def submit():
            if queue:
                item = queue.pop()
                future = self.client.submit(run_guarded, function, item, key=f"biomodels-{uuid.uuid4().hex}")
                running[future.key] = item
                finished.add(future)

        for _ in range(2 * self.workers):
            submit()
        error = None
        try:
            for future in finished:
                item = running.pop(future.key)
                if error is not None:
                    continue  # draining what was running when the first error came
                try:
                    result = future.result()
                    if isinstance(result, UsersError):
                        raise result.error
                except distributed.KilledWorker:
                    error = ClusterError(f"{item}: the workers running it died each time it was tried (out of "
                                         "memory? see the workers' logs)")
                except BaseException as raised:  # the task's own error, unpickled
                    error = raised
                else:
                    submit()
                    yield item, result
        finally:
            self.client.cancel([future for future in list(finished.futures) if not future.done()])
        if error is not None:
            raise error

    def check_workers(self, paths):
        """One error, naming the worker, unless every worker runs the driver's versions
        of SHARED_PACKAGES and sees each of `paths` (folders must also be writable)."""
        facts = self.client.run(worker_facts, [os.path.abspath(path) for path in paths])
        mine = worker_facts([])["versions"]
        for worker, found in sorted(facts.items()):
            for package, version in mine.items():
                if found["versions"].get(package) != version:
                    raise ClusterError(f"worker {worker} runs {package} {found['versions'].get(package)}, this process "
                                       f"{version}: install the same versions on every worker")
            for path, problem in found["unseen"].items():
                raise InputError(path, f"{problem} from worker {worker}: the workers need the input and output "
                                       "folders on a filesystem they share with this machine")


def map_in_order(executor, function, items, label, show_progress=True):
    """[function(item) for item in items] through `executor`, in the items' order
    whichever order they finished in; on a cluster, with a progress bar over them
    labelled `label`."""
    from biomodels.report import progress_bar

    bar = progress_bar(len(items), f"{label} on {executor.workers} worker(s)") if (
        show_progress and executor.splits_work) else None
    results = {}
    for done, ((position, _), result) in enumerate(executor.map(_AtPosition(function), list(enumerate(items))), 1):
        results[position] = result
        if bar:
            bar.update(done)
    return [results[position] for position in range(len(items))]


class _AtPosition:
    """`function` called with the item of a (position, item) pair."""

    def __init__(self, function):
        self.function = function

    def __call__(self, pair):
        return self.function(pair[1])


class UsersError:
    """A user's error raised by a task on a worker, carried back as its result (a raised
    one would be logged by the worker with its traceback, as a bug)."""

    def __init__(self, error):
        self.error = error


def run_guarded(function, item):
    """`function(item)` on a worker, a BiomodelsError returned as a `UsersError`."""
    try:
        return function(item)
    except BiomodelsError as error:
        return UsersError(error)


def worker_facts(paths):
    """{"versions": {package: version}, "unseen": {path: problem}} of this process."""
    from importlib import metadata

    versions = {}
    for package in SHARED_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    unseen = {}
    for path in paths:
        if not os.path.exists(path):
            unseen[path] = "is not visible"
        elif os.path.isdir(path) and not os.access(path, os.W_OK | os.X_OK):
            unseen[path] = "is not writable"
    return {"versions": versions, "unseen": unseen}


def parse_scheduler(spec):
    """("local" | "address" | "file" | "slurm", value) of a --scheduler value."""
    kind, _, value = spec.partition(":")
    if kind in ("local", "slurm"):
        if not value.isdigit() or int(value) < 1:
            raise ConfigError(f"--scheduler={spec}: expected {kind}:N with N workers, N at least 1")
        return kind, int(value)
    if kind == "file" and value:
        return "file", value
    if kind in ("tcp", "tls", "ws", "wss", "inproc") and value.startswith("//"):
        return "address", spec
    raise ConfigError(f"--scheduler={spec}: expected local:N, tcp://HOST:PORT, file:PATH or slurm:N")


def _missing_extra(spec):
    return ConfigError(f"--scheduler={spec} needs the optional extra {EXTRA}: pip install 'biomodels[{EXTRA}]'")


def _import_dask(spec):
    try:
        import distributed
    except ImportError:
        raise _missing_extra(spec) from None
    return distributed


@contextlib.contextmanager
def executor(scheduler=None):
    """The executor for a --scheduler value (None or "": this process), closed (with the
    cluster it started, if any) on leaving."""
    if not scheduler:
        yield InProcess()
        return
    kind, value = parse_scheduler(scheduler)
    distributed = _import_dask(scheduler)
    with contextlib.ExitStack() as stack:
        # Dask's own log (its scheduler's and nannies' start and stop) stays off the console
        dask_log = logging.getLogger("distributed")
        stack.callback(dask_log.setLevel, dask_log.level)
        dask_log.setLevel(logging.ERROR)
        cores, expected = None, 1
        if kind == "local":
            import dask

            from biomodels.cluster_worker import worker_environment

            cores = max(1, (os.cpu_count() or 1) // value)
            # the workers get their environment as the nannies' argument, set in the new processes; what
            # Dask sets before spawning lands in this process too (a LocalCluster's nannies live here)
            saved = dict(os.environ)
            stack.callback(_restore_environment, saved)
            with dask.config.set({"distributed.nanny.pre-spawn-environ": {}}):
                cluster = stack.enter_context(distributed.LocalCluster(
                    n_workers=value, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                    silence_logs=logging.ERROR, env=worker_environment(cores)))
            _restore_environment(saved)
            client = stack.enter_context(distributed.Client(cluster))
        elif kind == "slurm":
            cluster = stack.enter_context(_slurm_cluster(scheduler))
            cluster.scale(value)
            expected = value
            client = stack.enter_context(distributed.Client(cluster))
            log.info("waiting for the first of %d SLURM worker(s) to start", value)
            client.wait_for_workers(1)  # jobs may wait in the queue: as long as it takes
        elif kind == "file":
            if not os.path.isfile(value):
                raise InputError(value, "not found: the scheduler file that `dask scheduler --scheduler-file` writes")
            client = stack.enter_context(distributed.Client(scheduler_file=value, timeout="30s"))
        else:
            client = stack.enter_context(_connect(distributed, value))
        if kind in ("address", "file"):
            _require_workers(client, scheduler)
        from biomodels.cluster_worker import WorkerThreads

        client.register_plugin(WorkerThreads(cores))
        log.info("running on %s", scheduler)
        yield DaskExecutor(client, expected)


def _require_workers(client, scheduler, seconds=60):
    """A running scheduler with no worker within `seconds` is one line, not a wait forever."""
    try:
        client.wait_for_workers(1, timeout=seconds)
    except TimeoutError:
        raise ClusterError(f"--scheduler={scheduler}: the scheduler has had no worker for {seconds} s; start some "
                           "(dask worker ADDRESS)") from None


def _restore_environment(saved):
    """This process's environment as it was (a nanny that restarts a worker adds to it)."""
    for name in set(os.environ) - set(saved):
        del os.environ[name]
    os.environ.update(saved)


@contextlib.contextmanager
def _connect(distributed, address):
    try:
        client = distributed.Client(address, timeout="30s")
    except OSError as error:
        raise ClusterError(f"--scheduler={address}: cannot reach the scheduler ({error})") from None
    with client:
        yield client


def _slurm_cluster(spec):
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise _missing_extra(spec) from None
    try:
        return SLURMCluster()
    except ValueError as error:  # dask-jobqueue's own word on a configuration without cores or memory
        first = str(error).splitlines()[0].split(", for example")[0].rstrip(",: ")
        raise ConfigError(f"--scheduler={spec}: {first} (set them in Dask's jobqueue.slurm configuration)") from None

"""What every command line shares: a quiet TensorFlow start, absl flag parsing whose
mistakes end in one line and exit status 2, user errors printed as one line with exit
status 2, and a full log written into the run's directory.
"""

import contextlib
import logging
import os
import sys

from absl import app, flags

from biomodels import report
from biomodels.errors import BiomodelsError

FLAGS = flags.FLAGS
EXIT_USER_ERROR = 2


def _requested_verbosity(argv):
    """The --verbosity/-v value on the command line, read before absl parses it."""
    value = _argument(argv, "--verbosity", "-v")
    return 0 if value is None else _as_int(value)


def _argument(argv, *names):
    """The value given on the command line to the first of `names` found (as --name=value
    or --name value), read before absl parses it; None when absent."""
    for i, arg in enumerate(argv):
        for name in names:
            if arg.startswith(name + "="):
                return arg[len(name) + 1:]
            if arg == name and i + 1 < len(argv):
                return argv[i + 1]
    return None


def _as_int(text):
    try:
        return int(text)
    except ValueError:
        return 0


@contextlib.contextmanager
def _stderr_silenced():
    """Send file descriptor 2 to /dev/null: TensorFlow's C++ start-up messages
    (CUDA driver probes, oneDNN notices) are written there before any Python
    logging setting can reach them."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow(argv=None):
    """Import TensorFlow, hiding its C++ start-up chatter unless --verbosity > 0."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    verbose = _requested_verbosity(sys.argv if argv is None else argv) > 0
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with _stderr_silenced():
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe prints when devices are first listed
        tf.get_logger().setLevel(logging.ERROR)
    else:
        import tensorflow as tf
    return tf


def requested_task(argv=None):
    """The Task that --task names on the command line, read before absl parses it;
    None when absent or unknown (main then says so in one line)."""
    from biomodels import tasks

    name = _argument(sys.argv if argv is None else argv, "--task")
    return tasks.get(name) if name in tasks.names() else None


def define_task_options(options):
    """absl flags for a task's predict or evaluate `Option`s, listed by --help as the
    running command's own flags."""
    for option in options:
        bounds = {key: getattr(option, key) for key in ("lower_bound", "upper_bound") if getattr(option, key) is not None}
        definer = {"float": flags.DEFINE_float, "integer": flags.DEFINE_integer, "string": flags.DEFINE_string,
                   "bool": flags.DEFINE_bool, "list": flags.DEFINE_list}[option.kind]
        definer(option.name, option.default, option.help, module_name=sys.argv[0], **bounds)


def define_scheduler_flag():
    """--scheduler, where the command's work runs (see biomodels.cluster)."""
    from absl import flags

    flags.DEFINE_string("scheduler", None, "Run on a Dask cluster: local:N (N worker processes here), "
                                           "tcp://HOST:PORT (a running scheduler), file:PATH (a scheduler file) or "
                                           "slurm:N (N workers in SLURM jobs); needs biomodels[distributed].")


def task_option_values(options):
    """{option name: parsed value} of a task's options after the flags are parsed."""
    return {option.name: option.value(FLAGS[option.name].value) for option in options}


def _parse_flags(argv):
    try:
        return FLAGS(argv)
    except flags.Error as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def run(main):
    """Run `main(argv)` as a command line: user errors become one line and exit 2."""

    def guarded_main(argv):
        for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print as \udcNN, not a crash
            stream.reconfigure(errors="backslashreplace")
        _log_to_console(FLAGS.verbosity)
        if len(argv) > 1:
            print(f"error: unexpected arguments: {' '.join(argv[1:])}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        try:
            main(argv)
        except BiomodelsError as error:
            logging.getLogger("biomodels").info("stopped: %s", error)  # for log.txt; the console gets one line
            report.end_open_line()
            print(f"error: {error}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)

    app.run(guarded_main, flags_parser=_parse_flags)


def _log_to_console(verbosity):
    """biomodels' own log goes to stderr for warnings only (everything with -v 1),
    and not through absl's root handler, which would print each line twice."""
    if verbosity <= 0:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.WARNING)  # TensorFlow's Python chatter
    logger = logging.getLogger("biomodels")
    logger.propagate = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    handler.setLevel(logging.DEBUG if verbosity > 0 else logging.WARNING)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)


def log_to_file(path):
    """Also write the biomodels log, at full detail, to `path` (appending)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.DEBUG)
    logger = logging.getLogger("biomodels")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return handler

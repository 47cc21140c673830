"""How a run uses the machine: seeds and determinism, the precision policy, XLA, and
the distribution strategy, including the one contained fix that lets Keras 3
`model.fit` run under MultiWorkerMirroredStrategy (keras-team/keras#20585)."""

import logging
import os

from biomodels.errors import ConfigError

PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")
STRATEGIES = ("auto", "default", "mirrored", "multi_worker")
log = logging.getLogger("biomodels")


def has_gpu():
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def seed_everything(seed, deterministic=False):
    """Seed Python, NumPy and TensorFlow; with `deterministic`, also make TensorFlow's
    kernels deterministic (slower on GPU, identical results run to run)."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def set_precision(name):
    """Set the Keras global dtype policy; `auto` is mixed_float16 on a GPU, else float32
    (on CPU the mixed policies are several times slower, and MaxPool3D has no float16
    CPU kernel). Returns the policy name."""
    import keras

    if name not in PRECISIONS:
        raise ConfigError(f"--precision={name}: choose one of {', '.join(PRECISIONS)}")
    policy = ("mixed_float16" if has_gpu() else "float32") if name == "auto" else name
    keras.mixed_precision.set_global_policy(policy)
    return policy


def jit_compile(flag, task):
    """True or False from --jit_compile=auto|true|false and the task's measured default."""
    if flag == "auto":
        return bool(task.jit_compile_default)
    if flag in ("true", "false"):
        return flag == "true"
    raise ConfigError(f"--jit_compile={flag}: choose auto, true or false")


def make_strategy(name):
    """The tf.distribute strategy: `auto` mirrors over several GPUs, else the default;
    `multi_worker` reads the cluster from TF_CONFIG or, without it, from SLURM's job step
    (`srun`: every task one worker, see `slurm_resolver`)."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise ConfigError(f"--strategy={name}: choose one of {', '.join(STRATEGIES)}")
    if name == "auto":
        name = "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "default"
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        # every GPU, or else every logical CPU device (tests split the CPU in two)
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    _let_keras_fit_run_multi_worker()
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=slurm_resolver())


#: the first port the workers of a SLURM job step listen on (one more per task on a node)
SLURM_PORT = 8888


def slurm_resolver():
    """TensorFlow's SlurmClusterResolver for a process that `srun` started, when there is
    no TF_CONFIG (None then: TF_CONFIG rules): the tasks of the job step are the workers,
    the nodes from SLURM_STEP_NODELIST, ports from $BIOMODELS_SLURM_PORT (default 8888)
    on. On nodes without GPUs the resolver's GPU bookkeeping is given one slot per task
    and leaves CUDA_VISIBLE_DEVICES alone (it counts GPUs with nvidia-smi, and with none
    it cannot place a task)."""
    import shutil

    import tensorflow as tf

    environ = os.environ
    if "TF_CONFIG" in environ or "SLURM_STEP_NUM_TASKS" not in environ or "SLURM_PROCID" not in environ:
        return None
    port = int(environ.get("BIOMODELS_SLURM_PORT", SLURM_PORT))
    resolver = tf.distribute.cluster_resolver.SlurmClusterResolver
    if "CUDA_VISIBLE_DEVICES" in environ or shutil.which("nvidia-smi"):
        return resolver(port_base=port)
    from tensorflow.python.distribute.cluster_resolver.slurm_cluster_resolver import expand_tasks_per_node

    per_node = max(expand_tasks_per_node(environ["SLURM_STEP_TASKS_PER_NODE"]))
    return resolver(port_base=port, gpus_per_node=per_node, gpus_per_task=1, auto_set_gpu=False)


def is_multi_worker(strategy):
    """Whether the strategy spans several processes (workers that each run `train`)."""
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy):
    """Whether this process writes the shared outputs (worker 0, or a single process)."""
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    return resolver.task_type in (None, "chief") or (resolver.task_type == "worker" and resolver.task_id == 0)


_PATCHED = False
# Keras releases whose private trainer symbols the fix below was written for and tested
# with (setup.py pins the same range)
PATCHED_KERAS = ("3.15",)


def _require_patched_keras():
    """Refuse, in one line, a Keras release the multi-worker fix was not written for."""
    import keras

    release = ".".join(keras.version().split(".")[:2])
    if release not in PATCHED_KERAS:
        raise ConfigError(f"--strategy=multi_worker: its fix of keras-team/keras#20585 was made for Keras "
                          f"{' or '.join(PATCHED_KERAS)}, and this is Keras {keras.version()}; install "
                          f"keras=={PATCHED_KERAS[-1]}.* or train with --strategy=mirrored")


def _let_keras_fit_run_multi_worker():
    """Keras 3's TensorFlow trainer breaks under MultiWorkerMirroredStrategy in three places:

    1. before the first step it builds the model from one batch, averaged across
       workers with `strategy.reduce("MEAN", batch, axis=None)`, which collective ops
       cannot do eagerly on a per-replica batch ("Attempt to convert a value
       (PerReplica…)"). Only the batch's shapes are needed, so take this worker's
       local copy instead.
    2. it averages the per-replica metric scalars with `strategy.reduce("MEAN", v,
       axis=0)`, and a scalar has no axis 0; reduce them with axis=None instead.
    3. that build takes its batch from the epoch iterator it is given, and `fit` gives
       every epoch's validation the same one, which starts a new pass over the data only
       when it knows how many batches a pass holds: a multi-worker dataset does not say,
       so the second validation met the first one's finished pass (StopIteration, any
       run of more than one epoch with validation). Start a new pass for the build.

    All three act only when the strategy is multi-worker; other strategies run
    Keras's code unchanged.
    """
    global _PATCHED
    if _PATCHED:
        return
    _require_patched_keras()
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    keras_symbolic_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    keras_reduce_per_replica = tf_trainer.reduce_per_replica

    def local_copy(value, strategy):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(self, iterator=None, data_batch=None):
        strategy = self._distribute_strategy
        if iterator is None or not tf_trainer._collective_all_reduce_multi_worker(strategy):
            return keras_symbolic_build(self, iterator=iterator, data_batch=data_batch)
        iterator._current_iterator = None  # a new pass (the caller resets the iterator after)
        for _, _, batches in iterator:
            batch = next(batches)
            break
        with strategy.scope():
            self._symbolic_build(data_batch=tree.map_structure(lambda v: local_copy(v, strategy), batch))

    def reduce_per_replica(values, strategy, reduction):
        if tf_trainer._collective_all_reduce_multi_worker(strategy) and reduction in ("auto", "mean"):
            return tree.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None) if tf_trainer._is_per_replica_instance(v) else v,
                values,
            )
        return keras_reduce_per_replica(values, strategy, reduction)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    _PATCHED = True
    log.debug("patched Keras's TensorFlow trainer for MultiWorkerMirroredStrategy")

"""Is training ever input-bound? Prints the tf.data pipeline's examples per second
beside the training step's, and TFRecord reading beside np.load of the same arrays.

    python benchmarks/pipeline.py --task=cryoet [--data_dir=DIR] [--batches=N]

Without --data_dir it uses the task's built-in synthetic data set (prepared once).
The pipeline should be at least 5x faster than training.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from biomodels import cli, report  # noqa: E402

tf = cli.import_tensorflow()

import numpy as np  # noqa: E402

from biomodels import config as config_lib  # noqa: E402
from biomodels import prepare, tasks  # noqa: E402
from biomodels.pipelines import dataset as dataset_lib  # noqa: E402
from biomodels.pipelines import manifest as manifest_lib  # noqa: E402


def rate(count, seconds):
    return count / max(seconds, 1e-9)


def pipeline_rate(task, config, data_dir, manifest, batches):
    data = dataset_lib.training_dataset(task.bind(config, manifest=manifest), 0, steps_per_epoch=10**6)
    iterator = iter(data)
    next(iterator)  # warm up: file opening, cache filling starts
    for _ in range(batches):  # a first pass fills the cache
        next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return rate(batches * config.batch_size, time.perf_counter() - start)


def training_rate(task, config, data_dir, manifest, steps, jit_compile=False):
    """Examples per second of the training step on one fixed batch (after a warm-up step)."""
    task = task.bind(config, manifest=manifest)
    data = dataset_lib.training_dataset(task, 0, steps_per_epoch=10**6)
    batch = next(iter(data))
    model = task.build_model()
    model.compile(**task.compile_arguments(steps_per_epoch=100), jit_compile=jit_compile)
    model.train_on_batch(*batch)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(*batch)
    return rate(steps * config.batch_size, time.perf_counter() - start)


def reading_rates(manifest, split="train"):
    """Raw examples per second: TFRecord decode versus np.load of .npy files."""
    start = time.perf_counter()
    arrays = [example for example in dataset_lib.examples(manifest, split).as_numpy_iterator()]
    tfrecord_rate = rate(len(arrays), time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        for i, example in enumerate(arrays):
            for name, value in example.items():
                np.save(os.path.join(tmp, f"{i}_{name}.npy"), value)
        start = time.perf_counter()
        for i, example in enumerate(arrays):
            for name in example:
                np.load(os.path.join(tmp, f"{i}_{name}.npy"), allow_pickle=False)
        numpy_rate = rate(len(arrays), time.perf_counter() - start)
    return tfrecord_rate, numpy_rate


def benchmark_setup(description, **extra_arguments):
    """Parse --task/--data_dir/--preset (plus integer `extra_arguments` with their
    defaults); returns (args, task, config, data_dir, manifest). Without --data_dir
    the task's built-in synthetic data set is used."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--task", default="cryoet")
    parser.add_argument("--data_dir")
    parser.add_argument("--preset", default="quick")
    for name, default in extra_arguments.items():
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args()
    task = tasks.get(args.task)
    config = config_lib.resolve(task, args.preset)
    data_dir = args.data_dir or prepare.synthetic_dataset(task, config)
    return args, task, config, data_dir, manifest_lib.read(data_dir, task)


def main():
    args, task, config, data_dir, manifest = benchmark_setup(__doc__, batches=30, steps=5)
    pipeline = pipeline_rate(task, config, data_dir, manifest, args.batches)
    training = training_rate(task, config, data_dir, manifest, args.steps)
    tfrecord_rate, numpy_rate = reading_rates(manifest)
    print(f"task {task.name}, preset {args.preset}, batch {config.batch_size}, example shape "
          f"{dict(manifest.features)} from {data_dir}")
    print(report.format_table([
        ("input pipeline (decode, augment, batch)", pipeline, "training step", training, pipeline / training),
        ("TFRecord read + decode", tfrecord_rate, "np.load of .npy files", numpy_rate, tfrecord_rate / numpy_rate),
    ], ("measured", "examples/s", "reference", "examples/s", "ratio")))
    verdict = "not input-bound" if pipeline >= 5 * training else "INPUT-BOUND: pipeline under 5x the training rate"
    print(f"pipeline / training = {pipeline / training:.1f}x ({verdict})")


if __name__ == "__main__":
    main()

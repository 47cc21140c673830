"""Is the exported SavedModel as fast as the Keras model it came from? Prints the
latency (median and 99th percentile) of each exported signature for batch 1 and 8
beside calling the Keras model directly on the same inputs (with the same
preprocessing); the export should be no slower than 1.1x.

    python benchmarks/serving.py --task=cryoet [--model_dir=RUN] [--repeats=N]

Without --model_dir a freshly initialised model of the quick preset is exported.
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
from biomodels import tasks  # noqa: E402
from biomodels.export.savedmodel import export_saved_model  # noqa: E402
from biomodels.runs import load_trained_model, run_config  # noqa: E402


def latencies(call, repeats):
    call()  # warm-up: tracing and first allocation
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return np.median(seconds) * 1000, np.percentile(seconds, 99) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", default="cryoet")
    parser.add_argument("--model_dir")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()

    task = tasks.get(args.task)
    if args.model_dir:
        config, model = run_config(task, args.model_dir), load_trained_model(args.model_dir)
    else:
        config = config_lib.resolve(task, "quick")
        model = task.bind(config).build_model()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        loaded = tf.saved_model.load(export_saved_model(task, model, config, os.path.join(tmp, "1")))
        keras_functions = task.bind(config).serving_functions(model)
        first_input_of = {}
        for signature, inputs in task.bind(config).warmup_inputs():
            first_input_of.setdefault(signature, inputs)  # one representative shape per signature
        for signature, inputs in first_input_of.items():
            for batch in (1, 8):
                tensors = {name: tf.constant(np.resize(value, (batch,) + value.shape[1:])) for name, value in inputs.items()}
                exported = latencies(lambda: loaded.signatures[signature](**tensors), args.repeats)
                direct = latencies(lambda: keras_functions[signature](**tensors), args.repeats)
                rows.append((f"{signature}, batch {batch}, SavedModel", *exported, "Keras model", *direct, exported[0] / direct[0]))
    print(f"task {task.name}, {args.repeats} calls each, milliseconds")
    print(report.format_table(rows, ("measured", "median", "p99", "reference", "median", "p99", "ratio of medians")))


if __name__ == "__main__":
    main()

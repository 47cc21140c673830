"""Cellpose's dynamics inside the exported graph (biomodels.ops.graph_masks) against the
numba path (biomodels.ops.flows.masks_from_flows), on the CPU of this machine:

1. post-processing alone, on the same outputs: the flows of 512×512 label images (55
   large cells; about 150 small nuclei), with noise, cell probability +5 inside cells
   and -5 outside. Both paths' seconds, the ratio (target: the graph within 3× of
   numba), and AP@0.5 of the graph's masks against numba's (target 0.95);
2. a whole request through a SavedModel for one 512×512 image: `instances` (network +
   masks in the graph) and `serving_default` (the network alone), an untrained quick
   network. Its masks are whatever an untrained network gives, so the post-processing
   share of this request is measured by part 1, not here.

    python benchmarks/graph_masks.py [--repeats=3]
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from biomodels import cli  # noqa: E402

tf = cli.import_tensorflow()

import numpy as np  # noqa: E402

from timing import best_time  # noqa: E402
from biomodels.ops import graph_masks  # noqa: E402
from biomodels.ops.flows import masks_from_flows, masks_to_flows  # noqa: E402
from biomodels.ops.matching import average_precision  # noqa: E402
from biomodels.pipelines.synthetic.cellular import cell_labels  # noqa: E402


def post_processing(name, labels, repeats):
    rng = np.random.default_rng(1)
    flows = masks_to_flows(labels) + rng.normal(0, 0.2, (2, *labels.shape)).astype(np.float32)
    cellprob = np.where(labels > 0, 5.0, -5.0).astype(np.float32)
    numba_seconds, expected = best_time(lambda: masks_from_flows(flows, cellprob), repeats)
    graph = tf.function(lambda f, c: graph_masks.masks_from_flows(f, c))
    channels_last = np.ascontiguousarray(flows.transpose(1, 2, 0))
    graph_seconds, found = best_time(lambda: graph(channels_last, cellprob).numpy(), repeats)
    ap = float(average_precision(expected.astype(np.int64), found.astype(np.int64), (0.5,))[0][0])
    ratio = graph_seconds / numba_seconds
    print(f"{name:<30} graph {graph_seconds:7.3f} s   numba {numba_seconds:7.3f} s   graph/numba {ratio:5.2f} "
          f"(target <= 3, {3 / ratio:.2f} of it)   AP@0.5 graph vs numba {ap:.4f} (target 0.95)   "
          f"{found.max()} vs {expected.max()} cells, truth {labels.max()}")


def whole_request(repeats):
    from biomodels import config as config_lib
    from biomodels import tasks
    from biomodels.export.savedmodel import export_saved_model

    task = tasks.get("cellular")
    config = config_lib.resolve(task, "quick", [])
    model = task.bind(config).build_model()
    image = np.random.default_rng(2).uniform(0, 1000, (1, 512, 512, len(config.channels))).astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = export_saved_model(task, model, config, os.path.join(folder, "export"))
        signatures = tf.saved_model.load(path).signatures
        for name in ("serving_default", "instances"):
            seconds, outputs = best_time(lambda: {k: v.numpy() for k, v in signatures[name](images=image).items()}, repeats)
            cells = f", {outputs['masks'].max()} masks" if "masks" in outputs else ""
            print(f"{'512×512 request: ' + name:<30} {seconds:7.3f} s{cells}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU cores")
    large, _, _ = cell_labels(np.random.default_rng(0), (512, 512), 55, radius_range=(22.0, 38.0))
    small, _, _ = cell_labels(np.random.default_rng(0), (512, 512), 150, radius_range=(7.0, 10.0))
    post_processing("55 large cells, 512×512", large, args.repeats)
    post_processing(f"{small.max()} small nuclei, 512×512", small, args.repeats)
    whole_request(args.repeats)


if __name__ == "__main__":
    main()

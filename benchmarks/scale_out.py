"""predict on a Dask cluster against predict in one process, through the command users
type (`python -m biomodels.predict --task=cellular ...`), on folders of synthetic
cellular images: without --scheduler, with --scheduler=local:1 and with local:2.

Each configuration runs on a folder of --images and on one of twice as many; the
difference gives the seconds per image with start-up cancelled out, the rest is the
start-up (TensorFlow, the model, the cluster's workers). Also measured: the scheduling
overhead per task (tasks that do nothing through the executor, on local:2, per task),
printed as a share of the per-image time (target: at most 5 %), and a projection of a
large folder's time to N workers from the measured per-image time and start-up.

    python benchmarks/scale_out.py --model_dir=RUN [--images=8] [--size=512]

On this 2-core machine TensorFlow already uses both cores in one process, so local:2
is not expected to be faster here: the figure that matters is the overhead.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tifffile  # noqa: E402

from biomodels import cluster  # noqa: E402
from biomodels.pipelines.synthetic.cellular import CELLS_PER_PIXEL, cell_labels, render  # noqa: E402

CONFIGURATIONS = (None, "local:1", "local:2")


def write_images(folder, count, size):
    os.makedirs(folder)
    for index in range(count):
        rng = np.random.default_rng(index)
        labels, centres, _ = cell_labels(rng, (size, size), round(CELLS_PER_PIXEL * size * size))
        tifffile.imwrite(os.path.join(folder, f"cells_{index:04d}.tif"),
                         (render(rng, labels, centres, set()).mean(axis=-1) * 4000).astype(np.uint16))


def command_seconds(model_dir, images, output, scheduler):
    command = [sys.executable, "-m", "biomodels.predict", "--task=cellular", f"--model={model_dir}",
               f"--input={images}", f"--output={output}"] + ([f"--scheduler={scheduler}"] if scheduler else [])
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return seconds


def nothing(item):
    return item


def overhead_per_task(scheduler, tasks=200):
    """Seconds per task of tasks that do nothing, on `scheduler` less in this process."""
    with cluster.executor(scheduler) as executor:
        list(executor.map(nothing, range(8)))  # workers started and warm
        start = time.perf_counter()
        list(executor.map(nothing, range(tasks)))
        on_cluster = (time.perf_counter() - start) / tasks
    start = time.perf_counter()
    list(cluster.InProcess().map(nothing, range(tasks)))
    return on_cluster - (time.perf_counter() - start) / tasks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        small, large = os.path.join(scratch, "small"), os.path.join(scratch, "large")
        write_images(small, args.images, args.size)
        write_images(large, 2 * args.images, args.size)
        for scheduler in CONFIGURATIONS:
            name = scheduler or "in-process"
            short = command_seconds(args.model_dir, small, os.path.join(scratch, f"{name}-s"), scheduler)
            long = command_seconds(args.model_dir, large, os.path.join(scratch, f"{name}-l"), scheduler)
            per_image = (long - short) / args.images
            rows[name] = (per_image, short - args.images * per_image, short, long)
    overhead = overhead_per_task("local:2")
    serial_per_image = rows["in-process"][0]
    print(f"cellular predict, {args.size}x{args.size} images, model {args.model_dir}, {os.cpu_count()} cores")
    print(f"{'configuration':<12} {'s/image':>9} {'start-up s':>11} {'images/s':>9} {'vs in-process':>14} "
          f"{args.images:>4} images s {2 * args.images:>4} images s")
    for name, (per_image, startup, short, long) in rows.items():
        print(f"{name:<12} {per_image:9.3f} {startup:11.1f} {1 / per_image:9.2f} {serial_per_image / per_image:13.2f}x "
              f"{short:14.1f} {long:14.1f}")
    print(f"scheduling overhead per task on local:2: {overhead * 1000:.1f} ms, {overhead / serial_per_image:.1%} of an "
          f"image's {serial_per_image:.3f} s (target <= 5 %: ratio {0.05 / max(overhead / serial_per_image, 1e-9):.1f})")
    per_image, startup = rows["local:1"][0], rows["local:1"][1]
    print("projection for 10,000 images from local:1's per-image time and start-up, N workers of this machine's "
          "kind: " + ", ".join(f"N={n}: {(startup + 10_000 * (per_image + overhead) / n) / 3600:.2f} h"
                               for n in (1, 2, 4, 8, 16, 32)))


if __name__ == "__main__":
    main()

"""predict and prepare on a Dask cluster against one process, through the commands users
type (`python -m biomodels.predict --task=cellular ...`, `python -m biomodels.prepare
--task=cellular --input=...`), on folders of synthetic cellular images: without
--scheduler, with --scheduler=local:1 and with local:2; and the memory of one large
image segmented in blocks.

Each configuration runs on a folder of --images and on one of twice as many; the
difference gives the seconds per image with start-up cancelled out, the rest is the
start-up (TensorFlow, the model, the cluster's workers). Also measured: the scheduling
overhead per task (tasks that do nothing through the executor, on local:2, per task),
printed as a share of the per-image time (target: at most 5 %), and a projection of a
large folder's time to N workers from the measured per-image time and start-up.

Blocks (--block_image=8192): a --block_image² image of bright discs (a tiled TIFF)
segmented with --block on one worker (local:1), every pixel taken as foreground (the
heaviest dynamics, whatever the network finds), against one image of a single block:
the worker's peak memory (its ru_maxrss) for each, and their ratio (target: at most
1.5, memory bounded by the block, not the image).

    python benchmarks/scale_out.py --model_dir=RUN [--images=8] [--size=512] [--sources=64] [--parts=predict,prepare,blocks]

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
    return run_seconds(["biomodels.predict", "--task=cellular", f"--model={model_dir}", f"--input={images}",
                        f"--output={output}"], scheduler)


def prepare_seconds(images, output, scheduler):
    return run_seconds(["biomodels.prepare", "--task=cellular", f"--input={images}", f"--output_dir={output}"], scheduler)


def run_seconds(arguments, scheduler):
    command = [sys.executable, "-m", *arguments] + ([f"--scheduler={scheduler}"] if scheduler else [])
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


def timed_rows(count, scratch, label, write, seconds):
    """{configuration: (s/item, start-up s, s short, s long)} of a command on folders of
    `count` and twice as many items."""
    small, large = os.path.join(scratch, f"{label}-small"), os.path.join(scratch, f"{label}-large")
    write(small, count)
    write(large, 2 * count)
    rows = {}
    for scheduler in CONFIGURATIONS:
        name = scheduler or "in-process"
        short = seconds(small, os.path.join(scratch, f"{label}-{name}-s"), scheduler)
        long = seconds(large, os.path.join(scratch, f"{label}-{name}-l"), scheduler)
        per_item = (long - short) / count
        rows[name] = (per_item, short - count * per_item, short, long)
    return rows


def print_rows(title, rows, count, unit):
    serial = rows["in-process"][0]
    print(title)
    print(f"{'configuration':<12} {'s/' + unit:>9} {'start-up s':>11} {unit + 's/s':>9} {'vs in-process':>14} "
          f"{count:>4} {unit}s s {2 * count:>4} {unit}s s")
    for name, (per_item, startup, short, long) in rows.items():
        print(f"{name:<12} {per_item:9.3f} {startup:11.1f} {1 / per_item:9.2f} {serial / per_item:13.2f}x "
              f"{short:14.1f} {long:14.1f}")


def write_labelled(folder, count, size):
    """`count` synthetic cellular images with their masks (the layout prepare reads)."""
    from biomodels.pipelines.synthetic.cellular import write_dataset

    write_dataset(folder, count, seed=0, shape=(size, size))


def write_disc_image(path, side, radius=12, spacing=34, tile=512):
    """A side² uint16 tiled TIFF of bright discs on a grid, written tile by tile."""
    def tiles():
        for top in range(0, side, tile):
            for left in range(0, side, tile):
                yy, xx = np.mgrid[top:top + tile, left:left + tile]
                dy = (yy % spacing) - spacing // 2
                dx = (xx % spacing) - spacing // 2
                yield np.where(dy ** 2 + dx ** 2 <= radius ** 2, 3000, 200).astype(np.uint16)

    tifffile.imwrite(path, tiles(), shape=(side, side), dtype=np.uint16, tile=(tile, tile))


def peak_memory_mib(_=None):
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def block_memory(model_dir, side, block, scratch):
    """(worker peak MiB, seconds, cells) of a side² image in blocks on a fresh local:1."""
    from biomodels import config as config_lib
    from biomodels import tasks
    from biomodels.pipelines import ome_zarr
    from biomodels.predictors import process_predictor
    from biomodels.tasks.base import option_values
    from biomodels.tasks.cellular import blocks, inference

    path = os.path.join(scratch, f"discs_{side}.tif")
    write_disc_image(path, side)
    task = tasks.get("cellular")
    predictor = process_predictor(task, model_dir)
    # every pixel foreground, no flow-error check: Cellpose's dynamics at their heaviest, whatever the network
    options = option_values(task.predict_options, {"diameter": 24, "masks_in": "python", "cellprob_threshold": -100.0,
                                                   "flow_threshold": 0.0})
    settings = inference.resolve_settings(predictor, config_lib.model_config(task, predictor), options)
    with cluster.executor("local:1") as executor:
        start = time.perf_counter()
        written = blocks.segment_in_blocks(executor, "cellular", model_dir, path, os.path.join(scratch, f"out_{side}"),
                                           settings=settings, block=block)
        seconds = time.perf_counter() - start
        [peak] = executor.client.run(peak_memory_mib).values()
    labels = ome_zarr.Image(written).array
    cells = max(int(np.asarray(labels[top:top + block]).max()) for top in range(0, side, block))  # numbered 1..N
    return peak, seconds, cells


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--sources", type=int, default=64, help="prepare: sources in the shorter run")
    parser.add_argument("--parts", default="predict,prepare,blocks")
    parser.add_argument("--block_image", type=int, default=8192)
    parser.add_argument("--block", type=int, default=1024)
    args = parser.parse_args()
    parts = args.parts.split(",")
    with tempfile.TemporaryDirectory() as scratch:
        if "predict" in parts:
            rows = timed_rows(args.images, scratch, "predict", lambda folder, n: write_images(folder, n, args.size),
                              lambda images, out, scheduler: command_seconds(args.model_dir, images, out, scheduler))
            print_rows(f"cellular predict, {args.size}x{args.size} images, model {args.model_dir}, {os.cpu_count()} cores",
                       rows, args.images, "image")
            overhead = overhead_per_task("local:2")
            serial_per_image = rows["in-process"][0]
            print(f"scheduling overhead per task on local:2: {overhead * 1000:.1f} ms, {overhead / serial_per_image:.1%} "
                  f"of an image's {serial_per_image:.3f} s (target <= 5 %: ratio "
                  f"{0.05 / max(overhead / serial_per_image, 1e-9):.1f})")
            per_image, startup = rows["local:1"][0], rows["local:1"][1]
            print("projection for 10,000 images from local:1's per-image time and start-up, N workers of this "
                  "machine's kind: " + ", ".join(f"N={n}: {(startup + 10_000 * (per_image + overhead) / n) / 3600:.2f} h"
                                                 for n in (1, 2, 4, 8, 16, 32)))
        if "prepare" in parts:
            rows = timed_rows(args.sources, scratch, "prepare", lambda folder, n: write_labelled(folder, n, 256),
                              prepare_seconds)
            print_rows(f"cellular prepare, 256x256 labelled images (the default data set's size, one source each), "
                       f"{os.cpu_count()} cores", rows, args.sources, "source")
            overhead = overhead_per_task("local:2")
            per_source = rows["in-process"][0]
            batch = -(-2 * args.sources // (4 * 2))  # prepare.source_batches on local:2, the longer run
            print(f"scheduling overhead on local:2: {overhead * 1000:.1f} ms a task of {batch} sources, "
                  f"{overhead / (batch * per_source):.1%} of its {batch * per_source:.3f} s (target <= 5 %: ratio "
                  f"{0.05 / max(overhead / (batch * per_source), 1e-9):.1f}); a task per source would be "
                  f"{overhead / per_source:.1%}")
        if "blocks" in parts:
            one_peak, one_seconds, _ = block_memory(args.model_dir, args.block, args.block, scratch)
            peak, seconds, cells = block_memory(args.model_dir, args.block_image, args.block, scratch)
            blocks_count = (-(-args.block_image // args.block)) ** 2
            print(f"cellular predict --block={args.block} on local:1, a worker's peak memory: one {args.block}² image "
                  f"{one_peak:.0f} MiB ({one_seconds:.1f} s); one {args.block_image}² image, {blocks_count} blocks, "
                  f"{cells} cells: {peak:.0f} MiB ({seconds:.1f} s); ratio {peak / one_peak:.2f} (target <= 1.5); "
                  f"this process {peak_memory_mib():.0f} MiB")


if __name__ == "__main__":
    main()

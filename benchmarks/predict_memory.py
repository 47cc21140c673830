"""Does prediction's memory stay flat as inputs grow? Trains a tiny run (1 step: the
weights do not matter here), runs `python -m biomodels.predict` on a small and a large
input in a fresh process each and prints its peak resident memory and throughput, and
the ratio of the large input's peak to the small one's beside the target (1.3).

- cryoet: synthetic 1024×1024 tomograms of two depths, `--probabilities` (issue 15: a
  64-slice tomogram peaks within 1.3× the memory of a 16-slice one);
- lch: folders of two sizes of synthetic 64×64 crops, `--mode=embed` (issue 27: crops
  are read and sent a batch at a time).

    python benchmarks/predict_memory.py [--task=cryoet] [--depths=16,64] [--size=1024]
    python benchmarks/predict_memory.py --task=lch [--crops=1000,8000]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
TARGET_RATIO = 1.3
TINY = ["base_filters=4", "depth=3", "tile_size=128", "synthetic_shape=6,128,128", "batch_size=4"]
TINY_LCH = ["filters=8,16,32", "latent_dim=8", "discriminator_units=16,16,8", "batch_size=8", "synthetic_cells=48",
            "synthetic_cell_lines=4"]

# runs predict in this process and prints its own peak resident set (ru_maxrss, KiB on Linux)
MEASURED = """
import os, resource, runpy, sys
sys.path.insert(0, os.getcwd())  # the checkout this benchmark belongs to, not whichever biomodels is installed
sys.argv = ["predict.py", *sys.argv[1:]]
try:
    runpy.run_module("biomodels.predict", run_name="__main__")
finally:
    print("PEAK_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""


def command(*args, **kwargs):
    result = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args[:3])} failed:\n{result.stderr[-3000:]}")
    return result


def main():
    from biomodels.pipelines import readers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="cryoet", choices=("cryoet", "lch"))
    parser.add_argument("--depths", default="16,64")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--crops", default="1000,8000")
    args = parser.parse_args()
    if args.task == "lch":
        return lch_memory([int(count) for count in args.crops.split(",")])
    depths = [int(depth) for depth in args.depths.split(",")]
    work = tempfile.mkdtemp(prefix="predict-memory-")
    script = trained_run("cryoet", work, TINY, "--num_examples=3")
    rng = np.random.default_rng(0)
    peaks = {}
    print(f"{'depth':>6} {'voxels':>12} {'seconds':>8} {'voxels/s':>10} {'peak MiB':>9}")
    for depth in depths:
        path = os.path.join(work, f"tomogram_{depth}.mrc")
        readers.write_mrc(path, rng.normal(size=(depth, args.size, args.size)).astype(np.float32))
        start = time.perf_counter()
        result = command(script, "--task=cryoet", f"--model={work}/run", f"--input={path}", f"--output={work}/out_{depth}",
                         "--probabilities")
        seconds = time.perf_counter() - start
        peak = int(result.stderr.rsplit("PEAK_KIB", 1)[1].split()[0]) / 1024
        peaks[depth] = peak
        voxels = depth * args.size * args.size
        print(f"{depth:>6} {voxels:>12,} {seconds:>8.1f} {voxels / seconds:>10,.0f} {peak:>9.0f}")
        os.remove(path)
    ratio = peaks[depths[-1]] / peaks[depths[0]]
    print(f"peak memory {depths[-1]} slices / {depths[0]} slices: {ratio:.3f} (target <= {TARGET_RATIO}: "
          f"{ratio / TARGET_RATIO:.3f} of the allowance) {'PASS' if ratio <= TARGET_RATIO else 'FAIL'}")


def trained_run(task, work, tiny, *prepare_flags):
    """A run of `task` trained for one step on synthetic data under `work`; the script
    that measures predict's peak memory."""
    sets = [arg for item in tiny for arg in ("--set", item)]
    command("-m", "biomodels.prepare", f"--task={task}", f"--output_dir={work}/data", "--synthetic", *prepare_flags, *sets)
    command("-m", "biomodels.train", f"--task={task}", f"--data_dir={work}/data", f"--model_dir={work}/run", "--epochs=1",
            "--steps_per_epoch=1", *sets)
    script = os.path.join(work, "measured.py")
    with open(script, "w") as handle:
        handle.write(MEASURED)
    return script


def lch_memory(counts):
    from biomodels.pipelines.synthetic import lch

    work = tempfile.mkdtemp(prefix="predict-memory-")
    script = trained_run("lch", work, TINY_LCH)
    peaks = {}
    print(f"{'crops':>6} {'seconds':>8} {'crops/s':>8} {'peak MiB':>9}")
    for count in counts:
        folder = os.path.join(work, f"crops_{count}")
        lch.write_dataset(folder, count, seed=count, num_lines=4)
        start = time.perf_counter()
        result = command(script, "--task=lch", f"--model={work}/run", f"--input={folder}", f"--output={work}/out_{count}")
        seconds = time.perf_counter() - start
        peaks[count] = int(result.stderr.rsplit("PEAK_KIB", 1)[1].split()[0]) / 1024
        print(f"{count:>6} {seconds:>8.1f} {count / seconds:>8.0f} {peaks[count]:>9.0f}")
    ratio = peaks[counts[-1]] / peaks[counts[0]]
    print(f"peak memory {counts[-1]} crops / {counts[0]} crops: {ratio:.3f} (target <= {TARGET_RATIO}: "
          f"{ratio / TARGET_RATIO:.3f} of the allowance) {'PASS' if ratio <= TARGET_RATIO else 'FAIL'}")


if __name__ == "__main__":
    main()

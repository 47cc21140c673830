"""Does cryoet prediction's memory stay flat as tomograms get deeper? Trains a tiny run
(1 step: the weights do not matter here), writes synthetic 1024×1024 tomograms of two
depths, runs `python -m biomodels.predict --task=cryoet --probabilities` on each in a
fresh process and prints its peak resident memory and throughput (voxels/s), and the
ratio of the deep tomogram's peak to the shallow one's beside the target.

    python benchmarks/predict_memory.py [--depths=16,64] [--size=1024]

Target (issue 15): a 64-slice 1024×1024 tomogram with --probabilities peaks within 1.3×
the memory of a 16-slice one.
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
    parser.add_argument("--depths", default="16,64")
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    depths = [int(depth) for depth in args.depths.split(",")]
    work = tempfile.mkdtemp(prefix="predict-memory-")
    sets = [arg for item in TINY for arg in ("--set", item)]
    command("-m", "biomodels.prepare", "--task=cryoet", f"--output_dir={work}/data", "--synthetic", "--num_examples=3", *sets)
    command("-m", "biomodels.train", "--task=cryoet", f"--data_dir={work}/data", f"--model_dir={work}/run", "--epochs=1",
            "--steps_per_epoch=1", *sets)
    script = os.path.join(work, "measured.py")
    with open(script, "w") as handle:
        handle.write(MEASURED)
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


if __name__ == "__main__":
    main()

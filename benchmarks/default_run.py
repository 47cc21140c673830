"""Does the embedded default run meet its issue's targets? Runs the README's training
command for a task in a fresh process, from an empty data cache (so the synthetic data
are generated and prepared inside the timed run), and prints the wall time and the
test metrics beside their targets as ratios.

    python benchmarks/default_run.py --task=ccp [--keep=DIR]

Targets: ccp finishes in under 5 minutes with ROC-AUC >= 0.95 and balanced accuracy
>= 0.85 (issue 6); deepis in under 15 minutes with a mean per-cell Dice >= 0.7 (issue 4);
cryoet in under 10 minutes with a mean feature IoU >= 0.5; lch in under 15 minutes with
a leave-one-cell-line-out ROC-AUC >= 0.8 (issue 5).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

#: task -> (seconds allowed, {metric: minimum})
TARGETS = {
    "ccp": (300.0, {"roc_auc": 0.95, "balanced_accuracy": 0.85}),
    "cellular": (600.0, {"ap@0.5": 0.7}),
    "cryoet": (600.0, {"mean_iou_features": 0.5}),
    "deepis": (900.0, {"mean_dice": 0.7}),
    "lch": (900.0, {"loco/roc_auc": 0.8}),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True, choices=sorted(TARGETS))
    parser.add_argument("--keep", help="keep the run directory here instead of a temporary folder")
    args = parser.parse_args()
    seconds_allowed, minimums = TARGETS[args.task]
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = args.keep or os.path.join(scratch, "run")
        env = dict(os.environ, BIOMODELS_CACHE=os.path.join(scratch, "cache"))
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "biomodels.train", f"--task={args.task}", f"--model_dir={model_dir}"],
                                env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"training failed:\n{result.stderr[-3000:]}")
        with open(os.path.join(model_dir, "metrics_test.json")) as handle:
            metrics = json.load(handle)
    print(f"{args.task} default run (python -m biomodels.train --task={args.task}, empty data cache)")
    print(f"  wall time          {seconds:8.1f} s   limit {seconds_allowed:6.0f} s   ratio {seconds / seconds_allowed:.2f} (<= 1 passes)")
    for name, minimum in minimums.items():
        value = metrics[name]
        baseline = metrics.get(f"baseline/{name.split('/')[-1]}")
        beside = f"   baseline {baseline:.4f}" if baseline is not None else ""
        print(f"  {name:18s} {value:8.4f}     target {minimum:6.2f}     ratio {value / minimum:.3f} (>= 1 passes){beside}")


if __name__ == "__main__":
    main()

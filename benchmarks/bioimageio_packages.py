"""Does the bioimage.io package of a run pass the model zoo's own test under several hash
seeds? Exports the run with `--bioimageio`, then runs `bioimageio test PACKAGE` (the
command of bioimageio.core, from the test extra) once per PYTHONHASHSEED, each in a fresh
process, and prints one line per seed. A cellular package's masks come from Cellpose's
dynamics (cellpose_flow_dynamics), so its test runs in the reference environment that
has bioimageio.core beside Cellpose (reference_env.py, "bioimageio-cellpose").

    python benchmarks/default_run.py --task=cryoet --keep=RUN
    python benchmarks/bioimageio_packages.py --task=cryoet --model_dir=RUN [--seeds=0,1,2,3]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", required=True)
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--seeds", default="0,1,2,3")
    args = parser.parse_args()
    bioimageio = shutil.which("bioimageio") or os.path.join(os.path.dirname(sys.executable), "bioimageio")
    if args.task == "cellular":
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import reference_env

        bioimageio = os.path.join(os.path.dirname(reference_env.environment_python("bioimageio-cellpose")), "bioimageio")
    with tempfile.TemporaryDirectory() as scratch:
        export = subprocess.run([sys.executable, "-m", "biomodels.export", f"--task={args.task}",
                                 f"--model_dir={args.model_dir}", f"--export_dir={scratch}", "--bioimageio", "--warmup=0"],
                                capture_output=True, text=True)
        if export.returncode != 0:
            sys.exit(f"export failed:\n{export.stderr[-3000:]}")
        package = os.path.join(scratch, args.task, "1.bioimageio.zip")
        print(f"{args.task}: bioimageio test of the package of {args.model_dir}")
        for seed in args.seeds.split(","):
            env = dict(os.environ, PYTHONHASHSEED=seed, TF_CPP_MIN_LOG_LEVEL="2")
            start = time.perf_counter()
            # bioimageio.core unzips the weights into ./bioimageio_unzipped_tf_weights: a folder of its own
            with tempfile.TemporaryDirectory() as cwd:
                result = subprocess.run([bioimageio, "test", package], capture_output=True, text=True, env=env, cwd=cwd)
            verdict = "passed" if result.returncode == 0 else "FAILED"
            print(f"  PYTHONHASHSEED={seed}: {verdict} ({time.perf_counter() - start:.0f} s)")
            if result.returncode != 0:
                print(result.stdout[-2000:])


if __name__ == "__main__":
    main()

"""3-D segmentation of a Z-stack, biomodels against Cellpose 3.1.1.2's own
`CellposeModel.eval(do_3D=True)` with the same network: a CPnet of Cellpose's widths
(32-256, two input channels) trained here on disc images (the slices of spheres;
about 2 minutes) is written as a Cellpose checkpoint, which both load. The stack is
synthetic round cells (synthetic.cell_stacks), 64×256×256 by default, at the network's
own diameter.

Prints, each beside Cellpose's as a ratio:
- the segmentation in the process, best of --repeats after a warm-up
  (`biomodels.load(checkpoint).predict(stack, do_3D=True)` against `eval(do_3D=True)`);
  target: biomodels ≥ 1.3× faster;
- the commands users type, once each (`python -m biomodels.predict --do_3D` against
  `python -m cellpose --do_3D --save_tif`): wall time and peak memory (resident set
  of the command's process);
- AP@0.5 between the two mask stacks (target ≥ 0.95) and of each against the truth.

    python benchmarks/cellular_3d.py [--shape=64,256,256] [--anisotropy=1] [--repeats=1]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from biomodels import cli  # noqa: E402

cli.import_tensorflow()

import numpy as np  # noqa: E402

import reference_env  # noqa: E402
from timing import best_time  # noqa: E402

WIDTHS = (32, 64, 128, 256)  # Cellpose's: its command line loads only these
DIAMETER = 16.0


def train_network(epochs, seed=0):
    """A CellposeNet of Cellpose's widths trained on disc images (CellposeLoss, Adam)."""
    import keras

    from biomodels.models import CellposeLoss, CellposeNet
    from biomodels.pipelines.synthetic.cell_stacks import disc_training_set

    images, targets = disc_training_set(np.random.default_rng(seed), count=64)
    keras.utils.set_random_seed(seed)
    network = CellposeNet(nchan=2, nbase=WIDTHS, diam_mean=DIAMETER)
    network.compile(optimizer=keras.optimizers.Adam(3e-3), loss=CellposeLoss())
    network.fit(images, targets, batch_size=8, epochs=epochs, verbose=0)
    return network


# starts the command from a small process: a child forked from this one (TensorFlow and a
# model loaded) would count this process's memory as its own peak
LAUNCHER = ("import resource, subprocess, sys; code = subprocess.call(sys.argv[1:], stdout=subprocess.DEVNULL); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


def run_command(command, **kwargs):
    """(wall seconds, peak resident MiB) of a command run to completion; it must succeed."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", LAUNCHER, *command], capture_output=True, text=True, **kwargs)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed:\n{result.stderr[-3000:]}")
    return seconds, int(result.stdout.split()[-1]) / 1024


def main():
    import tifffile

    import biomodels
    from biomodels.ops.matching import average_precision
    from biomodels.pipelines.synthetic.cell_stacks import blob_stack

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="64,256,256")
    parser.add_argument("--anisotropy", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    shape = tuple(int(n) for n in args.shape.split(","))

    network = train_network(args.epochs)
    count = int(np.prod(shape) * args.anisotropy / 4000)  # about 15 % of the voxels
    stack, labels = blob_stack(np.random.default_rng(1), shape, args.anisotropy, count=count)
    with tempfile.TemporaryDirectory() as folder:
        np.savez(os.path.join(folder, "state.npz"), **network.cellpose_state())
        np.save(os.path.join(folder, "stack.npy"), stack)
        theirs = json.loads(reference_env.run_script(
            "cellpose_3d.py", folder, ",".join(map(str, (2, *WIDTHS))), DIAMETER, args.anisotropy, 0, args.repeats,
            "do_3D", timeout=3600).strip().splitlines()[-1])
        cellpose_masks = np.load(os.path.join(folder, "masks_3d.npy"))
        checkpoint = os.path.join(folder, "cpnet.pth")  # the script wrote it from state.npz

        model = biomodels.load(checkpoint)
        ours_seconds, result = best_time(lambda: model.predict(stack, do_3D=True, diameter=DIAMETER,
                                                               anisotropy=args.anisotropy), args.repeats)

        tiff = os.path.join(folder, "input", "stack.tif")
        os.makedirs(os.path.dirname(tiff))
        tifffile.imwrite(tiff, stack.astype(np.uint16), imagej=True, metadata={"axes": "ZYX"})
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        our_command = run_command([sys.executable, "-m", "biomodels.predict", "--task=cellular", f"--model={checkpoint}",
                                   f"--input={tiff}", f"--output={os.path.join(folder, 'ours')}", "--do_3D",
                                   f"--diameter={DIAMETER}", f"--anisotropy={args.anisotropy}"], env=env)
        their_out = os.path.join(folder, "theirs")
        os.makedirs(their_out)
        their_command = run_command([reference_env.reference_python(), "-m", "cellpose", "--image_path", tiff,
                                     "--pretrained_model", checkpoint, "--do_3D", "--diameter", str(DIAMETER),
                                     "--anisotropy", str(args.anisotropy), "--z_axis", "0", "--chan", "0", "--save_tif",
                                     "--no_npy", "--savedir", their_out])
        shutil.rmtree(their_out)

    between = average_precision(cellpose_masks, result.masks, thresholds=(0.5,))[0][0]
    ours_truth = average_precision(labels, result.masks)[0]
    theirs_truth = average_precision(labels, cellpose_masks)[0]
    print(f"stack {'×'.join(map(str, shape))}, anisotropy {args.anisotropy:g}, {labels.max()} cells, "
          f"CPnet widths {'-'.join(map(str, WIDTHS))}, diameter {DIAMETER:g}")
    print(f"segmentation in the process: biomodels {ours_seconds:.1f} s, Cellpose {theirs['do_3D']:.1f} s: "
          f"{theirs['do_3D'] / ours_seconds:.2f}× (target ≥ 1.3×)")
    print(f"command: biomodels {our_command[0]:.1f} s, {our_command[1]:.0f} MiB peak; Cellpose {their_command[0]:.1f} s, "
          f"{their_command[1]:.0f} MiB peak: {their_command[0] / our_command[0]:.2f}× the speed, "
          f"{our_command[1] / their_command[1]:.2f}× the memory")
    print(f"AP@0.5 between the two: {between:.3f} (target ≥ 0.95)")
    print("AP@0.5/0.75/0.9 against the truth: biomodels " + "/".join(f"{v:.3f}" for v in ours_truth)
          + ", Cellpose " + "/".join(f"{v:.3f}" for v in theirs_truth))


if __name__ == "__main__":
    main()

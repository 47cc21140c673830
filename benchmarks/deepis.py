"""What does 3-D tiling cost? Predicts a 128×256×256 (Z×Y×X) refractive-index volume
with the deepis serving function, tiled into training crops with blended overlaps, and
as one untiled forward pass of the same voxels, and prints voxels per second for both
and the tiling overhead as a ratio.

    python benchmarks/deepis.py [--model_dir=RUN] [--shape=128,256,256] [--repeats=2]

Without --model_dir it times a freshly built network of the quick preset (the speed does
not depend on the weights).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from biomodels import cli  # noqa: E402

tf = cli.import_tensorflow()

import numpy as np  # noqa: E402

from biomodels import config as config_lib  # noqa: E402
from biomodels import tasks  # noqa: E402
from biomodels.ops.tiling import predict_tiled  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir")
    parser.add_argument("--shape", default="128,256,256")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    task = tasks.get("deepis")
    if args.model_dir:
        from biomodels.runs import load_trained_model, run_config

        config, model = run_config(task, args.model_dir), load_trained_model(args.model_dir)
    else:
        config = config_lib.resolve(task, "quick")
        model = task.build_model(config, {})
    serve = task.serving_functions(model, config)["serving_default"]
    shape = tuple(int(n) for n in args.shape.split(","))
    volume = (config.medium_index + 0.02 * np.random.default_rng(0).normal(size=shape)).astype(np.float32)
    crop = tuple(config.crop)

    def tiled():
        return predict_tiled(volume[..., None], lambda tiles: serve(volumes=tiles)["distance"].numpy()[..., None],
                             tile=crop, overlap=tuple(c // 4 for c in crop), batch_size=1)

    def whole():
        return serve(volumes=volume[None, ..., None])["distance"].numpy()

    timings = {}
    for name, run in (("tiled", tiled), ("untiled", whole)):
        run()  # trace and warm up
        start = time.perf_counter()
        for _ in range(args.repeats):
            run()
        timings[name] = (time.perf_counter() - start) / args.repeats
    voxels = int(np.prod(shape))
    print(f"deepis prediction of a {'×'.join(map(str, shape))} volume ({voxels:,} voxels), crops {crop}, overlap a quarter")
    print(f"  tiled    {timings['tiled']:8.2f} s   {voxels / timings['tiled']:12,.0f} voxels/s")
    print(f"  untiled  {timings['untiled']:8.2f} s   {voxels / timings['untiled']:12,.0f} voxels/s")
    print(f"  tiling overhead: {timings['tiled'] / timings['untiled']:.2f}x the untiled forward pass")


if __name__ == "__main__":
    main()

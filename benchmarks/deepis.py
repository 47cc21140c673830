"""What does 3-D tiling cost, and what does it change? Predicts a 128×256×256 (Z×Y×X)
synthetic refractive-index volume of a cell pair with the deepis serving function three
ways: one untiled forward pass of the whole volume, predict's default plan (the whole
volume up to TILE_VOXELS, else the fewest even tiles of at most that many, overlapping
by TILE_OVERLAP voxels), and the training crops with a quarter overlap (the old
default). For each tiled way it prints seconds, voxels per second, the time against
the untiled pass (target: at most 1.3×), the largest difference of the distance from
the untiled pass's and the share of voxels whose label (CAR-T, target, medium) differs.

    python benchmarks/deepis.py [--model_dir=RUN] [--shape=128,256,256] [--repeats=2]
                                [--tile_voxels=N]

Without --model_dir it times a freshly built network of the quick preset (the speed does
not depend on the weights; the differences do, so give a trained run for those).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from biomodels import cli  # noqa: E402

tf = cli.import_tensorflow()

import numpy as np  # noqa: E402

from biomodels import tasks  # noqa: E402
from biomodels.ops.distance import labels_from_distance  # noqa: E402
from biomodels.ops.tiling import plan_tiles, predict_tiled  # noqa: E402
from biomodels.pipelines.synthetic import deepis as synthetic  # noqa: E402
from biomodels.tasks.deepis import inference  # noqa: E402
from tiling_report import compare_tilings, run_or_quick_model  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir")
    parser.add_argument("--shape", default="128,256,256")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tile_voxels", type=int, default=inference.TILE_VOXELS)
    args = parser.parse_args()
    task = tasks.get("deepis")
    config, model = run_or_quick_model(task, args.model_dir)
    serve = task.bind(config).serving_functions(model)["serving_default"]
    shape = tuple(int(n) for n in args.shape.split(","))
    volume, _ = synthetic.volume(np.random.default_rng(0), shape)
    crop = tuple(config.crop)

    def tiled(tile, overlap):
        return predict_tiled(volume[..., None], lambda tiles: serve(volumes=tiles)["distance"].numpy()[..., None],
                             tile=tile, overlap=overlap, batch_size=1, pad_value=config.medium_index)[..., 0]

    plan = plan_tiles(shape, args.tile_voxels, inference.TILE_OVERLAP)
    ways = {"untiled": lambda: serve(volumes=volume[None, ..., None])["distance"].numpy()[0],
            f"default plan, tiles {'×'.join(map(str, plan))}, overlap {inference.TILE_OVERLAP}":
                lambda: tiled(plan, inference.TILE_OVERLAP),
            f"training crops {'×'.join(map(str, crop))}, overlap a quarter": lambda: tiled(crop, [c // 4 for c in crop])}
    voxels = int(np.prod(shape))
    print(f"deepis prediction of a {'×'.join(map(str, shape))} volume ({voxels:,} voxels), at most "
          f"{args.tile_voxels:,} voxels a tile; {os.cpu_count()} CPU cores")
    compare_tilings(ways, args.repeats, voxels, "voxels", "distance", labels_from_distance)


if __name__ == "__main__":
    main()

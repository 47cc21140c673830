"""What does 2-D tiling cost cryoet, and what does it change? Predicts one 2048×2048
synthetic tomogram slice, standardised with its tomogram's statistics, through the
`standardised` signature three ways: one untiled pass of the whole slice, predict's
default plan (the whole slice up to TILE_PIXELS, else the fewest even tiles of at most
that many, overlapping by 64 pixels), and square tiles of the training tile size with a
64-pixel overlap. For each tiled way it prints seconds, pixels per second, the time
against the untiled pass (target: at most 1.3×), the largest difference of a class
probability from the untiled pass's and the share of pixels whose label differs.

    python benchmarks/cryoet.py [--model_dir=RUN] [--size=2048] [--repeats=2]

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
from biomodels.ops.tiling import plan_tiles, predict_tiled  # noqa: E402
from biomodels.pipelines.synthetic import cryoet as synthetic  # noqa: E402
from biomodels.tasks.cryoet import inference  # noqa: E402
from biomodels.tasks.cryoet.data import normalise_tomogram  # noqa: E402
from tiling_report import compare_tilings, run_or_quick_model  # noqa: E402

OVERLAP = 64


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir")
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    task = tasks.get("cryoet")
    config, model = run_or_quick_model(task, args.model_dir)
    serve = task.bind(config).serving_functions(model)["standardised"]
    density, _ = synthetic.tomogram(np.random.default_rng(0), (3, args.size, args.size))
    image = normalise_tomogram(density)[0][1]
    shape = image.shape

    def tiled(tile):
        return predict_tiled(image[..., None], lambda tiles: serve(images=tiles)["probabilities"].numpy(),
                             tile=tile, overlap=OVERLAP, batch_size=4)

    plan = plan_tiles(shape, inference.TILE_PIXELS, OVERLAP)
    ways = {"untiled": lambda: serve(images=image[None, ..., None])["probabilities"].numpy()[0],
            f"default plan, tiles {'×'.join(map(str, plan))}": lambda: tiled(plan),
            f"training tiles {config.tile_size}×{config.tile_size}": lambda: tiled(config.tile_size)}
    pixels = int(np.prod(shape))
    print(f"cryoet prediction of a {shape[0]}×{shape[1]} slice ({pixels:,} pixels), at most {inference.TILE_PIXELS:,} "
          f"pixels a tile, overlap {OVERLAP}; {os.cpu_count()} CPU cores")
    compare_tilings(ways, args.repeats, pixels, "pixels", "probability", lambda p: p.argmax(-1))


if __name__ == "__main__":
    main()

"""Size estimation (--diameter=0), biomodels against Cellpose 3.1.1.2's own
`SizeModel.eval` on the same network and size model: the CPnet of Cellpose's widths
trained on disc images (cellular_3d.train_network, about 2 minutes), handed to Cellpose
as a checkpoint, and a size model Cellpose's reference script writes (random, seeded:
the timing does not depend on it). Both estimate each image's diameter: the style's
regression, then the median diameter of the masks found at that size.

Prints, per image, the best of --repeats seconds of each after a warm-up, their ratio,
and both estimates (the style's and the refined one).

    python benchmarks/cellular_sizes.py [--size=512] [--repeats=3]
"""

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from biomodels import cli  # noqa: E402

cli.import_tensorflow()

import numpy as np  # noqa: E402

import reference_env  # noqa: E402
from cellular_3d import train_network  # noqa: E402
from timing import best_time  # noqa: E402


def main():
    from biomodels.pipelines.synthetic.cell_stacks import disc_image
    from biomodels.predictors import KerasPredictor
    from biomodels.tasks import get
    from biomodels.tasks.base import option_values
    from biomodels.tasks.cellular import data, sizes
    from biomodels.tasks.cellular.inference import cpnet_config, estimate_diameter, resolve_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()

    network = train_network(args.epochs)
    task = get("cellular")
    predictor = KerasPredictor(task, network, cpnet_config(task, network), source="discs")
    images = {}
    for name, radii in {"small": (3.0, 6.0), "medium": (5.0, 9.0), "large": (9.0, 14.0)}.items():
        image, _ = disc_image(np.random.default_rng(len(images)), args.size, tries=args.size * 2, radius_range=radii)
        images[name] = image * 1000
    with tempfile.TemporaryDirectory() as folder:
        np.savez(os.path.join(folder, "state.npz"), **network.cellpose_state())
        for name, image in images.items():
            np.save(os.path.join(folder, f"image_{name}.npy"), image)
        theirs = json.loads(reference_env.run_script("size_estimate.py", folder, 5, args.repeats,
                                                     timeout=3600).strip().splitlines()[-1])
        size_model = sizes.read_size_model(os.path.join(folder, "size_cpnet.npy"))
    settings = resolve_settings(predictor, cpnet_config(task, network), option_values(task.predict_options, {}))
    settings = type(settings)(**{**settings.__dict__, "gray": True, "size_model": size_model})
    network_call = lambda tiles: predictor("normalised", images=np.ascontiguousarray(tiles, np.float32))  # noqa: E731
    print(f"size estimation of {args.size}×{args.size} disc images, CPnet widths 32-256, best of {args.repeats}")
    print("image: biomodels s, Cellpose s, ratio; diameter (style → refined) biomodels | Cellpose")
    for name, image in images.items():
        normalised = data.normalise(data.cell_channels(image, (0, 1), gray=True))
        seconds, (diameter, by_style) = best_time(lambda: estimate_diameter(network_call, normalised, settings),
                                                  args.repeats)
        their_diameter, their_style = theirs[name]
        their_seconds = theirs["seconds"][name]
        print(f"{name}: {seconds:.2f} s, {their_seconds:.2f} s, {their_seconds / seconds:.2f}× faster; "
              f"{by_style:.1f} → {diameter:.1f} | {their_style:.1f} → {their_diameter:.1f}")


if __name__ == "__main__":
    main()

"""Use a biomodels network as a layer of your own Keras model.

Here the cryo-ET U-Net becomes the trunk of a one-class membrane detector: its six
class probabilities feed a small head of the user's own. The combined model trains
for a few steps on random data, is saved as .keras and loaded back.

    python examples/use_in_keras.py [--steps N] [--size S]
"""

import argparse
import os
import tempfile

import keras
import numpy as np

from biomodels.models import CryoETUNet


def build(size):
    images = keras.Input((size, size, 1), name="tomogram_slices")
    unet = CryoETUNet(base_filters=4, depth=3, name="cryoet_unet")
    probabilities = unet(images)
    membrane = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid", name="membrane")(probabilities)
    return keras.Model(images, membrane, name="my_membrane_detector")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, args.size, args.size, 1)).astype("float32")
    y = (rng.random((8, args.size, args.size, 1)) > 0.9).astype("float32")
    model = build(args.size)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    history = model.fit(x, y, batch_size=4, epochs=1, steps_per_epoch=args.steps, verbose=0)
    print(f"trained {args.steps} steps, loss {history.history['loss'][-1]:.4f}")

    path = os.path.join(tempfile.mkdtemp(), "my_membrane_detector.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    difference = float(np.abs(loaded.predict(x, verbose=0) - model.predict(x, verbose=0)).max())
    print(f"saved and reloaded {path}: max difference {difference:.2e}")
    assert difference < 1e-5


if __name__ == "__main__":
    main()

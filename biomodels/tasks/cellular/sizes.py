"""Cell size estimation as Cellpose's `SizeModel.eval` does it (predict's --diameter=0):
the image's style vector (the network's, over Cellpose's tiles of its padded image)
through the size model's linear regression gives a first diameter; the masks found at
that size give the final one, their median diameter.

A size model is what Cellpose keeps in `size_<model>.npy`: a dict of the regression
(A, smean, ymean) and the network's diam_mean, saved by `np.save` as a pickled object.
It is read with an unpickler that makes nothing but numpy arrays, dtypes and scalars.
"""

import math
import pickle

import numpy as np

from biomodels.errors import InputError

#: Cellpose's tiles and their overlap, and the multiple it pads images to
TILE, TILE_OVERLAP, PAD_MULTIPLE = 224, 0.1, 16
#: what a size model's unpickler may make
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "ndarray"),
            ("numpy", "dtype")}
FIELDS = ("A", "smean", "ymean", "diam_mean")
#: the thresholds Cellpose's SizeModel.eval finds its masks with (CellposeModel.eval's defaults)
CELLPOSE_THRESHOLDS = {"flow_threshold": 0.4, "cellprob_threshold": 0.0, "min_size": 15}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not a numpy array's part")
        return super().find_class(module, name)


def read_size_model(path):
    """{"A", "smean", "ymean", "diam_mean"} of a Cellpose size model file."""
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            _, _, dtype = header(handle)
            if dtype != np.dtype(object):
                raise ValueError(f"holds a {dtype} array, not Cellpose's dict")
            params = _ArraysOnly(handle).load()
        params = params.item() if isinstance(params, np.ndarray) else params
        model = {name: np.asarray(params[name], np.float64) for name in FIELDS}
    except (OSError, ValueError, KeyError, TypeError, EOFError, pickle.UnpicklingError) as error:
        raise InputError(path, f"not a Cellpose size model ({str(error).splitlines()[0]})") from None
    if model["A"].shape != model["smean"].shape or model["A"].ndim != 1:
        raise InputError(path, f"not a Cellpose size model (A {model['A'].shape}, smean {model['smean'].shape})")
    return {"A": model["A"].tolist(), "smean": model["smean"].tolist(), "ymean": float(model["ymean"]),
            "diam_mean": float(model["diam_mean"])}


def checked(size_model, source):
    """A size model kept in a run's calibration, its fields checked: one line naming
    `source` when it is damaged."""
    try:
        fields = {name: np.asarray(size_model[name], np.float64) for name in FIELDS}
        if fields["A"].ndim != 1 or fields["A"].shape != fields["smean"].shape or fields["diam_mean"] <= 0:
            raise ValueError("A and smean must be vectors of one length")
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(source, f"holds a damaged size model ({error})") from None
    return size_model


def cellpose_padding(length):
    """(before, after): Cellpose pads each side to a multiple of 16 plus 8 on each side."""
    extra = PAD_MULTIPLE * math.ceil(length / PAD_MULTIPLE) - length
    return PAD_MULTIPLE // 2 + extra // 2, PAD_MULTIPLE // 2 + extra - extra // 2


def tile_starts(length):
    """Where Cellpose's tiles start along an axis of `length` (padded) pixels."""
    if length <= TILE:
        return [0]
    count = math.ceil((1.0 + 2 * TILE_OVERLAP) * length / TILE)
    return np.linspace(0, length - TILE, count).astype(int).tolist()


def image_style(network, image):
    """The style vector of a normalised image [H, W, C], as Cellpose's `eval` gives it:
    the image padded as Cellpose pads it, cut into its tiles, each tile's style (through
    `network`: tiles [N, h, w, C] -> {"style"}) summed and scaled to unit length."""
    pads = [cellpose_padding(image.shape[0]), cellpose_padding(image.shape[1]), (0, 0)]
    padded = np.pad(image, pads)
    size_y, size_x = min(TILE, padded.shape[0]), min(TILE, padded.shape[1])
    tiles = np.stack([padded[y:y + size_y, x:x + size_x] for y in tile_starts(padded.shape[0])
                      for x in tile_starts(padded.shape[1])])
    style = np.asarray(network(tiles)["style"], np.float64).sum(axis=0)
    return style / max(np.sqrt((style ** 2).sum()), 1e-12)


def style_diameter(style, size_model):
    """The size model's regression of the diameter on the style (at least 5 pixels; the
    network's diam_mean when it gives nothing)."""
    estimate = math.exp(float(np.dot(size_model["A"], np.asarray(style) - np.asarray(size_model["smean"])))
                        + math.log(size_model["diam_mean"]) + size_model["ymean"])
    estimate = max(5.0, estimate)
    return size_model["diam_mean"] if not math.isfinite(estimate) else estimate


def median_diameter(masks):
    """Cellpose's `utils.diameters`: the median of the cells' square-root areas, as the
    diameter of a disc of that area; 0 without cells."""
    counts = np.bincount(np.asarray(masks).reshape(-1).astype(np.int64))[1:]
    counts = counts[counts > 0]
    return float(np.median(np.sqrt(counts)) / (math.sqrt(math.pi) / 2)) if len(counts) else 0.0


#: passes over the training images when a size model is fitted (Cellpose: 10), and at
#: most this many crops in all
SIZE_EPOCHS, SIZE_CROPS = 10, 200
#: the largest crop a style is taken from (Cellpose: 512)
SIZE_CROP = 512


def fit_size_model(image_style_of, images, diameters, diam_mean, seed=0):
    """A size model fitted as Cellpose's `train_size` fits one: each training image (a
    normalised [H, W, C] of cells of mean `diameters`) rescaled at random by 0.5-1.5 and
    cropped to at most 512 pixels, its style (`image_style_of(crop)`) regressed (ridge,
    l2 = 1) on the log of its cells' diameter over the network's `diam_mean`."""
    from biomodels.tasks.cellular.data import resize

    chosen = [(image, d) for image, d in zip(images, diameters) if d > 0]
    if not chosen:
        return None
    rng = np.random.default_rng(seed)
    styles, targets = [], []
    for _ in range(max(1, min(SIZE_EPOCHS, SIZE_CROPS // len(chosen)))):
        for image, diameter in chosen:
            scale = rng.uniform(0.5, 1.5)
            height, width = max(8, round(image.shape[0] * scale)), max(8, round(image.shape[1] * scale))
            resized = resize(image, height, width)
            top, left = rng.integers(0, max(1, height - SIZE_CROP + 1)), rng.integers(0, max(1, width - SIZE_CROP + 1))
            styles.append(image_style_of(resized[top:top + SIZE_CROP, left:left + SIZE_CROP]))
            targets.append(math.log(diameter) - math.log(diam_mean) + math.log(scale))
    return regression(np.asarray(styles, np.float64), np.asarray(targets, np.float64), diam_mean)


def regression(styles, targets, diam_mean):
    """Cellpose's ridge regression (l2 = 1) of log-diameter targets on styles [N, S]."""
    smean = styles.mean(axis=0)
    centred = (styles - smean).T
    ymean = float(targets.mean())
    A = np.linalg.solve(centred @ centred.T + np.eye(centred.shape[0]), centred @ (targets - ymean))
    return {"A": A.tolist(), "smean": smean.tolist(), "ymean": ymean, "diam_mean": float(diam_mean)}

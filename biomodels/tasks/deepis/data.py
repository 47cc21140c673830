"""deepis's raw data: the study's .mat files (`input` RI, `target` signed distance) or
TIFF stacks with label volumes, read into training crops; and the TensorFlow side:
RI normalisation, augmentation, boundary loss weights and the network's input/target
pairs."""

import glob
import os

import numpy as np

from biomodels.errors import InputError
from biomodels.ops import distance as distance_ops
from biomodels.pipelines import readers
from biomodels.tasks.base import Source


def find_sources(input_path):
    readers.require_exists(input_path)
    paths = volume_paths(input_path)
    if not paths:
        raise InputError(input_path, "no volumes: expected NAME.mat (input, target) or NAME.tif with NAME_labels.tif")
    sources = []
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        files = (path,) if path.lower().endswith(".mat") else (path, _label_path(path))
        sources.append(Source(name=name, group=name, paths=files))
    return sources


def read_source(source, config):
    volume, distance, voxel_size = read_volume_pair(source.paths, config.distance_clip)
    info = {"shape": list(volume.shape), "voxel_size": voxel_size,
            "car_t_voxels": int((distance > 0.5).sum()), "target_voxels": int((distance < -0.5).sum())}
    return info, crops(volume, distance, tuple(config.crop), config.medium_index)


def volume_paths(input_path):
    """The file itself, or the .mat and .tif volumes in a folder (label volumes left out)."""
    if os.path.isfile(input_path):
        return [input_path]
    return sorted(p for p in glob.glob(os.path.join(input_path, "*"))
                  if p.lower().endswith((".mat", ".tif", ".tiff")) and not _is_label_file(p))


def predict_inputs(input_path):
    """The volumes predict analyses, one by one (see `volume_paths`)."""
    paths = volume_paths(input_path)
    if not paths:
        raise InputError(input_path, "no .tif or .mat volumes in this directory")
    return paths


def _is_label_file(path):
    return os.path.splitext(path)[0].endswith("_labels")


def _label_path(path):
    stem, suffix = os.path.splitext(path)
    labels = stem + "_labels" + suffix
    if not os.path.isfile(labels):
        raise InputError(path, f"no label volume {os.path.basename(labels)} beside it")
    return labels


def read_volume_pair(paths, clip):
    """(RI float32 (Z, Y, X), signed distance float32, voxel size (x, y, z) µm or None)."""
    path = paths[0]
    if path.lower().endswith(".mat"):
        volume, distance = read_study_mat(path)
        voxel_size = None
    else:
        volume, voxel_size = readers.read_tiff_volume(path)
        labels, _ = readers.read_tiff_volume(paths[1])
        if labels.shape != volume.shape:
            raise InputError(paths[1], f"shape {labels.shape} differs from the volume's {volume.shape} ({path})")
        readers.require_labels_in_range(paths[1], labels, 3)
        distance = distance_ops.signed_distance(labels)
    readers.require_finite(path, volume)
    volume = volume.astype(np.float32)
    return volume, np.clip(distance, -clip, clip).astype(np.float32), voxel_size


def read_volume(path):
    """(RI volume (Z, Y, X), voxel size (x, y, z) in µm or None) of a volume to predict:
    a DeepIS .mat file (its target may be missing) or a TIFF stack; NaN or Inf voxels
    are an InputError."""
    if path.lower().endswith(".mat"):
        volume, voxel_size = read_study_mat(path, require_target=False)[0], None
    else:
        volume, voxel_size = readers.read_tiff_volume(path)
    readers.require_finite(path, volume)
    return volume, voxel_size


def read_study_mat(path, require_target=True):
    """(input, target) of a DeepIS .mat file as Z × Y × X float32 arrays; without
    `require_target` (new data to predict) the target may be missing and is then None."""
    import h5py

    if not os.path.isfile(path):
        raise InputError(path, "no such file")
    arrays = {}
    if h5py.is_hdf5(path):
        try:
            with h5py.File(path, "r") as handle:
                for key in ("input", "target"):
                    if key in handle and isinstance(handle[key], h5py.Dataset) and handle[key].ndim == 3:
                        arrays[key] = np.transpose(np.asarray(handle[key]), (0, 2, 1))  # h5py: slices, columns, rows
        except (OSError, KeyError, ValueError) as error:
            raise InputError(path, f"not a readable MATLAB v7.3 file ({str(error).splitlines()[0]})") from None
    else:
        import scipy.io

        try:
            contents = scipy.io.loadmat(path)
        except Exception as error:
            raise InputError(path, f"not a readable MATLAB file ({str(error).splitlines()[0]})") from None
        arrays = {key: np.transpose(contents[key], (2, 0, 1)) for key in ("input", "target")
                  if key in contents and np.ndim(contents[key]) == 3}
    missing = [key for key in ("input", "target") if key not in arrays and (require_target or key == "input")]
    if missing:
        raise InputError(path, f"has no 3-D {' or '.join(repr(k) for k in missing)} (expected the RI tomogram 'input' and its signed distance 'target')")
    if "target" not in arrays:
        return arrays["input"].astype(np.float32), None
    if arrays["input"].shape != arrays["target"].shape:
        raise InputError(path, f"'input' {arrays['input'].shape} and 'target' {arrays['target'].shape} differ in shape")
    readers.require_finite(path, arrays["target"])
    return arrays["input"].astype(np.float32), arrays["target"].astype(np.float32)


def crops(volume, distance, crop, medium_index):
    """Examples {"volume", "distance"} of `crop` size tiling the volume; the borders are
    padded with the medium's index and zero distance."""
    padding = [(0, (-n) % c) for n, c in zip(volume.shape, crop)]
    volume = np.pad(volume, padding, constant_values=medium_index)
    distance = np.pad(distance, padding)
    for z in range(0, volume.shape[0], crop[0]):
        for y in range(0, volume.shape[1], crop[1]):
            for x in range(0, volume.shape[2], crop[2]):
                region = (slice(z, z + crop[0]), slice(y, y + crop[1]), slice(x, x + crop[2]))
                yield {"volume": volume[region], "distance": distance[region]}


def preprocess(inputs, config):
    """Refractive index to network input: (RI - medium_index) / ri_scale with the run's
    settings (1.337 and 0.01 by default); non-finite voxels become the medium."""
    import tensorflow as tf

    inputs = tf.cast(inputs, tf.float32)
    inputs = tf.where(tf.math.is_finite(inputs), inputs, config.medium_index)
    return (inputs - config.medium_index) / config.ri_scale


def augment(example, seed, config):
    """A randomly flipped, rotated, zoomed and elastically deformed crop, its distance
    carried along (`biomodels.pipelines.augment3d`); `seed` is a stateless [2] int64 seed."""
    from biomodels.pipelines.augment3d import augment_volume_and_distance

    return augment_volume_and_distance(example, seed, config)


def model_io(example, config):
    """(normalised volume [Z, Y, X, 1], distance [Z, Y, X, 1], loss weights [Z, Y, X])."""
    volume = preprocess(example["volume"], config)[..., None]
    distance = example["distance"][..., None]
    return volume, distance, boundary_weights(example["distance"], config)


def boundary_weights(distance, config):
    """Per-voxel loss weights 1 + interface·(interface density) + car_t·(inside CAR-T) +
    target·(inside target): the interface is where both masks, dilated by a 5³ box,
    overlap, smoothed by a 3³ mean."""
    import tensorflow as tf

    car_t = tf.cast(distance > 0.5, tf.float32)[None, ..., None]
    target = tf.cast(distance < -0.5, tf.float32)[None, ..., None]
    dilate = lambda mask: tf.nn.max_pool3d(mask, 5, 1, "SAME")  # noqa: E731
    interface = dilate(car_t) * dilate(target)
    interface = tf.nn.avg_pool3d(interface, 3, 1, "SAME")
    weights = 1.0 + config.interface_weight * interface + config.car_t_weight * car_t + config.target_weight * target
    return weights[0, ..., 0]

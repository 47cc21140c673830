"""What deepis writes for people: for every volume given to predict, the signed distance,
the two cells' labels, the synapse (TIFF with the voxel size) and a report of volumes and
synapse size; the synapse analysis itself; and the images shown in TensorBoard."""

import os

import numpy as np

from biomodels.config import write_json_atomic
from biomodels.errors import ConfigError, InputError
from biomodels.ops import distance as distance_ops
from biomodels.pipelines import readers
from biomodels.tasks.base import comma_numbers
from biomodels.tasks.deepis.config import DeepISConfig
from biomodels.tasks.deepis.data import read_study_mat, volume_paths


def parse_voxel_size(text):
    """(x, y, z) in µm from 'x,y,z' or one number for all three; None for None."""
    if not text:
        return None
    values = comma_numbers(text, float)
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or min(values) <= 0:
        raise ConfigError(f"--voxel_size={text}: expected x,y,z in µm (or one number), all positive")
    return values


def parse_tile(text):
    """(z, y, x) tile size from 'z,y,x'; None for None."""
    if not text:
        return None
    values = comma_numbers(text, int)
    if len(values) != 3 or min(values) < 4:
        raise ConfigError(f"--tile={text}: expected z,y,x in voxels, each at least 4")
    return values


def analyze_synapse(distance, voxel_size=None):
    """{"labels": 0/1/2 uint8, "synapse": bool, "report": dict} from a signed distance
    volume (Z, Y, X); `voxel_size` (x, y, z) in µm puts the report in µm³ and µm²."""
    labels = distance_ops.labels_from_distance(distance)
    synapse = distance_ops.synapse_mask(labels)
    car_t_surface = distance_ops.surface(labels == 1)
    report = {
        "car_t_voxels": int((labels == 1).sum()), "target_voxels": int((labels == 2).sum()),
        "synapse_voxels": int(synapse.sum()), "synapse_surface_voxels": int((synapse & car_t_surface).sum()),
        "car_t_surface_voxels": int(car_t_surface.sum()),
    }
    if voxel_size is not None:
        voxel_volume = float(np.prod(voxel_size))
        face = voxel_volume ** (2 / 3)  # area of one surface voxel, for roughly isotropic voxels
        report.update({
            "voxel_size_um": [float(v) for v in voxel_size],
            "car_t_volume_um3": report["car_t_voxels"] * voxel_volume,
            "target_volume_um3": report["target_voxels"] * voxel_volume,
            "synapse_volume_um3": report["synapse_voxels"] * voxel_volume,
            "synapse_area_um2": report["synapse_surface_voxels"] * face,
        })
    return {"labels": labels, "synapse": synapse, "report": report}


# Voxels in one tile of the default plan: the forward pass's peak resident memory grew by
# 515-603 bytes a voxel for both presets (quick at 64×128×128 and 128×256×256, paper at
# 32×128×128 and 64×128×128, on CPU, 2026-11-30), so a tile needs about 3.4 GiB.
TILE_VOXELS = 6_000_000
TILE_OVERLAP = 32  # voxels per axis between the default plan's tiles


def predict_distance(predictor, volume, tile=None):
    """The signed distance of a whole RI volume (Z, Y, X). By default the volume goes
    whole when it holds at most TILE_VOXELS, else in the fewest even tiles of at most
    that many, overlapping by TILE_OVERLAP voxels and blended; a `tile` (z, y, x) given
    is blended with a quarter overlap. A volume smaller than a tile is padded with the
    medium's index, as training crops are."""
    from biomodels.ops.tiling import plan_tiles, predict_tiled

    if tile is None:
        tile, overlap = plan_tiles(volume.shape, TILE_VOXELS, TILE_OVERLAP), TILE_OVERLAP
    else:
        overlap = tuple(n // 4 for n in tile)
    medium = float(predictor.config.get("medium_index", DeepISConfig.medium_index))
    return predict_tiled(volume.astype(np.float32)[..., None],
                         lambda tiles: predictor("serving_default", volumes=tiles)["distance"][..., None],
                         tile=tile, overlap=overlap, batch_size=1, pad_value=medium)[..., 0]


def predict_volumes(predictor, input_path, output_dir, options):
    """NAME_distance.tif, NAME_labels.tif, NAME_synapse.tif and NAME_report.json for
    every volume under `input_path`."""
    from biomodels.report import progress_bar

    paths = volume_paths(input_path)
    if not paths:
        raise InputError(input_path, "no .tif or .mat volumes in this directory")
    written = []
    bar = progress_bar(len(paths), "volumes")
    for done, path in enumerate(paths, start=1):
        if path.lower().endswith(".mat"):
            volume, voxel_size = read_study_mat(path, require_target=False)[0], None
        else:
            volume, voxel_size = readers.read_tiff_volume(path)
        readers.require_finite(path, volume)
        voxel_size = options.get("voxel_size") or voxel_size
        distance = predict_distance(predictor, volume, options.get("tile"))
        result = analyze_synapse(distance, voxel_size)
        stem = os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0])
        readers.write_tiff_volume(f"{stem}_distance.tif", distance.astype(np.float32), voxel_size)
        readers.write_tiff_volume(f"{stem}_labels.tif", result["labels"], voxel_size)
        readers.write_tiff_volume(f"{stem}_synapse.tif", result["synapse"].astype(np.uint8), voxel_size)
        write_json_atomic(f"{stem}_report.json", {"file": os.path.abspath(path), **result["report"]})
        written += [f"{stem}_{kind}" for kind in ("distance.tif", "labels.tif", "synapse.tif", "report.json")]
        bar.update(done)
    return written


def summary_images(model, inputs, targets):
    """The middle slice of input, true and predicted distance."""
    from biomodels.ops.display import gray_rgb

    predicted = np.asarray(model(inputs, training=False))[..., 0]
    middle = inputs.shape[1] // 2
    scale = max(1.0, float(np.abs(np.asarray(targets)).max()))
    return {"input": gray_rgb(np.asarray(inputs)[:, middle, :, :, 0]),
            "ground_truth": colour_distance(np.asarray(targets)[:, middle, :, :, 0], scale),
            "prediction": colour_distance(predicted[:, middle], scale)}


def colour_distance(distance, clip):
    """RGB: CAR-T (positive) in red, target (negative) in blue, brighter further inside."""
    scaled = np.clip(np.asarray(distance) / clip, -1, 1)
    rgb = np.zeros(scaled.shape + (3,), np.uint8)
    rgb[..., 0] = (np.maximum(scaled, 0) * 255).astype(np.uint8)
    rgb[..., 2] = (np.maximum(-scaled, 0) * 255).astype(np.uint8)
    return rgb

"""deepis's study metrics: per cell Dice and 3-D Pearson correlation of the masks, the
synapse boundary displacement (with the synapses missed and invented) and the distance's
error, for each whole volume of a split and averaged over them; and the printed table."""

import itertools
import math

import numpy as np

from biomodels.ops.segmentation_metrics import cell_scores
from biomodels.tasks.deepis.config import CELL_NAMES


def scored_by_volume(manifest, split):
    """Whether `split` is scored volume by volume (the paper scored volumes, n of them,
    mean ± s.d.): not when the data set was split within volumes (too few volumes to
    split by volume), which is scored crop by crop instead, and says so."""
    return bool(manifest.sources_in(split)) and not manifest.sources_in("all")


def volume_units(manifest, split, crop):
    """The (start, count) range of each volume's crops among `split`'s examples
    (prepare writes a volume's crops in order, one volume after another)."""
    units, start = [], 0
    for source in manifest.sources_in(split):
        count = math.prod(-(-n // c) for n, c in zip(source.details["shape"], crop))
        units.append((start, count))
        start += count
    return units


def evaluation_part(model, dataset, manifest, config, split, portion):
    """The scores of each whole volume among the examples `portion` (start, count) of
    `split`, predicted tiled as predict does and reassembled from its crops; of each crop
    when the split is not scored by volume."""
    if not scored_by_volume(manifest, split):
        return {"scores": _score_crops(model, dataset)}
    from biomodels.pipelines import dataset as dataset_lib
    from biomodels.tasks.deepis.inference import predict_distance
    from biomodels.tasks.deepis.serving import serving_functions

    serve = serving_functions(model, config)["serving_default"]  # the network as predict runs it
    crop = tuple(config.crop)
    examples = dataset_lib.examples(manifest, split, portion).as_numpy_iterator()
    sources = manifest.sources_in(split)
    per_volume = []
    for source, (start, _) in zip(sources, volume_units(manifest, split, crop)):
        if not portion[0] <= start < portion[0] + portion[1]:
            continue
        volume, distance = _reassembled(examples, tuple(source.details["shape"]), crop)
        predicted = predict_distance(lambda tiles: serve(volumes=np.float32(tiles))["distance"], volume, config.medium_index)
        per_volume.append(cell_scores(distance, predicted))
    return {"scores": per_volume}


def metrics_from_parts(parts, manifest, split):
    scored = "volumes" if scored_by_volume(manifest, split) else "crops"
    return {**summarise_scores(parts["scores"]), "scored": scored}


def _reassembled(examples, shape, crop):
    """(RI volume, distance) of `shape` from the next crops of `examples`, which tile it
    in Z, Y, X order as data.crops cut them."""
    padded = [n + (-n) % c for n, c in zip(shape, crop)]
    volume, distance = np.empty(padded, np.float32), np.empty(padded, np.float32)
    for corner in itertools.product(*(range(0, n, c) for n, c in zip(padded, crop))):
        example = next(examples)
        region = tuple(slice(start, start + size) for start, size in zip(corner, crop))
        volume[region], distance[region] = example["volume"], example["distance"]
    keep = tuple(slice(0, n) for n in shape)
    return volume[keep], distance[keep]


def _score_crops(model, dataset):
    """The scores of each crop of `dataset`."""
    import tensorflow as tf

    predict = tf.function(lambda x: model(x, training=False))
    per_example = []
    for inputs, targets, _ in dataset:
        predicted = predict(inputs).numpy()[..., 0]
        for truth, guess in zip(targets.numpy()[..., 0], predicted):
            per_example.append(cell_scores(truth, guess))
    return per_example


def summarise_scores(per_example):
    """Means and standard deviations over volumes of per-cell Dice and Pearson
    correlation (a cell absent from both truth and prediction is not scored; one
    predicted where there is none, or missed, scores 0), synapse displacement (where
    both synapses exist) with the counts of synapses missed and invented beside it, and
    the distance error."""
    metrics = {}
    for cell, name in CELL_NAMES.items():
        for score in ("dice", "pearson"):
            values = [s[f"{score}/{cell}"] for s in per_example if not np.isnan(s[f"{score}/{cell}"])]
            metrics[f"{score}/{name}"] = float(np.mean(values)) if values else float("nan")
            metrics[f"{score}/{name}/sd"] = float(np.std(values)) if values else float("nan")
    metrics["mean_dice"] = float(np.nanmean([metrics["dice/car_t"], metrics["dice/target"]]))
    metrics["mean_pearson"] = float(np.nanmean([metrics["pearson/car_t"], metrics["pearson/target"]]))
    displacements = [s["synapse_displacement"] for s in per_example if not np.isnan(s["synapse_displacement"])]
    metrics["synapse_displacement"] = float(np.mean(displacements)) if displacements else float("nan")
    metrics["synapses_missed"] = int(sum(s["synapse"] == "missed" for s in per_example))
    metrics["synapses_invented"] = int(sum(s["synapse"] == "invented" for s in per_example))
    metrics["distance_mae"] = float(np.mean([s["distance_mae"] for s in per_example]))
    metrics["volumes"] = len(per_example)
    return metrics


def metrics_table(metrics):
    rows = [(CELL_NAMES[c], metrics[f"dice/{CELL_NAMES[c]}"], metrics[f"pearson/{CELL_NAMES[c]}"]) for c in (1, 2)]
    rows.append(("mean", metrics["mean_dice"], metrics["mean_pearson"]))
    rows.append(("synapse boundary displacement (voxels)", metrics["synapse_displacement"], ""))
    if "synapses_missed" in metrics:
        rows.append(("synapses missed / invented", f"{metrics['synapses_missed']} / {metrics['synapses_invented']}", ""))
    rows.append(("distance mean absolute error (voxels)", metrics["distance_mae"], ""))
    rows.append((f"{metrics['volumes']} {metrics.get('scored', 'volumes')} scored", "", ""))
    return ("cell", "Dice", "Pearson"), rows

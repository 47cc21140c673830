"""deepis's study metrics: per cell Dice and 3-D Pearson correlation of the masks, the
synapse boundary displacement (with the synapses missed and invented) and the distance's
error, for each whole volume of a split and averaged over them; and the printed table."""

import itertools

import numpy as np

from biomodels.ops.segmentation_metrics import cell_scores
from biomodels.tasks.deepis.config import CELL_NAMES


def evaluate(model, dataset, manifest, config, split):
    """Scores of each whole volume of `split`, predicted tiled as predict does (the paper
    scored volumes, n of them, mean ± s.d.). Volumes are reassembled from their crops,
    which prepare writes in order; a data set split within volumes (too few volumes to
    split by volume) is scored crop by crop instead, and says so."""
    sources = manifest.sources_in(split)
    if not sources or manifest.sources_in("all"):
        return {**_score_crops(model, dataset), "scored": "crops"}
    from biomodels.pipelines import dataset as dataset_lib
    from biomodels.tasks.deepis.inference import predict_distance
    from biomodels.tasks.deepis.serving import serving_functions

    serve = serving_functions(model, config)["serving_default"]  # the network as predict runs it
    crop = tuple(config.crop)
    examples = dataset_lib.examples(manifest, split).as_numpy_iterator()
    per_volume = []
    for source in sources:
        volume, distance = _reassembled(examples, tuple(source.details["shape"]), crop)
        predicted = predict_distance(lambda tiles: serve(volumes=np.float32(tiles))["distance"], volume, config.medium_index)
        per_volume.append(cell_scores(distance, predicted))
    return {**summarise_scores(per_volume), "scored": "volumes"}


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
    import tensorflow as tf

    predict = tf.function(lambda x: model(x, training=False))
    per_example = []
    for inputs, targets, _ in dataset:
        predicted = predict(inputs).numpy()[..., 0]
        for truth, guess in zip(targets.numpy()[..., 0], predicted):
            per_example.append(cell_scores(truth, guess))
    return summarise_scores(per_example)


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

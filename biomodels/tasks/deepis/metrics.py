"""deepis's study metrics: per cell Dice and 3-D Pearson correlation of the masks, the
synapse boundary displacement and the distance's error, averaged over a split; and the
printed table."""

import numpy as np

from biomodels.tasks.deepis.config import CELL_NAMES


def evaluate(model, dataset):
    import tensorflow as tf

    from biomodels.ops.segmentation_metrics import cell_scores

    predict = tf.function(lambda x: model(x, training=False))
    per_example = []
    for inputs, targets, _ in dataset:
        predicted = predict(inputs).numpy()[..., 0]
        for truth, guess in zip(targets.numpy()[..., 0], predicted):
            per_example.append(cell_scores(truth, guess))
    return summarise_scores(per_example)


def summarise_scores(per_example):
    """Means over examples of per-cell Dice and Pearson correlation (where the cell is
    present in the truth), synapse displacement and distance error."""
    metrics = {}
    for cell, name in CELL_NAMES.items():
        for score in ("dice", "pearson"):
            values = [s[f"{score}/{cell}"] for s in per_example if not np.isnan(s[f"{score}/{cell}"])]
            metrics[f"{score}/{name}"] = float(np.mean(values)) if values else float("nan")
    metrics["mean_dice"] = float(np.nanmean([metrics["dice/car_t"], metrics["dice/target"]]))
    metrics["mean_pearson"] = float(np.nanmean([metrics["pearson/car_t"], metrics["pearson/target"]]))
    displacements = [s["synapse_displacement"] for s in per_example if not np.isnan(s["synapse_displacement"])]
    metrics["synapse_displacement"] = float(np.mean(displacements)) if displacements else float("nan")
    metrics["distance_mae"] = float(np.mean([s["distance_mae"] for s in per_example]))
    metrics["volumes"] = len(per_example)
    return metrics


def metrics_table(metrics):
    rows = [(CELL_NAMES[c], metrics[f"dice/{CELL_NAMES[c]}"], metrics[f"pearson/{CELL_NAMES[c]}"]) for c in (1, 2)]
    rows.append(("mean", metrics["mean_dice"], metrics["mean_pearson"]))
    rows.append(("synapse boundary displacement (voxels)", metrics["synapse_displacement"], ""))
    rows.append(("distance mean absolute error (voxels)", metrics["distance_mae"], ""))
    return ("cell", "Dice", "Pearson"), rows

"""cellular's study metrics over a split: Cellpose's average precision at IoU 0.5, 0.75
and 0.9 (Hungarian matching) and the CELLULAR paper's foreground-pixel precision, recall,
F1 and Jaccard, each averaged over images, for all cells and per class; the printed table."""

import numpy as np

from biomodels.ops import matching
from biomodels.tasks.base import TILING_DEFAULTS
from biomodels.tasks.cellular.config import AP_THRESHOLDS, mask_thresholds


def evaluation_part(model, dataset, manifest, config, calibration):
    """Each image's true labels, pixel classes and predicted masks (gathered over a
    split), the masks found as predict finds them."""
    from biomodels.ops.cellpose_parts import target_part
    from biomodels.tasks.cellular.inference import segment
    from biomodels.tasks.cellular.serving import serving_functions

    normalised = serving_functions(model, config)["normalised"]  # the network as predict runs it
    diameter = calibration.get("training_diameter") or manifest.statistics["mean_diameter"]
    true_labels, predicted, pixel_classes = [], [], []
    for inputs, targets in dataset:
        for image, target in zip(np.asarray(inputs), np.asarray(targets)):
            valid = target_part(target, "label") >= 0
            height, width = int(valid.any(axis=1).sum()), int(valid.any(axis=0).sum())
            image, target = image[:height, :width], target[:height, :width]
            masks, _ = segment(lambda tiles: normalised(images=np.float32(tiles)), image, config.diameter_mean / max(diameter, 1e-3),
                               mask_thresholds(config), tile=None, **TILING_DEFAULTS)
            true_labels.append(target_part(target, "label").astype(np.int32))
            pixel_classes.append(target_part(target, "pixel_class").astype(np.int32))
            predicted.append(masks)
    return {"true_labels": true_labels, "predicted": predicted, "pixel_classes": pixel_classes}


def metrics_from_parts(parts, manifest):
    class_names = manifest.sources[0].details.get("class_names", []) if manifest.sources else []
    return score_images(parts["true_labels"], parts["predicted"], parts["pixel_classes"], class_names, AP_THRESHOLDS)


def score_images(true_labels, predicted, pixel_classes, class_names, thresholds):
    """The study's metrics over images, each averaged over images: average precision at
    each IoU threshold and foreground-pixel scores, for all cells and per class (a
    predicted cell belongs to the class of the true cell it overlaps most; one that
    overlaps no true cell counts as a false positive in every class)."""
    metrics = {"images": len(true_labels), "true_cells": int(sum(len(np.unique(t[t > 0])) for t in true_labels)),
               "predicted_cells": int(sum(len(np.unique(p[p > 0])) for p in predicted)),
               "predicted_cells_touching_no_true_cell": sum(map(_touching_no_true_cell, true_labels, predicted))}
    metrics.update(_scores(true_labels, predicted, thresholds, prefix=""))
    for index, name in enumerate(class_names):
        pairs = []
        for true, pred, classes in zip(true_labels, predicted, pixel_classes):
            object_classes = np.full(int(true.max()) + 1, -1, np.int64)
            object_classes[true[true > 0]] = classes[true > 0]
            owner = matching.attribute_predictions(true, pred, object_classes)
            true_class = np.where(classes == index, true, 0)
            # a predicted cell that touches no true cell could be of any class: it is a
            # false positive in every class (else per-class precision would never see it)
            pred_class = np.where((owner[pred] == index) | ((owner[pred] == -1) & (pred > 0)), pred, 0)
            if true_class.any() or pred_class.any():
                pairs.append((true_class, pred_class))
        if pairs:
            metrics[f"{name}/cells"] = int(sum(len(np.unique(t[t > 0])) for t, _ in pairs))
            metrics.update(_scores(*map(list, zip(*pairs)), thresholds, prefix=f"{name}/"))
    return metrics


def _touching_no_true_cell(true, pred):
    """How many predicted cells share no pixel with any true cell."""
    touching = np.unique(pred[(pred > 0) & (true > 0)])
    return int(len(np.setdiff1d(np.unique(pred[pred > 0]), touching)))


def _scores(true_labels, predicted, thresholds, prefix):
    ap, _, _, _ = matching.average_precision(true_labels, predicted, thresholds)
    scores = {f"{prefix}ap@{t:g}": float(value) for t, value in zip(thresholds, ap.mean(axis=0))}
    pixel = [matching.foreground_scores(t, p) for t, p in zip(true_labels, predicted)]
    for name in ("precision", "recall", "f1", "jaccard"):
        scores[f"{prefix}pixel_{name}"] = float(np.mean([p[name] for p in pixel]))
    return scores


def metrics_rows(metrics, thresholds=AP_THRESHOLDS):
    """(header, rows): all cells, then each class found in the metrics."""
    columns = [f"ap@{t:g}" for t in thresholds] + ["pixel_precision", "pixel_recall", "pixel_f1", "pixel_jaccard"]
    header = ("cells", *[f"AP@{t:g}" for t in thresholds], "precision", "recall", "F1", "Jaccard")
    rows = [(f"all ({metrics['true_cells']})", *[metrics[c] for c in columns])]
    stray = metrics.get("predicted_cells_touching_no_true_cell")
    classes = sorted({key.split("/")[0] for key in metrics if "/" in key})
    for name in classes:
        rows.append((f"{name} ({metrics[f'{name}/cells']})", *[metrics[f"{name}/{c}"] for c in columns]))
    if stray is not None:
        rows.append((f"predicted cells touching no true cell: {stray} (false positives in every class)",
                     *[""] * len(columns)))
    return header, rows

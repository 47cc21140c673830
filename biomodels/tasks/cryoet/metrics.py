"""cryoet's study metrics: per-class pixel F1 and IoU over a split (padding ignored),
their means over the five feature classes, and the printed table."""

import numpy as np

from biomodels.tasks.cryoet.config import CLASS_NAMES, FEATURE_CLASSES, IGNORE_LABEL, NUM_CLASSES


def confusion_part(model, dataset):
    """The confusion counts over `dataset` (partial sums, added up over a split)."""
    import tensorflow as tf

    from biomodels.ops.segmentation_metrics import confusion_matrix

    predict = tf.function(lambda x: tf.argmax(model(x, training=False), axis=-1))
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for inputs, targets in dataset:
        confusion += confusion_matrix(targets.numpy(), predict(inputs).numpy(), NUM_CLASSES, IGNORE_LABEL)
    return {"confusion": confusion}


def metrics_from_confusion(parts):
    """Per-class F1 and IoU, their means over the features, and pixel accuracy."""
    from biomodels.ops.segmentation_metrics import class_scores

    confusion = parts["confusion"]
    scores = class_scores(confusion)
    metrics = {}
    for index, name in enumerate(CLASS_NAMES):
        metrics[f"f1/{name}"] = float(scores["f1"][index])
        metrics[f"iou/{name}"] = float(scores["iou"][index])
    features = list(FEATURE_CLASSES)
    metrics["mean_f1_features"] = float(np.nanmean(scores["f1"][features]))
    metrics["mean_iou_features"] = float(np.nanmean(scores["iou"][features]))
    metrics["pixel_accuracy"] = float(np.trace(confusion) / max(1, confusion.sum()))
    metrics["pixels"] = int(confusion.sum())
    return metrics


def metrics_table(metrics):
    rows = [(name, metrics[f"f1/{name}"], metrics[f"iou/{name}"]) for name in CLASS_NAMES]
    rows.append(("mean of the 5 features", metrics["mean_f1_features"], metrics["mean_iou_features"]))
    return ("class", "F1", "IoU"), rows

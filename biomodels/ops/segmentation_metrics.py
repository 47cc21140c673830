"""Pixel-wise segmentation scores from a confusion matrix: per-class precision,
recall, F1 and IoU, with pixels of an ignore label left out."""

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes, ignore_label=255):
    """counts[t, p]: pixels of true class t predicted as p."""
    y_true = np.asarray(y_true).ravel().astype(np.int64)
    y_pred = np.asarray(y_pred).ravel().astype(np.int64)
    keep = y_true != ignore_label
    index = y_true[keep] * num_classes + y_pred[keep]
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def class_scores(confusion):
    """Per-class precision, recall, F1 and IoU arrays (NaN where a class never occurs
    in the truth nor in the prediction)."""
    confusion = np.asarray(confusion, np.float64)
    true_positive = np.diag(confusion)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(predicted > 0, true_positive / predicted, np.where(actual > 0, 0.0, np.nan))
        recall = np.where(actual > 0, true_positive / actual, np.nan)
        union = actual + predicted - true_positive
        iou = np.where(union > 0, true_positive / union, np.nan)
        f1 = np.where(actual + predicted > 0, 2 * true_positive / (actual + predicted), np.nan)
    return {"precision": precision, "recall": recall, "f1": f1, "iou": iou}

"""Segmentation scores: per-class precision, recall, F1 and IoU from a confusion matrix
(pixels of an ignore label left out), and the per-cell scores of a signed distance map."""

import numpy as np


def confusion_matrix(y_true, y_pred, num_classes, ignore_label=255):
    """counts[t, p]: pixels of true class t predicted as p (scikit-learn's
    `confusion_matrix` over classes 0..num_classes-1), pixels labelled `ignore_label` left out."""
    from sklearn import metrics

    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    keep = y_true != ignore_label
    return metrics.confusion_matrix(y_true[keep], y_pred[keep], labels=np.arange(num_classes)).astype(np.int64)


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


def cell_scores(true_distance, predicted_distance):
    """DeepIS scores of one volume from its true and predicted signed distances: per cell
    (1 CAR-T, 2 target) Dice and 3-D Pearson correlation of the masks (NaN where the cell
    is in neither; 0 where it is in one only), the synapse boundary displacement
    (symmetric mean distance in voxels between the surfaces of the true and predicted
    synapses; NaN unless both exist), whether the synapse was found, missed, invented or
    absent from both, and the distance's mean absolute error."""
    from scipy import ndimage

    from biomodels.ops.distance import labels_from_distance, surface, synapse_mask

    truth, guess = labels_from_distance(true_distance), labels_from_distance(predicted_distance)
    scores = {}
    for cell in (1, 2):
        t, p = (truth == cell), (guess == cell)
        if not t.any():
            # nothing to find: unscored if nothing was found, else a false cell scores 0
            scores[f"dice/{cell}"] = scores[f"pearson/{cell}"] = 0.0 if p.any() else float("nan")
            continue
        scores[f"dice/{cell}"] = float(2 * np.sum(t & p) / (t.sum() + p.sum()))
        scores[f"pearson/{cell}"] = float(np.corrcoef(t.ravel(), p.ravel())[0, 1]) if p.any() and not p.all() else 0.0
    true_synapse, predicted_synapse = surface(synapse_mask(truth)), surface(synapse_mask(guess))
    if true_synapse.any() and predicted_synapse.any():
        to_true = ndimage.distance_transform_edt(~true_synapse)[predicted_synapse]
        to_predicted = ndimage.distance_transform_edt(~predicted_synapse)[true_synapse]
        scores["synapse_displacement"] = float((to_true.mean() + to_predicted.mean()) / 2)
    else:
        scores["synapse_displacement"] = float("nan")
    scores["synapse"] = {(True, True): "found", (True, False): "missed", (False, True): "invented",
                         (False, False): "none"}[(bool(true_synapse.any()), bool(predicted_synapse.any()))]
    scores["distance_mae"] = float(np.mean(np.abs(np.asarray(true_distance) - np.asarray(predicted_distance))))
    return scores

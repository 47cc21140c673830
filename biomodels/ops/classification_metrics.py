"""Binary classification scores that stay honest under class imbalance: ROC-AUC,
PR-AUC (scikit-learn's average precision), balanced accuracy, the threshold that keeps a chosen
recall, and the same scores for the majority-class answer to compare against."""

import math

import numpy as np


def roc_auc(labels, scores):
    """Area under the ROC curve (scikit-learn's `roc_auc_score`): the chance that a random
    positive scores above a random negative, ties counting half. NaN without both classes."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, np.asarray(scores, np.float64)))


def pr_auc(labels, scores):
    """Area under the precision-recall curve of a binary classifier (scikit-learn's
    `average_precision_score`: the precision at each distinct score, weighted by the
    recall it adds, so tied scores count together). NaN without positives. Not the
    instance-matching AP of `biomodels.ops.matching.average_precision`."""
    from sklearn.metrics import average_precision_score

    labels = np.asarray(labels).astype(bool)
    if not labels.any():
        return float("nan")
    return float(average_precision_score(labels, np.asarray(scores, np.float64)))


def threshold_for_recall(positive_scores, target_recall, confidence=0.0):
    """The highest threshold at which `score >= threshold` finds at least
    `target_recall` of the given positives.

    With `confidence` > 0 the recall is kept on new data of the same kind, not only
    on these positives: the threshold lets through only as many misses m that the
    Clopper-Pearson upper bound of the miss rate (Beta(m+1, n-m) at `confidence`)
    stays within 1 - target_recall; with few positives that is the lowest score.
    """
    from scipy.stats import beta

    scores = np.sort(np.asarray(positive_scores, np.float64))
    count = scores.size
    if count == 0:
        raise ValueError("no positive examples to set a recall threshold on")
    if not 0 < target_recall <= 1:
        raise ValueError(f"target recall {target_recall} is not in (0, 1]")
    misses = count - max(1, math.ceil(target_recall * count - 1e-9))
    if confidence > 0:
        while misses > 0 and beta.ppf(confidence, misses + 1, count - misses) > 1 - target_recall:
            misses -= 1
    return float(scores[misses])


def scores_at_threshold(labels, scores, threshold):
    """Accuracy, balanced accuracy, precision, recall, specificity and the flagged
    fraction when `score >= threshold` is called positive."""
    labels = np.asarray(labels).astype(bool)
    called = np.asarray(scores, np.float64) >= threshold
    true_positive = np.sum(called & labels)
    positives, negatives = labels.sum(), (~labels).sum()
    recall = true_positive / positives if positives else float("nan")
    specificity = np.sum(~called & ~labels) / negatives if negatives else float("nan")
    return {
        "accuracy": float(np.mean(called == labels)),
        "balanced_accuracy": float((recall + specificity) / 2),
        "precision": float(true_positive / called.sum()) if called.any() else 0.0,
        "recall": float(recall),
        "specificity": float(specificity),
        "flagged_fraction": float(called.mean()),
    }


def classification_report(labels, scores, threshold=0.5):
    """Threshold scores plus ROC-AUC and PR-AUC."""
    report = scores_at_threshold(labels, scores, threshold)
    report["roc_auc"] = roc_auc(labels, scores)
    report["pr_auc"] = pr_auc(labels, scores)
    return report


def majority_baseline(labels, training_positive_fraction):
    """The same report on `labels` for always answering the majority class of the
    training split (whose share of positives is given; not the evaluated labels', which
    a model could not know): what an accuracy must be compared against."""
    labels = np.asarray(labels).astype(bool)
    majority = training_positive_fraction > 0.5
    constant = np.full(labels.shape, 1.0 if majority else 0.0)
    return classification_report(labels, constant, threshold=0.5)


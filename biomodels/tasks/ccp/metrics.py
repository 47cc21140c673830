"""ccp's study metrics: accuracy, balanced accuracy, ROC-AUC and PR-AUC beside the
majority-class answer, the review list at the calibrated threshold; the validation
probabilities kept after training to set that threshold; the printed table."""

import numpy as np


def predict_dataset(model, dataset):
    """(labels int array, probabilities float array) over a batched (inputs, labels) dataset."""
    import tensorflow as tf

    predict = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)
    labels, probabilities = [], []
    for inputs, targets in dataset:
        probabilities.append(np.asarray(predict(inputs), np.float64).reshape(-1))
        labels.append(np.asarray(targets).reshape(-1))
    return np.concatenate(labels).astype(np.int64), np.concatenate(probabilities)


def calibrate(model, dataset):
    """The validation split's probabilities, positives and negatives apart, from which
    any target recall's threshold is set."""
    labels, probabilities = predict_dataset(model, dataset)
    return {
        "validation_positive_probabilities": _rounded(np.sort(probabilities[labels == 1])),
        "validation_negative_probabilities": _rounded(np.sort(probabilities[labels == 0])),
    }


def evaluation_part(model, dataset):
    """The tracks' labels and predicted probabilities (gathered over a split)."""
    labels, probabilities = predict_dataset(model, dataset)
    return {"labels": [labels], "probabilities": [probabilities]}


def metrics_from_parts(parts, config, calibration, training_positive_fraction):
    from biomodels.ops.classification_metrics import (classification_report, majority_baseline,
                                                      scores_at_threshold, threshold_for_recall)

    labels, probabilities = np.concatenate(parts["labels"]), np.concatenate(parts["probabilities"])
    inputs = "11 clathrin features" if config.model == "features" else " and ".join(config.trace_channels) + " traces"
    metrics = {"tracks": int(len(labels)), "positives": int(labels.sum()), "inputs": inputs}
    metrics.update(classification_report(labels, probabilities, threshold=0.5))
    metrics.update({f"baseline/{key}": value for key, value in majority_baseline(labels, training_positive_fraction).items()})
    positives = calibration.get("validation_positive_probabilities")
    if positives:
        threshold = threshold_for_recall(positives, config.target_recall, config.triage_confidence)
        at_threshold = scores_at_threshold(labels, probabilities, threshold)
        metrics.update({"triage/target_recall": config.target_recall, "triage/confidence": config.triage_confidence,
                        "triage/threshold": threshold,
                        **{f"triage/{key}": at_threshold[key] for key in ("recall", "precision", "flagged_fraction")}})
    return metrics


def metrics_table(metrics):
    names = [("accuracy", "accuracy"), ("balanced accuracy", "balanced_accuracy"), ("ROC-AUC", "roc_auc"),
             ("PR-AUC", "pr_auc"), ("precision at 0.5", "precision"), ("recall at 0.5", "recall")]
    rows = [(label, metrics[key], metrics[f"baseline/{key}"]) for label, key in names]
    if "triage/threshold" in metrics:
        target = metrics["triage/target_recall"]
        rows += [
            (f"review list for recall {target:g} ({metrics['triage/confidence']:.0%} confidence): threshold",
             metrics["triage/threshold"], "-"),
            ("  recall on test", metrics["triage/recall"], "-"),
            ("  share of tracks to review", metrics["triage/flagged_fraction"], "1.0000"),
            ("  precision of the list", metrics["triage/precision"], "-"),
        ]
    rows.append(("tracks (positives)", f"{metrics['tracks']} ({metrics['positives']})", ""))
    if "inputs" in metrics:
        rows.append(("model inputs", metrics["inputs"], ""))
    return ("metric", "model", "majority baseline"), rows


def _rounded(values):
    return [round(float(v), 6) for v in values]

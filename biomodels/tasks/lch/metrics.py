"""lch's study metrics: leave-one-cell-line-out classification of metastatic efficiency
from the autoencoder's codes (and, as a baseline, from simple image statistics), per
cell line and pooled, with the reconstruction error beside them; the deployed classifier
that `calibrate` fits on the codes of all training and validation cells; the printed table."""

import logging

import numpy as np

from biomodels.ops.classification_metrics import roc_auc
from biomodels.ops.latent_classifier import LinearClassifier, leave_one_group_out

log = logging.getLogger("biomodels")


def calibrate(task, model, dataset):
    """{"classifier", "classifier_l2", "classifier_cells"}: the classifier of efficiency on
    the codes of all training and validation cells ({} when they hold one class), for
    `task` bound to its configuration and prepared data set."""
    from biomodels.ops.latent_classifier import fit_logistic

    train = encode_dataset(model, split_dataset(task, "train"))
    val = encode_dataset(model, dataset)
    codes = np.concatenate([train["codes"], val["codes"]])
    labels = np.concatenate([train["efficiency"], val["efficiency"]])
    if len(np.unique(labels)) < 2:
        log.warning("the training cells hold one efficiency class only: no classifier, no classify signature")
        return {}
    l2 = classifier_penalty(train, "codes", task.config)
    return {"classifier": fit_logistic(codes, labels, l2).to_dict(), "classifier_l2": l2,
            "classifier_cells": int(len(labels))}


def split_dataset(task, split):
    from biomodels.pipelines import dataset as dataset_lib

    return dataset_lib.evaluation_dataset(task, split)


def latent_metrics(task, model, dataset):
    """The flat metrics dict of `Task.evaluate` for one split, for `task` bound to its
    configuration, prepared data set and calibration."""
    config, calibration = task.config, task.calibration
    evaluated = encode_dataset(model, dataset)
    train = encode_dataset(model, split_dataset(task, "train"))
    names = cell_line_names(task.manifest)
    metrics = {"cells": int(len(evaluated["codes"])), "cell_lines": int(len(np.unique(evaluated["cell_line"]))),
               "reconstruction/bce": float(evaluated["reconstruction_bce"].mean()),
               "reconstruction/mse": float(evaluated["reconstruction_mse"].mean())}
    for prefix, features in (("loco", "codes"), ("baseline", "image_statistics")):
        chosen = []

        def penalty(rows, labels, lines):  # nested: chosen without the held-out line
            chosen.append(classifier_penalty({features: rows, "efficiency": labels, "cell_line": lines}, features, config))
            return chosen[-1]

        probabilities, unscored = leave_one_group_out(train[features], train["efficiency"], train["cell_line"],
                                                      evaluated[features], evaluated["cell_line"], penalty)
        metrics.update(_scores(prefix, evaluated["efficiency"], evaluated["cell_line"], probabilities, names))
        metrics[f"{prefix}/l2"] = float(np.median(chosen)) if chosen else float("nan")
        metrics[f"{prefix}/unscored_cell_lines"] = len(unscored)
    if calibration.get("classifier"):
        classifier = LinearClassifier.from_dict(calibration["classifier"])
        metrics["all_lines/roc_auc"] = _auc(evaluated["efficiency"], classifier.probabilities(evaluated["codes"]))
    return metrics


def cell_line_names(manifest):
    """{cell line index: name} from the prepared data set's sources."""
    return {int(source.details["cell_line_index"]): source.details["cell_line"] for source in manifest.sources}


def _scores(prefix, labels, lines, probabilities, names):
    """Pooled and per-line scores of held-out probabilities (NaN: not scored)."""
    scored = np.isfinite(probabilities)
    labels, lines, probabilities = labels[scored], lines[scored], probabilities[scored]
    metrics = {f"{prefix}/roc_auc": _auc(labels, probabilities)}
    predicted = probabilities >= 0.5
    recalls = [float(np.mean(predicted[labels == value] == value)) for value in (0, 1) if np.any(labels == value)]
    metrics[f"{prefix}/balanced_accuracy"] = float(np.mean(recalls)) if recalls else float("nan")
    for line in np.unique(lines):
        rows = lines == line
        label = int(labels[rows][0])
        other = labels != label
        name = names.get(int(line), str(int(line)))
        metrics[f"{prefix}/line/{name}/efficiency"] = "high" if label else "low"
        metrics[f"{prefix}/line/{name}/cells"] = int(rows.sum())
        metrics[f"{prefix}/line/{name}/mean_probability_high"] = float(probabilities[rows].mean())
        metrics[f"{prefix}/line/{name}/accuracy"] = float(np.mean(predicted[rows] == bool(label)))
        # the line's cells against every held-out cell of the other class
        both = rows | other
        metrics[f"{prefix}/line/{name}/roc_auc"] = _auc(labels[both], probabilities[both]) if other.any() else float("nan")
    return metrics


def _auc(labels, probabilities):
    labels = np.asarray(labels).reshape(-1)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc(labels, probabilities))


def metrics_rows(metrics):
    """Table rows: pooled figures, then one row per cell line, model beside baseline."""
    rows = [("leave-one-cell-line-out ROC-AUC", metrics["loco/roc_auc"], metrics["baseline/roc_auc"]),
            ("  balanced accuracy at 0.5", metrics["loco/balanced_accuracy"], metrics["baseline/balanced_accuracy"])]
    lines = sorted({key.split("/")[2] for key in metrics if key.startswith("loco/line/")})
    for name in lines:
        key = f"loco/line/{name}"
        rows.append((f"  {name} ({metrics[key + '/efficiency']}, {metrics[key + '/cells']} cells): AUC vs other class",
                     metrics[key + "/roc_auc"], metrics.get(f"baseline/line/{name}/roc_auc", "-")))
        rows.append(("    mean P(high) / accuracy",
                     f"{metrics[key + '/mean_probability_high']:.3f} / {metrics[key + '/accuracy']:.3f}",
                     f"{metrics[f'baseline/line/{name}/mean_probability_high']:.3f} / "
                     f"{metrics[f'baseline/line/{name}/accuracy']:.3f}"))
    if "all_lines/roc_auc" in metrics:
        rows.append(("classifier of all lines (deployed) ROC-AUC", metrics["all_lines/roc_auc"], "-"))
    rows.append(("reconstruction BCE / MSE", f"{metrics['reconstruction/bce']:.4f} / {metrics['reconstruction/mse']:.5f}", "-"))
    rows.append(("cells (cell lines)", f"{metrics['cells']} ({metrics['cell_lines']})", ""))
    return rows


def encode_dataset(model, dataset):
    """{"codes", "efficiency", "cell_line", "reconstruction_bce", "reconstruction_mse",
    "image_statistics"} over a batched (images, targets) dataset, one row per cell."""
    import tensorflow as tf

    @tf.function(reduce_retracing=True)
    def run(images):
        codes = model.encoder(images, training=False)
        reconstructions = model.decoder(codes, training=False)
        flat_images = tf.reshape(images, [tf.shape(images)[0], -1])
        flat_reconstructions = tf.clip_by_value(tf.reshape(reconstructions, tf.shape(flat_images)), 1e-7, 1 - 1e-7)
        bce = -tf.reduce_mean(flat_images * tf.math.log(flat_reconstructions)
                              + (1 - flat_images) * tf.math.log(1 - flat_reconstructions), axis=1)
        mse = tf.reduce_mean(tf.square(flat_images - flat_reconstructions), axis=1)
        return codes, bce, mse

    parts = {name: [] for name in ("codes", "efficiency", "cell_line", "reconstruction_bce", "reconstruction_mse",
                                   "image_statistics")}
    for images, targets in dataset:
        codes, bce, mse = run(images)
        parts["codes"].append(np.asarray(codes, np.float64))
        parts["reconstruction_bce"].append(np.asarray(bce, np.float64))
        parts["reconstruction_mse"].append(np.asarray(mse, np.float64))
        parts["efficiency"].append(np.asarray(targets["efficiency"]).reshape(-1))
        parts["cell_line"].append(np.asarray(targets["cell_line"]).reshape(-1))
        parts["image_statistics"].append(np.asarray(targets["image_statistics"], np.float64))
    return {name: np.concatenate(values) for name, values in parts.items()}


def classifier_penalty(train, features, config):
    """`classifier_l2`, or when it is 0 the penalty that scored best leaving each cell
    line of the training split out in turn (the first of the grid when fewer than two
    lines of each class leave nothing to choose by)."""
    from biomodels.ops.latent_classifier import L2_GRID, choose_l2

    if config.classifier_l2 > 0:
        return config.classifier_l2
    try:
        return choose_l2(train[features], train["efficiency"], train["cell_line"])[0]
    except ValueError:
        return L2_GRID[len(L2_GRID) // 2]

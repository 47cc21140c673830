"""Instance matching of label images: intersection over union of every true object with
every predicted one, and average precision as Cellpose defines it (AP = TP / (TP + FP +
FN) at an IoU threshold, objects matched one to one by the Hungarian algorithm).

Labels are integer images, 0 background; object ids need not be consecutive.
"""

import numpy as np


def intersection_over_union(true_labels, pred_labels):
    """[true objects, predicted objects] IoU, objects in increasing id order."""
    true_labels, pred_labels = np.asarray(true_labels), np.asarray(pred_labels)
    if true_labels.shape != pred_labels.shape:
        raise ValueError(f"label images differ in shape: {true_labels.shape} and {pred_labels.shape}")
    if true_labels.size and min(true_labels.min(), pred_labels.min()) < 0:
        raise ValueError("labels must not be negative")
    _, true_index = np.unique(true_labels, return_inverse=True)
    _, pred_index = np.unique(pred_labels, return_inverse=True)
    # index 0 is background only where the image has background: shift so that it always is
    true_index = true_index.reshape(-1) + (0 if true_labels.min() == 0 else 1)
    pred_index = pred_index.reshape(-1) + (0 if pred_labels.min() == 0 else 1)
    rows, columns = int(true_index.max()) + 1, int(pred_index.max()) + 1
    overlap = np.bincount(true_index * columns + pred_index, minlength=rows * columns).reshape(rows, columns)
    overlap = overlap[1:, 1:].astype(np.float64)
    true_area = np.bincount(true_index, minlength=rows)[1:, None]
    pred_area = np.bincount(pred_index, minlength=columns)[None, 1:]
    union = true_area + pred_area - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def matched_pairs(iou, threshold):
    """How many one-to-one pairs reach `threshold`: the Hungarian assignment that
    maximises that count (ties broken by the summed IoU)."""
    from scipy.optimize import linear_sum_assignment

    if iou.size == 0:
        return 0
    # a pair at the threshold is worth more than any sum of IoUs below it
    score = (iou >= threshold).astype(np.float64) + iou / (2 * max(iou.shape))
    rows, columns = linear_sum_assignment(-score)
    return int(np.count_nonzero(iou[rows, columns] >= threshold))


def average_precision(true_labels, pred_labels, thresholds=(0.5, 0.75, 0.9)):
    """(ap, tp, fp, fn), each an array over `thresholds`, for one pair of label images;
    for lists of pairs, arrays [images, thresholds]. An image pair without any object
    has AP 1 (nothing to find, nothing found)."""
    if isinstance(true_labels, (list, tuple)):
        if len(true_labels) != len(pred_labels):
            raise ValueError(f"{len(true_labels)} true label images but {len(pred_labels)} predicted")
        results = [average_precision(t, p, thresholds) for t, p in zip(true_labels, pred_labels)]
        return tuple(np.stack(parts) for parts in zip(*results))
    iou = intersection_over_union(true_labels, pred_labels)
    thresholds = np.atleast_1d(np.asarray(thresholds, np.float64))
    tp = np.array([matched_pairs(iou, threshold) for threshold in thresholds])
    fp = iou.shape[1] - tp
    fn = iou.shape[0] - tp
    total = tp + fp + fn
    ap = np.divide(tp, total, out=np.ones(len(thresholds)), where=total > 0)
    return ap, tp, fp, fn


def foreground_scores(true_labels, pred_labels):
    """{"precision", "recall", "f1", "jaccard"} of foreground (label > 0) pixels, the
    CELLULAR paper's pixel metrics; an image with no foreground in either scores 1."""
    true_fg = np.asarray(true_labels) > 0
    pred_fg = np.asarray(pred_labels) > 0
    tp = np.count_nonzero(true_fg & pred_fg)
    predicted, actual = np.count_nonzero(pred_fg), np.count_nonzero(true_fg)
    union = predicted + actual - tp

    def ratio(numerator, denominator):
        return numerator / denominator if denominator else 1.0 if not union else 0.0

    return {"precision": ratio(tp, predicted), "recall": ratio(tp, actual),
            "f1": ratio(2 * tp, predicted + actual), "jaccard": ratio(tp, union)}


def attribute_predictions(true_labels, pred_labels, true_classes):
    """Class of each predicted object (index = predicted id): the class of the true
    object it overlaps most, -1 where it overlaps none. `true_classes[i]` is the class
    of true object i (entry 0, background, is ignored)."""
    true_labels = np.asarray(true_labels).ravel()
    pred_labels = np.asarray(pred_labels).ravel()
    inside = (true_labels > 0) & (pred_labels > 0)
    classes = np.full(int(pred_labels.max(initial=0)) + 1, -1, np.int64)
    if not inside.any():
        return classes
    pairs = np.stack([pred_labels[inside], true_labels[inside]], axis=1)
    unique, counts = np.unique(pairs, axis=0, return_counts=True)
    order = np.lexsort((-counts, unique[:, 0]))  # by predicted id, largest overlap first
    unique = unique[order]
    first = np.ones(len(unique), bool)
    first[1:] = unique[1:, 0] != unique[:-1, 0]
    classes[unique[first, 0]] = np.asarray(true_classes)[unique[first, 1]]
    return classes


def stitch_slices(masks, threshold):
    """3-D labels from a stack of 2-D label images (Z, Y, X), as Cellpose's
    stitch_threshold links them: slice by slice, a mask takes the label of the mask of the
    slice before with which its IoU is highest, when that IoU reaches `threshold` and no
    other mask of its slice overlaps that one more; every other mask starts a new label
    (numbered on from the highest so far, in the order of its ids in its slice)."""
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"expected a stack of label images (Z, Y, X), got shape {masks.shape}")
    stitched = np.zeros(masks.shape, np.int64)
    highest = 0
    for z in range(len(masks)):
        ids = np.unique(masks[z])
        ids = ids[ids > 0]
        if not len(ids):
            continue
        labels = np.arange(highest + 1, highest + 1 + len(ids))  # new, unless linked below
        previous = np.unique(stitched[z - 1]) if z else np.zeros(1, np.int64)
        previous = previous[previous > 0]
        if len(previous):
            iou = intersection_over_union(masks[z], stitched[z - 1])  # [this slice's masks, the last slice's]
            iou = np.where(iou >= threshold, iou, 0.0)
            iou = np.where(iou >= iou.max(axis=0, keepdims=True), iou, 0.0)  # each earlier mask to its best match
            linked = iou.max(axis=1) > 0
            labels[linked] = previous[iou[linked].argmax(axis=1)]
            labels[~linked] = np.arange(highest + 1, highest + 1 + np.count_nonzero(~linked))
        highest = max(highest, int(labels.max()))
        lookup = np.zeros(int(masks[z].max()) + 1, np.int64)
        lookup[ids] = labels
        stitched[z] = lookup[masks[z]]
    return stitched

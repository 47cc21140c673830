"""Losses shared by segmentation tasks."""

import keras
from keras import ops

from biomodels.ops.cellpose_parts import FLOW_SCALE, map_part, target_part


@keras.saving.register_keras_serializable(package="biomodels")
class WeightedSparseCategoricalCrossentropy(keras.losses.Loss):
    """Cross-entropy on probabilities with one weight per class; pixels labelled
    `ignore_label` (padding) count for nothing. The sum of weighted pixel losses is
    divided by the sum of their weights, so the loss scale does not depend on the
    class mix of a batch. Runs in float32 whatever the compute precision."""

    def __init__(self, class_weights, ignore_label=255, name="weighted_crossentropy", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum_over_batch_size", **kwargs)
        self.class_weights = [float(w) for w in class_weights]
        self.ignore_label = int(ignore_label)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        y_pred = ops.cast(y_pred, "float32")
        valid = ops.not_equal(y_true, self.ignore_label)
        safe_labels = ops.where(valid, y_true, ops.zeros_like(y_true))
        weights = ops.take(ops.convert_to_tensor(self.class_weights, "float32"), safe_labels)
        weights = weights * ops.cast(valid, "float32")
        probability = ops.take_along_axis(y_pred, ops.expand_dims(safe_labels, -1), axis=-1)[..., 0]
        pixel_loss = -ops.log(ops.clip(probability, 1e-7, 1.0))
        total = ops.sum(pixel_loss * weights, axis=tuple(range(1, len(pixel_loss.shape))))
        norm = ops.sum(weights, axis=tuple(range(1, len(weights.shape))))
        # per-example loss; the batch mean is taken by the reduction
        return total / ops.maximum(norm, 1e-6)

    def get_config(self):
        return {"class_weights": self.class_weights, "ignore_label": self.ignore_label, "name": self.name}


@keras.saving.register_keras_serializable(package="biomodels")
class BalancedBinaryCrossentropy(keras.losses.Loss):
    """Binary cross-entropy on probabilities with separate weights for positive and
    negative examples (for rare positives: 0.5/p and 0.5/(1-p), so both classes weigh
    the same in total). Runs in float32."""

    def __init__(self, positive_weight=1.0, negative_weight=1.0, name="balanced_crossentropy", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum_over_batch_size", **kwargs)
        self.positive_weight = float(positive_weight)
        self.negative_weight = float(negative_weight)

    def call(self, y_true, y_pred):
        y_true = ops.reshape(ops.cast(y_true, "float32"), (-1,))
        y_pred = ops.clip(ops.reshape(ops.cast(y_pred, "float32"), (-1,)), 1e-7, 1.0 - 1e-7)
        positive = -y_true * ops.log(y_pred) * self.positive_weight
        negative = -(1.0 - y_true) * ops.log(1.0 - y_pred) * self.negative_weight
        return positive + negative

    def get_config(self):
        return {"positive_weight": self.positive_weight, "negative_weight": self.negative_weight, "name": self.name}


@keras.saving.register_keras_serializable(package="biomodels")
class CellposeLoss(keras.losses.Loss):
    """Cellpose's loss: mean squared error between the flow outputs and 5 × the unit
    flows, halved, plus binary cross-entropy with logits of the cell probability.

    `y_true` is [N, H, W, 5] of `TARGET_PARTS` (biomodels.ops.cellpose_parts); pixels whose instance label is -1
    (padding) count for nothing, and the class map is not used. `y_pred` is the
    network's maps [N, H, W, 3] of `MAP_PARTS`."""

    def __init__(self, flow_scale=FLOW_SCALE, name="cellpose_loss", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum_over_batch_size", **kwargs)
        self.flow_scale = float(flow_scale)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        valid = ops.cast(target_part(y_true, "label") >= 0, "float32")
        flow_error = ops.mean(ops.square(map_part(y_pred, "flows") - self.flow_scale * target_part(y_true, "flows")),
                              axis=-1) / 2
        cell = target_part(y_true, "cell")
        logits = map_part(y_pred, "cellprob")
        # the numerically stable form of BCE with logits
        bce = ops.maximum(logits, 0) - logits * cell + ops.log1p(ops.exp(-ops.abs(logits)))
        axes = tuple(range(1, len(valid.shape)))
        return ops.sum((flow_error + bce) * valid, axis=axes) / ops.maximum(ops.sum(valid, axis=axes), 1.0)

    def get_config(self):
        return {"flow_scale": self.flow_scale, "name": self.name}

"""The Cellpose network (CPnet of Cellpose 1-3) in Keras, and the mapping of its PyTorch
state dicts onto it.

Down: four levels (widths `nbase`, 32-64-128-256 in the paper) of residual blocks
whose convolutions are pre-activation (batch norm -> ReLU -> 3×3 conv): per level a
1×1 batch-norm projection plus two residual pairs, 2×2 max-pooling before levels 2-4.
Style: the global average of the deepest map, L2-normalised. Up: nearest ×2, residual
blocks where a dense layer of the style is added before each styled convolution and
the skip of the same level is added (not concatenated). Output: batch norm -> ReLU ->
1×1 conv to 3 maps: dY, dX (5 × unit flows) and the cell-probability logit.

Layer names follow the PyTorch module names, so a state dict maps onto the model by
name (`from_cellpose_state`); `biomodels.pipelines.torch_checkpoint.read_cellpose_net`
reads a checkpoint file without PyTorch.
"""

import keras
from keras import layers

from biomodels.errors import CheckpointError
from biomodels.models import layers as model_layers

#: PyTorch BatchNorm2d(momentum=0.05) keeps 95 % of the running statistics per step
_BN = {"epsilon": 1e-5, "momentum": 0.95}
STYLE_LAYER = "style"


@keras.saving.register_keras_serializable(package="biomodels")
class StyleVector(layers.Layer):
    """Global average of a [N, H, W, C] map, divided by its L2 norm."""

    def call(self, x):
        style = keras.ops.mean(keras.ops.cast(x, "float32"), axis=(1, 2))
        return style / keras.ops.sqrt(keras.ops.sum(style**2, axis=-1, keepdims=True))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


def _batchconv(x, filters, size, name, relu=True):
    """BN -> (ReLU) -> conv, torch modules `name.0` (BN) and `name.2` (conv), or `.1` without ReLU."""
    x = model_layers.BatchNormalization(**_BN, name=f"{name}.0")(x)  # TensorFlow's fused kernel
    if relu:
        x = layers.ReLU()(x)
    return layers.Conv2D(filters, size, padding="same", name=f"{name}.{2 if relu else 1}")(x)


def _styled(x, style, filters, name, skip=None):
    """batchconvstyle: (x + skip) + dense(style), then BN -> ReLU -> 3×3 conv."""
    if skip is not None:
        x = layers.Add()([x, skip])
    feature = layers.Dense(x.shape[-1], name=f"{name}.full")(style)
    x = layers.Add()([x, layers.Reshape((1, 1, x.shape[-1]))(feature)])
    return _batchconv(x, filters, 3, f"{name}.conv")


def _resdown(x, filters, name):
    conv = f"{name}.conv.conv_"
    projected = _batchconv(x, filters, 1, f"{name}.proj", relu=False)
    x = layers.Add()([projected, _batchconv(_batchconv(x, filters, 3, conv + "0"), filters, 3, conv + "1")])
    return layers.Add()([x, _batchconv(_batchconv(x, filters, 3, conv + "2"), filters, 3, conv + "3")])


def _resup(x, skip, style, filters, name):
    conv = f"{name}.conv.conv_"
    projected = _batchconv(x, filters, 1, f"{name}.proj", relu=False)
    x = layers.Add()([projected, _styled(_batchconv(x, filters, 3, conv + "0"), style, filters, conv + "1", skip=skip)])
    return layers.Add()([x, _styled(_styled(x, style, filters, conv + "2"), style, filters, conv + "3")])


@keras.saving.register_keras_serializable(package="biomodels")
class CellposeNet(keras.Model):
    """CPnet: `nchan` input channels -> [N, H, W, 3] (dY, dX, cell-probability logit).

    H and W must be multiples of 2**(len(nbase) - 1). `with_style()` gives a model
    that also returns the 256-d (nbase[-1]) style vector.
    """

    def __init__(self, nchan=2, nbase=(32, 64, 128, 256), nout=3, diam_mean=30.0, **kwargs):
        nbase = tuple(int(n) for n in nbase)
        inputs = keras.Input(shape=(None, None, nchan), name="images")
        skips, x = [], inputs
        for level, filters in enumerate(nbase):
            if level > 0:
                x = layers.MaxPooling2D(2)(x)
            x = _resdown(x, filters, f"downsample.down.res_down_{level}")
            skips.append(x)
        style = StyleVector(name=STYLE_LAYER)(skips[-1])
        up_widths = nbase + (nbase[-1],)
        x = _resup(skips[-1], skips[-1], style, up_widths[-2], f"upsample.up.res_up_{len(nbase) - 1}")
        for level in reversed(range(len(nbase) - 1)):
            x = layers.UpSampling2D(2, interpolation="nearest")(x)
            x = _resup(x, skips[level], style, up_widths[level], f"upsample.up.res_up_{level}")
        x = _batchconv(x, nout, 1, "output")
        outputs = layers.Activation("linear", dtype="float32", name="maps")(x)
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.nchan = nchan
        self.nbase = nbase
        self.nout = nout
        self.diam_mean = float(diam_mean)

    @property
    def size_multiple(self):
        """Height and width of the input must be multiples of this."""
        return self.size_multiple_for(self.nbase)

    @staticmethod
    def size_multiple_for(nbase):
        """The size multiple of a CPnet of widths `nbase` (one pooling between levels)."""
        return 2 ** (len(nbase) - 1)

    def with_style(self):
        """A model sharing these layers: images -> (maps, style)."""
        return keras.Model(self.input, [self.output, self.get_layer(STYLE_LAYER).output])

    def get_config(self):
        return {"nchan": self.nchan, "nbase": list(self.nbase), "nout": self.nout, "diam_mean": self.diam_mean,
                "name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    # -- PyTorch checkpoints ----------------------------------------------------
    @classmethod
    def from_cellpose_state(cls, state, nchan=2, path="state dict"):
        """A CellposeNet with the weights of a Cellpose 1.x-3.x CPnet state dict (name ->
        numpy array); widths and diameter are read from it; `path` names it in errors."""
        nbase = cellpose_widths(state, path)
        found = cellpose_input_channels(state)
        if found != nchan:
            raise CheckpointError(path, f"the checkpoint's network takes {found} channels, not {nchan}")
        nout = state["output.2.weight"].shape[0]
        diam_mean = float(state["diam_mean"].reshape(-1)[0]) if "diam_mean" in state else 30.0
        model = cls(nchan=nchan, nbase=nbase, nout=nout, diam_mean=diam_mean)
        model.load_cellpose_state(state, path)
        return model

    def load_cellpose_state(self, state, path="state dict"):
        """Copy a CPnet state dict (name -> numpy array) into this model's layers."""
        expected = set()
        for layer in self.layers:
            weights = _torch_weights(layer)
            if not weights:
                continue
            values = []
            for variable, key, transpose in zip(layer.weights, *zip(*weights)):
                expected.add(key)
                if key not in state:
                    raise CheckpointError(path, f"is not a CPnet of this architecture: {key} is missing")
                value = state[key].transpose(transpose) if transpose else state[key]
                if tuple(value.shape) != tuple(variable.shape):
                    raise CheckpointError(path, f"{key} has shape {tuple(state[key].shape)}, "
                                                f"which does not fit a CPnet of widths {list(self.nbase)}")
                values.append(value)
            layer.set_weights(values)
        unused = sorted(key for key in state if key not in expected and not key.endswith(_IGNORED_KEYS))
        if unused:
            raise CheckpointError(path, f"is not a CPnet of this architecture: unexpected entries such as {unused[0]}")

    def cellpose_state(self):
        """This model's weights as a Cellpose CPnet state dict (name -> float32 numpy
        array, PyTorch layouts, with diam_mean and diam_labels): what
        `load_cellpose_state` reads back, and what Cellpose loads once each array is
        made a torch tensor and the dict saved with torch.save."""
        import numpy as np

        state = {}
        for layer in self.layers:
            for variable, (key, transpose) in zip(layer.weights, _torch_weights(layer)):
                value = np.asarray(variable, np.float32)
                # the inverse permutation of the one load_cellpose_state applies
                state[key] = np.ascontiguousarray(value.transpose(np.argsort(transpose)) if transpose else value)
        state["diam_mean"] = state["diam_labels"] = np.array([self.diam_mean], np.float32)
        return state


def cellpose_halving_epochs(epochs):
    """The epochs at the end of a run over which Cellpose 3's `train_seg` halves the
    learning rate ten times: the last 100 of more than 300 epochs (10 each), the last 50
    of more than 100 (5 each), none of 100 or fewer."""
    return 100 if epochs > 300 else 50 if epochs > 100 else 0


@keras.saving.register_keras_serializable(package="biomodels")
class CellposeLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Cellpose's schedule: linear warm-up over `warmup_epochs`, constant, then halved ten
    times evenly over the last `halving_epochs` (0: never; None: as Cellpose's
    `train_seg` for `epochs`, `cellpose_halving_epochs`)."""

    def __init__(self, peak, steps_per_epoch, epochs, warmup_epochs=10, halving_epochs=None):
        self.peak, self.steps_per_epoch, self.epochs = float(peak), int(steps_per_epoch), int(epochs)
        self.warmup_epochs = int(warmup_epochs)
        self.halving_epochs = cellpose_halving_epochs(epochs) if halving_epochs is None else int(halving_epochs)

    def __call__(self, step):
        ops = keras.ops
        epoch = (ops.cast(step, "float32") + 1.0) / self.steps_per_epoch
        rate = self.peak * ops.minimum(1.0, epoch / max(self.warmup_epochs, 1e-9))
        if self.halving_epochs:
            start, period = float(self.epochs - self.halving_epochs), self.halving_epochs / 10.0
            halvings = ops.floor(ops.maximum(epoch - start, 0.0) / period) + ops.cast(epoch >= start, "float32")
            rate = rate * ops.power(0.5, ops.minimum(halvings, 10.0))
        return rate

    def get_config(self):
        return {"peak": self.peak, "steps_per_epoch": self.steps_per_epoch, "epochs": self.epochs,
                "warmup_epochs": self.warmup_epochs, "halving_epochs": self.halving_epochs}


@keras.saving.register_keras_serializable(package="biomodels")
class CoupledSGD(keras.optimizers.SGD):
    """SGD with momentum whose weight decay is PyTorch's (and so Cellpose's): `l2` times
    the weight added to the gradient before the momentum, where Keras's `weight_decay`
    shrinks the weights apart from it (decoupled, as AdamW)."""

    def __init__(self, learning_rate=0.01, momentum=0.0, l2=0.0, **kwargs):
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)
        self.l2 = float(l2)

    def apply(self, grads, trainable_variables=None):
        variables = self._trainable_variables if trainable_variables is None else trainable_variables
        if self.l2:
            grads = [None if grad is None else grad + self.l2 * keras.ops.cast(variable, grad.dtype)
                     for grad, variable in zip(grads, variables)]
        return super().apply(grads, trainable_variables)

    def get_config(self):
        return {**super().get_config(), "l2": self.l2}


_IGNORED_KEYS = ("num_batches_tracked", "diam_mean", "diam_labels")


def _torch_weights(layer):
    """[(torch key, transpose)] for each of a layer's weights, in Keras order."""
    name = layer.name
    if isinstance(layer, layers.Conv2D):
        return [(f"{name}.weight", (2, 3, 1, 0)), (f"{name}.bias", None)]
    if isinstance(layer, layers.Dense):
        return [(f"{name}.weight", (1, 0)), (f"{name}.bias", None)]
    if isinstance(layer, layers.BatchNormalization):
        return [(f"{name}.{key}", None) for key in ("weight", "bias", "running_mean", "running_var")]
    return []


def cellpose_input_channels(state):
    """How many image channels a CPnet state dict takes."""
    return int(state["downsample.down.res_down_0.proj.1.weight"].shape[1])


def cellpose_widths(state, path):
    """nbase of a CPnet state dict (without the input channels)."""
    widths = []
    while f"downsample.down.res_down_{len(widths)}.proj.1.weight" in state:
        widths.append(int(state[f"downsample.down.res_down_{len(widths)}.proj.1.weight"].shape[0]))
    if not widths or "output.2.weight" not in state:
        raise CheckpointError(path, "is not a Cellpose CPnet checkpoint (no downsample.down.res_down_0 or output layers)")
    return tuple(widths)

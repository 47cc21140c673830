"""The adversarial autoencoder of Live Cell Histology: an encoder from a single-cell
image to a 56-d latent code, a decoder back to the image, and a discriminator that
tells codes from samples of the prior N(0, I).

Encoder: 4×4 stride-2 convolutions (64, 128, 256, 512, 1024, 1024 filters for 256×256
crops), each followed by batch normalisation and PReLU; flatten, dense to the latent,
batch normalisation. Decoder: dense to the encoder's last map, PReLU, 4×4 stride-2
transposed convolutions mirroring the encoder with BN and PReLU between, sigmoid.
Discriminator: dense 1024, LeakyReLU 0.2, dense 1024 + BN + LeakyReLU, dense 512 + BN +
LeakyReLU, dense 1 (a logit). Convolutions carry no bias; their kernels start from
N(0, 0.02) and BN scales from N(1, 0.02), as in the study.

`AdversarialAutoencoder` is one `keras.Model` whose `train_step` updates the encoder and
decoder on reconstruction binary cross-entropy plus the adversarial loss (the
discriminator should take codes for prior samples) and the discriminator on telling the
two apart; `model.fit` therefore works as for any Keras model, under a distribution
strategy and under mixed precision. `model.encoder`, `model.decoder` and
`model.discriminator` are plain functional sub-models for use in other Keras code.
"""

import keras
from keras import layers, ops

from biomodels.models import layers as model_layers


def _normal_init(mean):
    """DCGAN's N(mean, 0.02), a new initializer for each layer. An initializer made
    without a seed draws one when it is made: one shared by every layer, made when this
    module was imported, gave layers of the same shape identical values, drawn from
    whatever state Python's random generator had at import rather than from the run's
    seed."""
    return keras.initializers.RandomNormal(mean, 0.02)


def _batch_norm(name):
    # PyTorch/Torch defaults (momentum 0.1 of the new value, epsilon 1e-5)
    return model_layers.BatchNormalization(momentum=0.9, epsilon=1e-5, gamma_initializer=_normal_init(1.0), name=name)


def _prelu(name):
    return layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2], name=name)


def build_encoder(image_size, latent_dim, filters):
    """[batch, size, size, 1] in [0, 1] -> [batch, latent_dim] float32 codes."""
    images = keras.Input((image_size, image_size, 1), name="images")
    x = images
    for index, width in enumerate(filters, start=1):
        x = layers.Conv2D(width, 4, strides=2, padding="same", use_bias=False, kernel_initializer=_normal_init(0.0),
                          name=f"conv{index}")(x)
        x = _batch_norm(f"bn{index}")(x)
        x = _prelu(f"prelu{index}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(latent_dim, name="to_latent")(x)
    x = _batch_norm("latent_bn")(x)
    codes = layers.Activation("linear", dtype="float32", name="latent")(x)
    return keras.Model(images, codes, name="encoder")


def build_decoder(image_size, latent_dim, filters):
    """[batch, latent_dim] -> [batch, size, size, 1] float32 images in [0, 1]."""
    start = image_size // AdversarialAutoencoder.size_multiple_for(filters)
    codes = keras.Input((latent_dim,), name="latent")
    x = layers.Dense(start * start * filters[-1], name="from_latent")(codes)
    x = layers.Reshape((start, start, filters[-1]), name="reshape")(x)
    x = _prelu("prelu0")(x)
    widths = list(reversed(filters[:-1])) + [1]
    for index, width in enumerate(widths, start=1):
        x = layers.Conv2DTranspose(width, 4, strides=2, padding="same", use_bias=False, kernel_initializer=_normal_init(0.0),
                                   name=f"deconv{index}")(x)
        if index < len(widths):
            x = _batch_norm(f"bn{index}")(x)
            x = _prelu(f"prelu{index}")(x)
    images = layers.Activation("sigmoid", dtype="float32", name="images")(x)
    return keras.Model(codes, images, name="decoder")


def build_discriminator(latent_dim, units):
    """[batch, latent_dim] -> [batch, 1] float32 logits: a sample of the prior or a code?"""
    codes = keras.Input((latent_dim,), name="latent")
    x = codes
    for index, width in enumerate(units, start=1):
        x = layers.Dense(width, name=f"dense{index}")(x)
        if index > 1:
            x = _batch_norm(f"bn{index}")(x)
        x = layers.LeakyReLU(0.2, name=f"leaky{index}")(x)
    logits = layers.Dense(1, dtype="float32", name="logit")(x)
    return keras.Model(codes, logits, name="discriminator")


@keras.saving.register_keras_serializable(package="biomodels")
class AdversarialAutoencoder(keras.Model):
    """Encoder, decoder and latent discriminator trained together by `fit`.

    Calling the model reconstructs images; compile with `optimizer` (encoder and
    decoder) and `discriminator_optimizer` (a copy of `optimizer` when omitted).
    """

    def __init__(self, image_size=256, latent_dim=56, filters=(64, 128, 256, 512, 1024, 1024),
                 discriminator_units=(1024, 1024, 512), adversarial_weight=1.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if image_size % self.size_multiple_for(filters):
            raise ValueError(f"image_size {image_size} is not a multiple of 2**{len(filters)} (one halving per encoder layer)")
        self.image_size, self.latent_dim = int(image_size), int(latent_dim)
        self.filters, self.discriminator_units = tuple(filters), tuple(discriminator_units)
        self.adversarial_weight, self.seed = float(adversarial_weight), seed
        self.encoder = build_encoder(self.image_size, self.latent_dim, self.filters)
        self.decoder = build_decoder(self.image_size, self.latent_dim, self.filters)
        self.discriminator = build_discriminator(self.latent_dim, self.discriminator_units)
        self.prior_seed = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in
                         ("loss", "reconstruction_loss", "adversarial_loss", "discriminator_loss", "discriminator_accuracy")}
        self.discriminator_optimizer = None
        self.built = True  # the three sub-models are built at construction

    def call(self, images, training=False):
        return self.decoder(self.encoder(images, training=training), training=training)

    def compile(self, optimizer="adam", discriminator_optimizer=None, **kwargs):
        super().compile(optimizer=optimizer, **kwargs)
        if discriminator_optimizer is None:
            discriminator_optimizer = self.optimizer.__class__.from_config(self.optimizer.get_config())
        elif isinstance(discriminator_optimizer, str):
            discriminator_optimizer = keras.optimizers.get(discriminator_optimizer)
        if self.dtype_policy.name == "mixed_float16" and not isinstance(discriminator_optimizer, keras.optimizers.LossScaleOptimizer):
            discriminator_optimizer = keras.optimizers.LossScaleOptimizer(discriminator_optimizer)
        self.discriminator_optimizer = discriminator_optimizer
        # built here, inside the strategy's scope, rather than lazily inside a replica
        self.optimizer.build(self.autoencoder_variables)
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)

    def get_compile_config(self):
        config = super().get_compile_config() or {}
        if self.discriminator_optimizer is not None:
            config["discriminator_optimizer"] = keras.saving.serialize_keras_object(self.discriminator_optimizer)
        return config

    def compile_from_config(self, config):
        config = dict(config)
        optimizer = keras.saving.deserialize_keras_object(config.pop("optimizer", "adam"))
        discriminator = config.pop("discriminator_optimizer", None)
        if discriminator is not None:
            discriminator = keras.saving.deserialize_keras_object(discriminator)
        self.compile(optimizer=optimizer, discriminator_optimizer=discriminator)

    @property
    def autoencoder_variables(self):
        return self.encoder.trainable_variables + self.decoder.trainable_variables

    @property
    def metrics(self):
        return list(self.trackers.values())

    def _loss_values(self, images, training):
        """(autoencoder loss, reconstruction, adversarial, discriminator loss,
        discriminator accuracy), all float32 means over the local batch."""
        images = ops.cast(images, "float32")
        codes = self.encoder(images, training=training)
        reconstructions = self.decoder(codes, training=training)
        reconstruction = ops.mean(keras.losses.binary_crossentropy(
            ops.reshape(images, (ops.shape(images)[0], -1)), ops.reshape(reconstructions, (ops.shape(images)[0], -1))))
        prior = keras.random.normal(ops.shape(codes), seed=self.prior_seed)
        prior_logits = self.discriminator(prior, training=training)
        code_logits = self.discriminator(codes, training=training)
        ones, zeros = ops.ones_like(code_logits), ops.zeros_like(code_logits)
        adversarial = ops.mean(keras.losses.binary_crossentropy(ones, code_logits, from_logits=True))
        discriminator = 0.5 * (ops.mean(keras.losses.binary_crossentropy(ones, prior_logits, from_logits=True))
                               + ops.mean(keras.losses.binary_crossentropy(zeros, code_logits, from_logits=True)))
        accuracy = 0.5 * (ops.mean(ops.cast(prior_logits > 0, "float32")) + ops.mean(ops.cast(code_logits <= 0, "float32")))
        return reconstruction + self.adversarial_weight * adversarial, reconstruction, adversarial, discriminator, accuracy

    def _update_trackers(self, values):
        for name, value in zip(self.trackers, values):
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        import tensorflow as tf

        images = data[0] if isinstance(data, (tuple, list)) else data
        # optimizers sum the replicas' gradients: each replica's loss counts 1/replicas
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape(persistent=True) as tape:
            values = self._loss_values(images, training=True)
            autoencoder_loss = self.optimizer.scale_loss(values[0] / replicas)
            discriminator_loss = self.discriminator_optimizer.scale_loss(values[3] / replicas)
        autoencoder_variables = self.autoencoder_variables
        discriminator_variables = self.discriminator.trainable_variables
        autoencoder_gradients = tape.gradient(autoencoder_loss, autoencoder_variables)
        discriminator_gradients = tape.gradient(discriminator_loss, discriminator_variables)
        del tape
        self.optimizer.apply(autoencoder_gradients, autoencoder_variables)
        self.discriminator_optimizer.apply(discriminator_gradients, discriminator_variables)
        return self._update_trackers(values)

    def test_step(self, data):
        images = data[0] if isinstance(data, (tuple, list)) else data
        return self._update_trackers(self._loss_values(images, training=False))

    @staticmethod
    def size_multiple_for(filters):
        """Image sizes must be multiples of this: each encoder layer halves them."""
        return 2 ** len(filters)

    def get_config(self):
        config = super().get_config()
        config.update(image_size=self.image_size, latent_dim=self.latent_dim, filters=list(self.filters),
                      discriminator_units=list(self.discriminator_units), adversarial_weight=self.adversarial_weight,
                      seed=self.seed)
        return config

"""Learning-rate schedules several tasks share."""

import keras


def cosine_decay(learning_rate, epochs, steps_per_epoch, alpha=0.05):
    """Cosine decay from `learning_rate` to `alpha` times it over the whole run."""
    return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, epochs * steps_per_epoch), alpha=alpha)

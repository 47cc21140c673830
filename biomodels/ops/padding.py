"""Padding images and volumes in the graph so every spatial size is a multiple of what a
network's poolings need: the serving functions pad any input, and cellular pads its
evaluation images, through this one function."""


def pad_to_multiple(tensor, multiple, axes, constant_values=0):
    """`tensor` padded at the end of each of `axes` to the next multiple of `multiple`."""
    import tensorflow as tf

    shape = tf.shape(tensor)
    padding = [[0, 0] for _ in range(tensor.shape.rank)]
    for axis in axes:
        padding[axis] = [0, (multiple - shape[axis] % multiple) % multiple]
    return tf.pad(tensor, padding, constant_values=constant_values)

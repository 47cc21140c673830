"""Data in and out: readers and writers for raw microscope formats, the TFRecord
schema, tf.data builders and the synthetic data generators."""

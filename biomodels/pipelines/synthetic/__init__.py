"""Synthetic data generators, one module per task. Each writes raw files in the task's
real input format, so `prepare --synthetic` goes through the same readers as real data.
Every generator carries a VERSION that keys the cache of the embedded default data set."""

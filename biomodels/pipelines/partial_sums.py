"""Training statistics as partial sums: each source (or shard) is summed on its own,
wherever it is read, and the parts are added up into the figures the manifest keeps.

A task's `statistics_sums(examples)` returns a dict whose values add with `+`:
numbers, numpy arrays, `collections.Counter`s, and `Moments` (count, mean and summed
squared deviations, combined by Chan's parallel formula, so a variance from parts equals
the one of the whole to float rounding, without the cancellation of raw sums of squares).
`add(parts)` adds such dicts key by key; the task's `statistics_from_sums` turns the total
into its statistics.
"""

import functools
import operator

import numpy as np


class Moments:
    """Count, mean and summed squared deviations of rows of values [n, d]."""

    def __init__(self, count, mean, squared_deviations):
        self.count = int(count)
        self.mean = np.asarray(mean, np.float64)
        self.squared_deviations = np.asarray(squared_deviations, np.float64)

    @classmethod
    def of(cls, values, width):
        """The moments of `values` ([n, width]; n may be 0)."""
        values = np.asarray(values, np.float64).reshape(-1, width)
        if not len(values):
            return cls(0, np.zeros(width), np.zeros(width))
        mean = values.mean(axis=0)
        return cls(len(values), mean, ((values - mean) ** 2).sum(axis=0))

    def __add__(self, other):
        count = self.count + other.count
        if not count:
            return self
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / count)
        deviations = self.squared_deviations + other.squared_deviations + delta ** 2 * (self.count * other.count / count)
        return Moments(count, mean, deviations)

    @property
    def variance(self):
        """The population variance (numpy's `var`), zeros when empty."""
        return self.squared_deviations / self.count if self.count else np.zeros_like(self.mean)


def add(parts):
    """The key-by-key sum of dicts of partial sums (an empty dict when there are none)."""
    parts = [part for part in parts if part]
    if not parts:
        return {}
    return {key: functools.reduce(operator.add, [part[key] for part in parts]) for key in parts[0]}


def median_of_counts(counts):
    """The median of the values a `Counter` counts ({value: how often}), as `np.median`
    of the values written out would give; 0.0 when there are none."""
    total = sum(counts.values())
    if not total:
        return 0.0
    middle = [(total - 1) // 2, total // 2]
    found, seen = [], 0
    for value in sorted(counts):
        seen += counts[value]
        while middle and middle[0] < seen:
            found.append(value)
            middle.pop(0)
    return float(np.mean(found))


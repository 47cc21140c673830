"""Best-of-n wall-clock timing, shared by the benchmarks and the reference-environment
scripts (no dependencies, so both environments can import it)."""

import time


def best_time(function, repeats):
    """(fastest of `repeats` timed calls in seconds, the last result), after one untimed
    call that compiles and warms caches; (None, its result) for 0 repeats."""
    result = function()
    if not repeats:
        return None, result
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result

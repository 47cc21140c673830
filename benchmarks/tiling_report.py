"""Tiled against untiled prediction, timed and compared: shared by benchmarks/cryoet.py
and benchmarks/deepis.py."""

import time

import numpy as np

TARGET = 1.3  # a tiled prediction may take at most this many times the untiled pass


def compare_tilings(ways, repeats, elements, unit, difference_name, labels):
    """Run each of `ways` (name -> function returning the prediction; the first is the
    untiled pass) once to warm up, then `repeats` times; print for each its mean
    seconds and `unit`s per second over `elements`, and for the tiled ones the time
    against the untiled pass beside TARGET, the largest absolute difference
    (`difference_name`) from the untiled prediction and the share of elements whose
    `labels(prediction)` differ."""
    timings, results = {}, {}
    for name, run in ways.items():
        results[name] = run()
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        timings[name] = (time.perf_counter() - start) / repeats
    (untiled_name, untiled_seconds), *tiled = timings.items()
    width = max(map(len, timings)) + 2
    print(f"  {untiled_name:<{width}} {untiled_seconds:7.2f} s {elements / untiled_seconds:12,.0f} {unit}/s")
    whole = results[untiled_name]
    for name, seconds in tiled:
        ratio = seconds / untiled_seconds
        difference = np.abs(results[name] - whole).max()
        changed = np.mean(labels(results[name]) != labels(whole))
        print(f"  {name:<{width}} {seconds:7.2f} s {elements / seconds:12,.0f} {unit}/s   {ratio:5.2f}× untiled "
              f"(target ≤ {TARGET}, ratio {TARGET / ratio:.2f})   max |Δ{difference_name}| {difference:.4f}, "
              f"labels differ at {changed:.4%}")


def run_or_quick_model(task, model_dir):
    """(config, model) of the run in `model_dir`, or of a fresh quick-preset network when
    it is None (the speed does not depend on the weights; the differences do)."""
    if model_dir:
        from biomodels.runs import load_trained_model, run_config

        return run_config(task, model_dir), load_trained_model(model_dir)
    from biomodels import config as config_lib

    config = config_lib.resolve(task, "quick")
    return config, task.bind(config).build_model()

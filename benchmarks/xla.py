"""Does XLA make a task's training step faster here? Prints the step's examples per
second with jit_compile=True beside jit_compile=False; a task's `--jit_compile=auto`
follows what this measured.

    python benchmarks/xla.py --task=cryoet [--preset=quick] [--steps=N]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pipeline import benchmark_setup, report, training_rate  # noqa: E402


def main():
    args, task, config, data_dir, manifest = benchmark_setup(__doc__, steps=10)
    with_xla = training_rate(task, config, data_dir, manifest, args.steps, jit_compile=True)
    without = training_rate(task, config, data_dir, manifest, args.steps, jit_compile=False)
    print(f"task {task.name}, preset {args.preset}, batch {config.batch_size}, task default jit_compile={task.jit_compile_default}")
    print(report.format_table([("training step, XLA", with_xla, "training step, no XLA", without, with_xla / without)],
                           ("measured", "examples/s", "reference", "examples/s", "ratio")))


if __name__ == "__main__":
    main()

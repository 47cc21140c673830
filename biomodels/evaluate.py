"""Evaluate a trained model on a split of its prepared data set.

    python -m biomodels.evaluate --task=cryoet --model_dir=DIR [--data_dir=DIR] [--split=test] [task options]
                                 [--scheduler=local:4]
    python -m biomodels.evaluate --task=cellular --model=cellpose:cyto3 --data_dir=DIR [--output=DIR]

Prints the task's metrics and writes model_dir/metrics_<split>.json (with --model, a
published model by name or a model file of the study's own format, such as a Cellpose
checkpoint: output/metrics_<split>.json when --output is given). A task's own options
(`Task.evaluate_options`, cellular's mask thresholds) override the fields of the run's
configuration they are named after. With --scheduler (biomodels.cluster) the split is
evaluated in parts, one task each on a Dask cluster (biomodels.evaluation), to the same
table.
"""

import os


def main(argv):
    from biomodels import cli, cluster, report, tasks
    from biomodels.errors import ConfigError
    from biomodels.evaluation import evaluate_named, evaluate_run
    from biomodels.runs import run_config

    flags = cli.FLAGS
    task = tasks.get(flags.task)
    if bool(flags.model_dir) == bool(flags.model):
        raise ConfigError("give one of --model_dir (a training run) or --model (a model by name or file)")
    if flags.model and not flags.data_dir:
        raise ConfigError(f"--model={flags.model} needs --data_dir, a data set prepared by biomodels.prepare")
    if flags.model_dir:
        run_config(task, flags.model_dir)  # a clear error before anything is written
        cli.log_to_file(os.path.join(flags.model_dir, "log.txt"))
    overrides = cli.task_option_values(task.evaluate_options)
    with cluster.executor(flags.scheduler) as executor:
        if flags.model_dir:
            metrics = evaluate_run(task, flags.model_dir, flags.data_dir, flags.split, overrides, executor=executor)
            written = os.path.join(flags.model_dir, f"metrics_{flags.split}.json")
        else:
            metrics = evaluate_named(task, flags.model, flags.data_dir, flags.split, overrides=overrides,
                                     executor=executor, output_dir=flags.output)
            written = flags.output and os.path.join(flags.output, f"metrics_{flags.split}.json")
    header, rows = task.metrics_table(metrics)
    report.say(f"{flags.split} split:\n" + report.format_table(rows, header))
    if written:
        report.say(f"Wrote {written}")


def define_flags():
    from absl import flags

    from biomodels import cli, tasks

    flags.DEFINE_string("task", None, "Task name: " + ", ".join(tasks.names()) + "; --task=NAME --help lists its options.")
    flags.DEFINE_string("model_dir", None, "Run directory written by biomodels.train.")
    flags.DEFINE_string("model", None, "Instead of --model_dir: a published model by name or a model file of the "
                                       "study's own format (cellular: cellpose:cyto3, a Cellpose checkpoint); needs "
                                       "--data_dir.")
    flags.DEFINE_string("data_dir", None, "Prepared data set (default: the one the run trained on).")
    flags.DEFINE_string("output", None, "With --model: a folder for metrics_<split>.json.")
    flags.DEFINE_string("split", "test", "Split to evaluate: train, val or test.")
    cli.define_scheduler_flag()
    task = cli.requested_task()
    if task is not None:
        cli.define_task_options(task.evaluate_options)
    flags.mark_flags_as_required(["task"])


if __name__ == "__main__":
    from biomodels import cli

    cli.import_tensorflow()
    define_flags()
    cli.run(main)

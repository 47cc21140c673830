"""Run a trained or exported model over raw files and write the results beside names
that say what they are.

    python -m biomodels.predict --task=cryoet --model=PATH --input=FILE_OR_DIR --output=DIR [task options]

--model takes a training run's model_dir, an exported SavedModel directory, a TF
Serving address, or a published model by name or a model file of the study's own format
(cellular: cellpose:cyto3, a Cellpose checkpoint). Each task declares its own options (`Task.predict_options`); they are
flags once --task names the task, and `--task=NAME --help` lists them.

Inputs are read and predicted one at a time, each input's files written when it is
done; if a later input of a folder is bad, the error names it and lists the outputs of
the earlier ones, which are whole and kept.

With --scheduler (see biomodels.cluster) each input is one task on a Dask cluster:
every worker opens the model once and keeps it, and writes its inputs' files itself
(the input and output folders must be on a filesystem the workers share). With a TF
Serving address as --model the workers read, post-process and write while the server
infers.
"""

import os
import time


class PredictJob:
    """predict's work on one input (the whole input, or one of `Task.predict_inputs`):
    the task's `predict_files` with this process's predictor of the model. Returns the
    paths written."""

    def __init__(self, task_name, model, output_dir, options):
        self.task_name, self.model, self.output_dir, self.options = task_name, model, output_dir, options

    def __call__(self, input_path):
        from biomodels import tasks
        from biomodels.predictors import process_predictor

        task = tasks.get(self.task_name)
        return task.predict_files(process_predictor(task, self.model), input_path, self.output_dir, self.options)


def main(argv):
    from biomodels import cli, cluster, report, tasks
    from biomodels.errors import InputError
    from biomodels.pipelines.readers import require_exists

    flags = cli.FLAGS
    task = tasks.get(flags.task)
    require_exists(flags.input)
    if os.path.exists(flags.output) and not os.path.isdir(flags.output):
        raise InputError(flags.output, "is a file: --output names the folder predictions are written to")
    options = cli.task_option_values(task.predict_options)
    started = time.time()
    try:
        with cluster.executor(flags.scheduler) as executor:
            written = predict_with(executor, task, flags.model, flags.input, flags.output, options)
    except InputError as error:
        kept = _written_since(flags.output, started)
        if not kept:
            raise
        raise type(error)(error.path, f"{error.problem} (the {len(kept)} file(s) already written for earlier "
                                      f"inputs are whole and kept in {flags.output}: {', '.join(kept)})") from None
    report.say(f"Wrote {len(written)} file(s) to {flags.output}")


def predict_with(executor, task, model, input_path, output_dir, options):
    """predict's files for `input_path` through `executor` (biomodels.cluster); returns
    the paths written. An executor that splits work runs each of
    `task.predict_inputs(input_path)` as one task, after checking that its workers see
    the paths; in this process the whole input is one task, as predict always ran. The
    first input that fails stops the rest; the files of those done are whole and kept."""
    from biomodels.predictors import process_predictor
    from biomodels.report import progress_bar

    inputs = [input_path]
    if executor.splits_work:  # workers elsewhere: absolute paths, and checked
        local_model = os.path.exists(model)  # not a server's address, nor a model known by name
        model = os.path.abspath(model) if local_model else model
        input_path, output_dir = os.path.abspath(input_path), os.path.abspath(output_dir)
        inputs = task.predict_inputs(input_path)
        os.makedirs(output_dir, exist_ok=True)
        executor.check_workers([input_path, output_dir] + ([model] if local_model else []))
    else:
        process_predictor(task, model)  # a wrong --model is said before the output folder is made
        os.makedirs(output_dir, exist_ok=True)
    if task.predicts_in_blocks(options):
        return task.predict_in_blocks(executor, model, input_path, output_dir, options)
    job, written = PredictJob(task.name, model, output_dir, options), []
    bar = progress_bar(len(inputs), f"inputs on {executor.workers} worker(s)") if executor.splits_work else None
    for done, (_, paths) in enumerate(executor.map(job, inputs), start=1):
        written += paths
        if bar:
            bar.update(done)
    return written


def _written_since(folder, started):
    """The files under `folder` written since `started` (seconds), relative to it."""
    found = []
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            if not name.startswith(".") and os.path.getmtime(path) >= started - 1:
                found.append(os.path.relpath(path, folder))
    return sorted(found)


def define_flags():
    from absl import flags

    from biomodels import cli, tasks

    flags.DEFINE_string("task", None, "Task name: " + ", ".join(tasks.names()) + "; --task=NAME --help lists its options.")
    flags.DEFINE_string("model", None, "A model_dir of biomodels.train, an exported SavedModel directory, a TF Serving "
                                       "address (http://host:8501/v1/models/NAME, grpc://host:8500), or a published "
                                       "model by name or a model file of the study's own format (cellular: "
                                       "cellpose:cyto3, a Cellpose checkpoint).")
    flags.DEFINE_string("input", None, "Input file or folder.")
    flags.DEFINE_string("output", None, "Output folder.")
    cli.define_scheduler_flag()
    task = cli.requested_task()
    if task is not None:
        cli.define_task_options(task.predict_options)
    flags.mark_flags_as_required(["task", "model", "input", "output"])


if __name__ == "__main__":
    from biomodels import cli

    cli.import_tensorflow()
    define_flags()
    cli.run(main)

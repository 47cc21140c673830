"""The Task contract: everything a study must say so that the shared command lines
(prepare, train, evaluate, export, predict) can carry it from raw files to a served model.
"""

import abc
import dataclasses
import importlib

from biomodels.pipelines.manifest import Manifest


@dataclasses.dataclass(frozen=True)
class Source:
    """One raw input unit (a tomogram, an image and its masks…): its name, the group
    that must stay within one split, and its files."""

    name: str
    group: str
    paths: tuple
    #: what the task's reader needs beyond the files (the data set's class names, say)
    details: dict = dataclasses.field(default=None, compare=False)


@dataclasses.dataclass(frozen=True)
class Option:
    """A command-line option of a task's predict or evaluate: the command line defines
    it as --NAME once --task names the task, and hands its value to the task by name.
    `kind` is one of float, integer, string, bool, list; `parse` turns the given value
    into what the task uses (None passes through)."""

    name: str
    kind: str
    default: object
    help: str
    lower_bound: float = None
    upper_bound: float = None
    parse: object = None

    def value(self, given):
        return self.parse(given) if self.parse is not None and given is not None else given


def option_values(declared, given):
    """{name: value} of every one of the `declared` Options: those in `given` (a dict by
    name, as Python callers pass keyword arguments) checked against their bounds and
    parsed, the others their defaults. A name not declared, or a value out of bounds, is
    a ConfigError in one line.

    Args:
        declared: a task's `predict_options` or `evaluate_options`.
        given: {option name: value}; None stands for the default.

    Returns:
        {option name: the value the task uses}.

    Example:
        >>> from biomodels import tasks
        >>> values = option_values(tasks.get("cryoet").predict_options, {"overlap": 32})
        >>> values["overlap"], values["tile"], values["probabilities"]
        (32, None, False)
    """
    from biomodels.errors import ConfigError

    by_name = {option.name: option for option in declared}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r}; the options are: {', '.join(sorted(by_name)) or 'none'}")
    values = {}
    for name, option in by_name.items():
        value = given.get(name)
        if value is None:
            value = option.default
        elif option.kind == "list" and isinstance(value, str):
            value = [part for part in value.split(",") if part]
        if value is not None and option.lower_bound is not None and value < option.lower_bound:
            raise ConfigError(f"{name}={value}: must be at least {option.lower_bound:g}")
        if value is not None and option.upper_bound is not None and value > option.upper_bound:
            raise ConfigError(f"{name}={value}: must be at most {option.upper_bound:g}")
        values[name] = option.value(value)
    return values


def comma_numbers(text, cast):
    """The numbers of '1,2,3' made by `cast`; () when one is not a number."""
    try:
        return tuple(cast(part) for part in str(text).split(","))
    except ValueError:
        return ()


#: the defaults of --overlap and --batch_size of tasks that predict in overlapping tiles
TILING_DEFAULTS = {"overlap": 64, "batch_size": 4}


def tiling_options(tile_default):
    """--tile, --overlap and --batch_size for tasks that predict in overlapping tiles;
    `tile_default` says in words what --tile defaults to."""
    return (Option("tile", "integer", None, f"Tile size for tiled inference (default: {tile_default}).", lower_bound=16),
            Option("overlap", "integer", TILING_DEFAULTS["overlap"], "Overlap between tiles, blended.", lower_bound=0),
            Option("batch_size", "integer", TILING_DEFAULTS["batch_size"], "Tiles per batch.", lower_bound=1))


class Task(abc.ABC):
    name = ""
    summary = ""
    Config = None
    #: what XLA setting measured faster for this task on CPU
    jit_compile_default = False
    #: the validation metric that picks best.keras, and whether larger is better
    checkpoint_monitor = ("val_loss", "min")
    #: with steps_per_epoch=0, whether an epoch is one pass over the training examples,
    #: each once, the last batch smaller (Cellpose's epochs); otherwise it is as many whole
    #: batches as a pass holds, examples repeating across the epoch's end
    one_pass_epochs = False
    #: whether `model_io` takes a batch of decoded examples (leading batch axis) rather
    #: than one: the pipelines then batch first, so a task whose model_io is many small
    #: ops on small examples pays tf.data's per-op cost once a batch, not once an example
    model_io_on_batches = False
    #: whether the model's training step reads model_io's targets; when not (lch's
    #: autoencoder), training batches hold the inputs alone and tf.data prunes the ops
    #: that only make targets (evaluation still gets them)
    training_reads_targets = True
    #: `training_arrays`'s bytes per byte of the split's shards (lch's 8-bit crops as float32: 4)
    training_arrays_scale = 1
    #: config fields that change the prepared data (they key the synthetic data cache)
    data_fields = ()
    #: TF Serving batching for this task's exports (BatchingParameters fields); None
    #: means the server-wide defaults of biomodels.export.serving
    serving_batching = None
    #: (train, val, test) fractions when the user gives none
    default_split = (0.8, 0.1, 0.1)
    #: validation examples handed to `summary_images` each epoch
    summary_examples = 3
    #: the `Option`s of `python -m biomodels.predict --task=<name>`, handed to `predict_files`
    predict_options = ()
    #: the `Option`s of `python -m biomodels.evaluate --task=<name>`: each overrides the
    #: configuration field of its name for that evaluation
    evaluate_options = ()
    #: examples of a split per evaluation task on a cluster (`evaluation_units`); None:
    #: the whole split is one task
    evaluation_examples = None
    #: the `biomodels.study_model.StudyModel` subclass that `biomodels.load` gives for this task
    model_class = None
    #: {field: type or tuple of types} of what `calibrate` keeps, checked when calibration.json is read
    calibration_fields = {}
    #: {field: type or tuple of types} of the statistics the task reads from its
    #: prepared data set, checked when dataset.json is read
    statistics_fields = {}
    #: the study's data module: find_sources(input_path, config), read_source(source,
    #: config), augment(example, seed, config), model_io(example, config)
    data = None
    #: the study's serving module: serving_functions(model, config, calibration),
    #: warmup_inputs(config), bioimageio_description(config, pixel_size)
    serving = None

    def __init__(self, config=None, *, manifest=None, calibration=None):
        #: the configuration (the task's Config) this task is made for: the quick preset by default
        self.config = self.presets()["quick"] if config is None else config
        #: the prepared data set's `Manifest` (dataset.json), or an empty one
        self.manifest = manifest if manifest is not None else Manifest(self.name)
        #: what `calibrate` fitted after training, {} before
        self.calibration = calibration or {}

    def bind(self, config=None, *, manifest=None, calibration=None):
        """This task made for `config` (None keeps this one's), with a prepared data set's
        `manifest` and a run's `calibration` where there are some: its methods read them
        from itself. The registry's tasks (`biomodels.tasks.get`) are made for the quick
        preset."""
        return type(self)(self.config if config is None else config, manifest=manifest, calibration=calibration)

    @classmethod
    @abc.abstractmethod
    def presets(cls):
        """{"quick": Config(...), "paper": Config(...)}"""

    # -- raw data -------------------------------------------------------------
    def find_sources(self, input_path):
        """The `Source`s under a user's file or folder; raises InputError if none."""
        return self.data.find_sources(input_path, self.config)

    def read_source(self, source):
        """(info dict for the manifest, iterable of examples as dicts of numpy arrays)."""
        return self.data.read_source(source, self.config)

    @abc.abstractmethod
    def write_synthetic(self, directory, num_examples, seed):
        """Write `num_examples` raw synthetic inputs, in the real format, to `directory`."""

    @property
    def synthetic_version(self):
        """VERSION of the task's generator, biomodels.pipelines.synthetic.<name>: part of
        the embedded data set's cache key."""
        return importlib.import_module(f"biomodels.pipelines.synthetic.{self.name}").VERSION

    def default_synthetic_examples(self):
        return 10

    def statistics_sums(self, examples):
        """Partial sums (biomodels.pipelines.partial_sums) over some of the training
        examples, added up over every source by prepare."""
        return {}

    def statistics_from_sums(self, sums):
        """The manifest's statistics of the training examples, from their added-up sums."""
        return {}

    def statistics(self, examples):
        """The manifest's statistics of `examples`, all at once."""
        return self.statistics_from_sums(self.statistics_sums(examples))

    def split_by_example(self):
        """True: examples go to the splits one by one, stratified by `stratum` (the
        data set is held in memory while it is split); False: every group of sources
        stays within one split."""
        return False

    def assigned_split(self, source):
        """The split a source must go to ("train", "val" or "test"), when the user's
        configuration names it (file-name patterns, say); None leaves it to the
        fractions. Once any source is assigned, unassigned ones go to training."""
        return None

    def stratum(self, example):
        """What an example is stratified by when split by example (its class)."""
        return 0

    # -- model ----------------------------------------------------------------
    @abc.abstractmethod
    def build_model(self):
        """A fresh Keras model of this configuration (and the manifest's statistics, for
        tasks whose models standardise with them)."""

    def check_initial_weights(self, path):
        """Raise an InputError if --init_from=`path` cannot serve this configuration,
        without TensorFlow ops (it runs before the distribution strategy exists)."""
        from biomodels.pipelines.readers import require_exists

        require_exists(path)

    def named_model(self, source):
        """(Keras model, its configuration) of a published model the task knows by name
        (cellular: "cellpose:cyto3") or of a model file in the study's own format (a
        Cellpose checkpoint); None when `source` is neither. predict, evaluate and
        biomodels.load take such a source wherever they take a run."""
        return None

    def initial_model(self, path):
        """A model holding the weights of `path` for --init_from when it is in a format
        of the study's own (a PyTorch checkpoint, say); None: a model_dir or .keras file."""
        return None

    @abc.abstractmethod
    def compile_arguments(self, steps_per_epoch):
        """Keyword arguments for `model.compile`: loss, optimizer, metrics."""

    @abc.abstractmethod
    def preprocess(self, inputs):
        """TensorFlow ops from raw model input to network input under this configuration;
        shared by the training pipeline, evaluation, prediction and the serving graph."""

    def augment(self, example, seed):
        """A randomly transformed example; `seed` is a stateless [2] int64 seed."""
        return self.data.augment(example, seed, self.config)

    def early_stopping_patience(self):
        """Epochs without a lower validation loss after which training stops (0: never)."""
        return 0

    def keep_for_training(self, example):
        """A boolean tensor: whether training uses this decoded example (evaluation uses
        every one). All by default."""
        import tensorflow as tf

        return tf.constant(True)

    def training_arrays(self, examples):
        """The kept training examples (a tf.data set of decoded ones) as tensors held in
        memory, for a task whose examples are so small that tf.data's cost per example
        rivals its training step (ccp, lch); None (the default): they are streamed."""
        return None

    def epoch_batches(self, arrays, seed, batch_size):
        """Training batches of one pass over `training_arrays`, whole, ordered and
        augmented from the stateless [2] int64 `seed`: (inputs, targets), or (inputs,)
        for a task whose step reads no targets (`training_reads_targets`)."""
        raise NotImplementedError

    def model_io(self, example):
        """(network inputs, targets) from a decoded example (a batch of them with
        `model_io_on_batches`), preprocessing applied."""
        return self.data.model_io(example, self.config)

    def batch(self, data, batch_size, training, whole=True):
        """Batches of a tf.data set of `model_io` elements (of decoded examples with
        `model_io_on_batches`); tasks whose examples differ
        in size pad them here. Training batches are whole unless `whole` is False (the
        last batch of a one-pass epoch)."""
        return data.batch(batch_size, drop_remainder=training and whole)

    # -- results --------------------------------------------------------------
    def calibrate(self, model, dataset):
        """What the task fits once training ends, as a JSON-ready dict (each task's
        docstring says what it holds: ccp the validation probabilities that set its
        review threshold, cellular the training cells' diameter, lch the classifier of
        the codes). It is kept in the run (calibration.json) and the export
        (export.json), and a task bound with it hands it to `evaluate`, the serving
        functions and prediction."""
        return {}

    def evaluate(self, model, dataset, split="test"):
        """The study's metrics on a (inputs, targets) dataset of the prepared data set's
        `split`, as a flat dict. A task overrides either this or both `evaluation_part`
        and `metrics_from_parts` (which evaluate on a cluster in parts)."""
        whole = (0, self.manifest.count(split))
        return self.metrics_from_parts(self.evaluation_part(model, dataset, split, whole), split)

    def evaluation_units(self, split):
        """The (start, count) ranges of `split`'s examples that a cluster evaluates as
        one task each: `evaluation_examples` at a time, or the whole split when that is
        None (a task whose metrics need all of it at once)."""
        count, size = self.manifest.count(split), self.evaluation_examples
        if not size:
            return [(0, count)]
        return [(start, min(size, count - start)) for start in range(0, count, size)]

    def evaluation_part(self, model, dataset, split, portion):
        """The partial result (biomodels.pipelines.partial_sums) of the metrics over
        `dataset`, the examples `portion` (start, count) of `split`."""
        return {"metrics": [self.evaluate(model, dataset, split)]}

    def metrics_from_parts(self, parts, split):
        """The metrics from the added-up partial results of a split."""
        return parts["metrics"][0]

    def metrics_table(self, metrics):
        """(header, rows) to print the metrics for people."""
        return ("metric", "value"), sorted(metrics.items())

    def summary_images(self, model, inputs, targets):
        """{name: uint8 images [N, H, W, 3]} to show in TensorBoard each epoch."""
        return {}

    def serving_functions(self, model):
        """{signature name: tf.function with an input signature}, preprocessing inside;
        signatures that depend on the calibration read the task's."""
        return self.serving.serving_functions(model, self.config, self.calibration)

    def warmup_inputs(self):
        """[(signature name, {input name: array})] of representative shapes, replayed
        by TF Serving when it loads the model."""
        return self.serving.warmup_inputs(self.config)

    def bioimageio_description(self, pixel_size=None):
        """The bioimage.io rdf fields of this task's package: name, description, tags,
        cite, one input (named as in `serving_default`) and ONE output (what
        `bioimageio_output` gives) with their axes, without test tensors; `pixel_size`
        scales the space axes."""
        return self.serving.bioimageio_description(self.config, pixel_size)

    def bioimageio_test_input(self):
        """(input name, array with a batch of 1) from which a bioimage.io package's test
        tensors are computed: the first warm-up input unless the task needs a realistic
        one (the validator refuses outputs that are all but zero)."""
        _, inputs = self.warmup_inputs()[0]
        [(name, value)] = inputs.items()
        return name, value[:1]

    def bioimageio_postprocessing(self, output):
        """What the package's rdf postprocessing makes of its network's output (an
        array), for the package's test output tensor; none by default."""
        return output

    def bioimageio_output(self, outputs):
        """The one tensor a bioimage.io package answers, from `serving_default`'s outputs
        (TensorFlow tensors by name): by default its only output."""
        [value] = outputs.values()
        return value

    def predicts_in_blocks(self, options):
        """Whether predict's `options` ask for each input to be split in blocks across
        the executor's workers (`predict_in_blocks`) rather than run whole."""
        return False

    def predict_in_blocks(self, executor, model, input_path, output_dir, options):
        """predict's files, each input in blocks, each block a task of `executor`;
        returns the paths written."""
        raise NotImplementedError

    def predict_inputs(self, input_path):
        """The inputs predict's work splits into on a cluster, one task each: paths that
        `predict_files` accepts on their own and whose files no other input's touch. The
        whole input by default, for tasks whose files gather every input (lch's table,
        ccp's triage list)."""
        return [input_path]

    @abc.abstractmethod
    def predict_files(self, predictor, input_path, output_dir, options):
        """Run `predictor` (a `biomodels.predictors.Predictor`) over the user's files and
        write results into `output_dir`; `options` holds the values of `predict_options`
        by name. Returns the paths written."""

"""deepis: label-free 3-D segmentation of a CAR-T cell and its target cell in
refractive-index (RI) tomograms, and the immunological synapse between them (DeepIS).

The seed's README speaks of Keras and a sigmoid mask; the study's code is PyTorch and
its network predicts a signed distance map. We follow the study: positive inside the
CAR-T cell, negative inside the target cell, zero in the medium, in voxels.

Raw data: the study's `.mat` files (`input`, the RI tomogram, and `target`, the signed
distance; MATLAB v5 through scipy, v7.3 through h5py; MATLAB's rows × columns × slices
become Z × Y × X), or TIFF stacks `NAME.tif` (RI, Z×Y×X) with `NAME_labels.tif`
(0 medium, 1 CAR-T, 2 target), whose signed distance is computed at prepare time.
Volumes are cut into (or padded to) training crops; RI is normalised around the
medium's index inside the graph: (RI − medium_index) / ri_scale.

Prediction tiles volumes of any size in 3-D with blended overlaps; the distance is
thresholded at half a voxel into the two cells, the synapse is where both masks dilated
by 2 voxels overlap, and a report gives cell volumes and synapse size, in µm³ and µm²
when the voxel size is known (TIFF metadata or --voxel_size).
"""

import dataclasses
import glob
import os

import numpy as np

from biomodels.config import write_json_atomic
from biomodels.errors import ConfigError, InputError
from biomodels.ops import distance as distance_ops
from biomodels.pipelines import readers
from biomodels.tasks.base import Source, Task

CELL_NAMES = {1: "car_t", 2: "target"}


@dataclasses.dataclass(frozen=True)
class DeepISConfig:
    widths: tuple[int, ...] = (8, 16, 32, 64, 128)
    gcn_kernels: tuple[int, ...] = (1, 9, 7, 5, 3)
    crop: tuple[int, ...] = (32, 64, 64)  # Z, Y, X
    medium_index: float = 1.337
    ri_scale: float = 0.01
    distance_clip: float = 20.0
    loss: str = "l1"
    interface_weight: float = 50.0
    car_t_weight: float = 5.0
    target_weight: float = 15.0
    flips: bool = True
    rotation: bool = True
    zoom: tuple[float, ...] = (1.1, 1.3)
    zoom_probability: float = 0.5
    elastic_voxels: float = 1.5
    learning_rate: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.99
    clip_norm: float = 1.0
    lr_schedule: str = "cosine"
    halve_every_epochs: int = 50
    batch_size: int = 2
    epochs: int = 10
    steps_per_epoch: int = 36
    synthetic_volumes: int = 30
    synthetic_shape: tuple[int, ...] = (32, 64, 64)


class DeepISTask(Task):
    name = "deepis"
    summary = "3-D ResNet-GCN U-Net: CAR-T and target cells in refractive-index tomograms, and their synapse"
    Config = DeepISConfig
    data_fields = ("crop", "distance_clip", "synthetic_volumes", "synthetic_shape")
    serving_batching = {"max_batch_size": 2, "batch_timeout_micros": 2000, "max_enqueued_batches": 16, "num_batch_threads": 2}

    @classmethod
    def presets(cls):
        return {
            "quick": DeepISConfig(),
            "paper": DeepISConfig(widths=(32, 64, 128, 256, 512), gcn_kernels=(13, 13, 9, 7, 5), crop=(64, 128, 128),
                                  beta_1=0.5, clip_norm=0.0, lr_schedule="halving", epochs=400, steps_per_epoch=0,
                                  synthetic_shape=(64, 128, 128)),
        }

    # -- raw data -------------------------------------------------------------
    def find_sources(self, input_path, config):
        if not os.path.exists(input_path):
            raise InputError(input_path, "no such file or directory")
        paths = volume_paths(input_path)
        if not paths:
            raise InputError(input_path, "no volumes: expected NAME.mat (input, target) or NAME.tif with NAME_labels.tif")
        sources = []
        for path in paths:
            name = os.path.splitext(os.path.basename(path))[0]
            files = (path,) if path.lower().endswith(".mat") else (path, _label_path(path))
            sources.append(Source(name=name, group=name, paths=files))
        return sources

    def read_source(self, source, config):
        volume, distance, voxel_size = read_volume_pair(source.paths, config.distance_clip)
        info = {"shape": list(volume.shape), "voxel_size": voxel_size,
                "car_t_voxels": int((distance > 0.5).sum()), "target_voxels": int((distance < -0.5).sum())}
        return info, crops(volume, distance, tuple(config.crop), config.medium_index)

    def write_synthetic(self, directory, num_examples, seed, config):
        from biomodels.pipelines.synthetic import deepis as synthetic

        synthetic.write_dataset(directory, num_examples, seed, tuple(config.synthetic_shape))

    def default_synthetic_examples(self, config):
        return config.synthetic_volumes

    # -- model ----------------------------------------------------------------
    def build_model(self, config, manifest):
        from biomodels.models import DeepISNet

        if any(n % DeepISNet.size_multiple for n in config.crop):
            raise ConfigError(f"--set crop={','.join(map(str, config.crop))}: every size must be a multiple of 16")
        return DeepISNet(widths=config.widths, gcn_kernels=config.gcn_kernels)

    def compile_arguments(self, config, manifest, steps_per_epoch):
        import keras

        if config.loss not in ("l1", "l2"):
            raise ConfigError(f"--set loss={config.loss}: choose l1 (the paper) or l2 (the study's code)")
        if config.lr_schedule not in ("cosine", "halving"):
            raise ConfigError(f"--set lr_schedule={config.lr_schedule}: choose cosine or halving (the study's)")
        if config.lr_schedule == "halving":
            schedule = keras.optimizers.schedules.ExponentialDecay(
                config.learning_rate, decay_steps=max(1, config.halve_every_epochs * steps_per_epoch), decay_rate=0.5,
                staircase=True)
        else:
            schedule = keras.optimizers.schedules.CosineDecay(
                config.learning_rate, decay_steps=max(1, config.epochs * steps_per_epoch), alpha=0.05)
        loss = keras.losses.MeanAbsoluteError() if config.loss == "l1" else keras.losses.MeanSquaredError()
        optimizer = keras.optimizers.Adam(schedule, beta_1=config.beta_1, beta_2=config.beta_2,
                                          global_clipnorm=config.clip_norm or None)
        return {"loss": loss, "optimizer": optimizer}

    def preprocess(self, inputs, config):
        """Refractive index to network input: (RI - medium_index) / ri_scale with the run's
        settings (1.337 and 0.01 by default); non-finite voxels become the medium."""
        import tensorflow as tf

        inputs = tf.cast(inputs, tf.float32)
        inputs = tf.where(tf.math.is_finite(inputs), inputs, config.medium_index)
        return (inputs - config.medium_index) / config.ri_scale

    def augment(self, example, seed, config):
        from biomodels.pipelines.augment3d import augment_volume_and_distance

        return augment_volume_and_distance(example, seed, config)

    def model_io(self, example, config):
        volume = self.preprocess(example["volume"], config)[..., None]
        distance = example["distance"][..., None]
        return volume, distance, boundary_weights(example["distance"], config)

    # -- results --------------------------------------------------------------
    def evaluate(self, model, dataset, manifest, config, calibration=None):
        import tensorflow as tf

        from biomodels.ops.segmentation_metrics import cell_scores

        predict = tf.function(lambda x: model(x, training=False))
        per_example = []
        for inputs, targets, _ in dataset:
            predicted = predict(inputs).numpy()[..., 0]
            for truth, guess in zip(targets.numpy()[..., 0], predicted):
                per_example.append(cell_scores(truth, guess))
        return summarise_scores(per_example)

    def metrics_table(self, metrics):
        rows = [(CELL_NAMES[c], metrics[f"dice/{CELL_NAMES[c]}"], metrics[f"pearson/{CELL_NAMES[c]}"]) for c in (1, 2)]
        rows.append(("mean", metrics["mean_dice"], metrics["mean_pearson"]))
        rows.append(("synapse boundary displacement (voxels)", metrics["synapse_displacement"], ""))
        rows.append(("distance mean absolute error (voxels)", metrics["distance_mae"], ""))
        return ("cell", "Dice", "Pearson"), rows

    def summary_images(self, model, inputs, targets):
        predicted = np.asarray(model(inputs, training=False))[..., 0]
        middle = inputs.shape[1] // 2
        images = np.asarray(inputs)[:, middle, :, :, 0]
        low, high = np.percentile(images, [1, 99])
        grey = (np.clip((images - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)
        scale = max(1.0, float(np.abs(np.asarray(targets)).max()))
        return {"input": np.repeat(grey[..., None], 3, axis=-1),
                "ground_truth": colour_distance(np.asarray(targets)[:, middle, :, :, 0], scale),
                "prediction": colour_distance(predicted[:, middle], scale)}

    def serving_functions(self, model, config, calibration=None):
        import tensorflow as tf

        multiple = model.size_multiple

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, None, 1], tf.float32, name="volumes")])
        def serve(volumes):
            shape = tf.shape(volumes)
            padding = [[0, 0]] + [[0, (multiple - shape[i] % multiple) % multiple] for i in (1, 2, 3)] + [[0, 0]]
            x = tf.pad(self.preprocess(volumes, config), padding)  # pads with 0: the medium after normalising
            distance = tf.cast(model(x, training=False), tf.float32)[:, :shape[1], :shape[2], :shape[3], 0]
            labels = tf.where(distance > 0.5, 1, tf.where(distance < -0.5, 2, 0))
            return {"distance": distance, "labels": tf.cast(labels, tf.int32)}

        return {"serving_default": serve}

    def warmup_inputs(self, config):
        rng = np.random.default_rng(0)
        volume = config.medium_index + 0.01 * rng.normal(size=(1, *config.crop, 1))
        return [("serving_default", {"volumes": volume.astype(np.float32)})]

    def bioimageio_description(self, config, pixel_size=None):
        raise ConfigError("deepis is exported for TF Serving; a bioimage.io package of it is not made yet")

    def predict_files(self, predictor, input_path, output_dir, options):
        return predict_volumes(self, predictor, input_path, output_dir, options)


def colour_distance(distance, clip):
    """RGB: CAR-T (positive) in red, target (negative) in blue, brighter further inside."""
    scaled = np.clip(np.asarray(distance) / clip, -1, 1)
    rgb = np.zeros(scaled.shape + (3,), np.uint8)
    rgb[..., 0] = (np.maximum(scaled, 0) * 255).astype(np.uint8)
    rgb[..., 2] = (np.maximum(-scaled, 0) * 255).astype(np.uint8)
    return rgb


def boundary_weights(distance, config):
    """Per-voxel loss weights 1 + interface·(interface density) + car_t·(inside CAR-T) +
    target·(inside target): the interface is where both masks, dilated by a 5³ box,
    overlap, smoothed by a 3³ mean."""
    import tensorflow as tf

    car_t = tf.cast(distance > 0.5, tf.float32)[None, ..., None]
    target = tf.cast(distance < -0.5, tf.float32)[None, ..., None]
    dilate = lambda mask: tf.nn.max_pool3d(mask, 5, 1, "SAME")  # noqa: E731
    interface = dilate(car_t) * dilate(target)
    interface = tf.nn.avg_pool3d(interface, 3, 1, "SAME")
    weights = 1.0 + config.interface_weight * interface + config.car_t_weight * car_t + config.target_weight * target
    return weights[0, ..., 0]


def summarise_scores(per_example):
    """Means over examples of per-cell Dice and Pearson correlation (where the cell is
    present in the truth), synapse displacement and distance error."""
    metrics = {}
    for cell, name in CELL_NAMES.items():
        for score in ("dice", "pearson"):
            values = [s[f"{score}/{cell}"] for s in per_example if not np.isnan(s[f"{score}/{cell}"])]
            metrics[f"{score}/{name}"] = float(np.mean(values)) if values else float("nan")
    metrics["mean_dice"] = float(np.nanmean([metrics["dice/car_t"], metrics["dice/target"]]))
    metrics["mean_pearson"] = float(np.nanmean([metrics["pearson/car_t"], metrics["pearson/target"]]))
    displacements = [s["synapse_displacement"] for s in per_example if not np.isnan(s["synapse_displacement"])]
    metrics["synapse_displacement"] = float(np.mean(displacements)) if displacements else float("nan")
    metrics["distance_mae"] = float(np.mean([s["distance_mae"] for s in per_example]))
    metrics["volumes"] = len(per_example)
    return metrics


def volume_paths(input_path):
    """The file itself, or the .mat and .tif volumes in a folder (label volumes left out)."""
    if os.path.isfile(input_path):
        return [input_path]
    return sorted(p for p in glob.glob(os.path.join(input_path, "*"))
                  if p.lower().endswith((".mat", ".tif", ".tiff")) and not _is_label_file(p))


def _is_label_file(path):
    return os.path.splitext(path)[0].endswith("_labels")


def _label_path(path):
    stem, suffix = os.path.splitext(path)
    labels = stem + "_labels" + suffix
    if not os.path.isfile(labels):
        raise InputError(path, f"no label volume {os.path.basename(labels)} beside it")
    return labels


def read_volume_pair(paths, clip):
    """(RI float32 (Z, Y, X), signed distance float32, voxel size (x, y, z) µm or None)."""
    path = paths[0]
    if path.lower().endswith(".mat"):
        volume, distance = read_study_mat(path)
        voxel_size = None
    else:
        volume, voxel_size = readers.read_tiff_volume(path)
        labels, _ = readers.read_tiff_volume(paths[1])
        if labels.shape != volume.shape:
            raise InputError(paths[1], f"shape {labels.shape} differs from the volume's {volume.shape} ({path})")
        readers.require_labels_in_range(paths[1], labels, 3)
        distance = distance_ops.signed_distance(labels)
    readers.require_finite(path, volume)
    volume = volume.astype(np.float32)
    return volume, np.clip(distance, -clip, clip).astype(np.float32), voxel_size


def read_study_mat(path):
    """(input, target) of a DeepIS .mat file as Z × Y × X float32 arrays."""
    import h5py

    if not os.path.isfile(path):
        raise InputError(path, "no such file")
    arrays = {}
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as handle:
            for key in ("input", "target"):
                if key in handle:
                    arrays[key] = np.transpose(np.asarray(handle[key]), (0, 2, 1))  # h5py: slices, columns, rows
    else:
        import scipy.io

        try:
            contents = scipy.io.loadmat(path)
        except Exception as error:
            raise InputError(path, f"not a readable MATLAB file ({str(error).splitlines()[0]})") from None
        arrays = {key: np.transpose(contents[key], (2, 0, 1)) for key in ("input", "target")
                  if key in contents and np.ndim(contents[key]) == 3}
    missing = [key for key in ("input", "target") if key not in arrays]
    if missing:
        raise InputError(path, f"has no 3-D {' or '.join(repr(k) for k in missing)} (expected the RI tomogram 'input' and its signed distance 'target')")
    if arrays["input"].shape != arrays["target"].shape:
        raise InputError(path, f"'input' {arrays['input'].shape} and 'target' {arrays['target'].shape} differ in shape")
    readers.require_finite(path, arrays["target"])
    return arrays["input"].astype(np.float32), arrays["target"].astype(np.float32)


def crops(volume, distance, crop, medium_index):
    """Examples {"volume", "distance"} of `crop` size tiling the volume; the borders are
    padded with the medium's index and zero distance."""
    padding = [(0, (-n) % c) for n, c in zip(volume.shape, crop)]
    volume = np.pad(volume, padding, constant_values=medium_index)
    distance = np.pad(distance, padding)
    for z in range(0, volume.shape[0], crop[0]):
        for y in range(0, volume.shape[1], crop[1]):
            for x in range(0, volume.shape[2], crop[2]):
                region = (slice(z, z + crop[0]), slice(y, y + crop[1]), slice(x, x + crop[2]))
                yield {"volume": volume[region], "distance": distance[region]}


def analyze_synapse(distance, voxel_size=None):
    """{"labels": 0/1/2 uint8, "synapse": bool, "report": dict} from a signed distance
    volume (Z, Y, X); `voxel_size` (x, y, z) in µm puts the report in µm³ and µm²."""
    labels = distance_ops.labels_from_distance(distance)
    synapse = distance_ops.synapse_mask(labels)
    car_t_surface = distance_ops.surface(labels == 1)
    report = {
        "car_t_voxels": int((labels == 1).sum()), "target_voxels": int((labels == 2).sum()),
        "synapse_voxels": int(synapse.sum()), "synapse_surface_voxels": int((synapse & car_t_surface).sum()),
        "car_t_surface_voxels": int(car_t_surface.sum()),
    }
    if voxel_size is not None:
        voxel_volume = float(np.prod(voxel_size))
        face = voxel_volume ** (2 / 3)  # area of one surface voxel, for roughly isotropic voxels
        report.update({
            "voxel_size_um": [float(v) for v in voxel_size],
            "car_t_volume_um3": report["car_t_voxels"] * voxel_volume,
            "target_volume_um3": report["target_voxels"] * voxel_volume,
            "synapse_volume_um3": report["synapse_voxels"] * voxel_volume,
            "synapse_area_um2": report["synapse_surface_voxels"] * face,
        })
    return {"labels": labels, "synapse": synapse, "report": report}


def predict_volumes(task, predictor, input_path, output_dir, options):
    """NAME_distance.tif, NAME_labels.tif, NAME_synapse.tif and NAME_report.json for
    every volume under `input_path`."""
    from biomodels.ops.tiling import predict_tiled
    from biomodels.report import progress_bar

    paths = volume_paths(input_path)
    if not paths:
        raise InputError(input_path, "no .tif or .mat volumes in this directory")
    crop = tuple(predictor.config.get("crop") or DeepISConfig.crop)
    serve = predictor.signature("serving_default")
    written = []
    bar = progress_bar(len(paths), "volumes")
    for done, path in enumerate(paths, start=1):
        if path.lower().endswith(".mat"):
            volume, voxel_size = read_study_mat(path)[0], None
        else:
            volume, voxel_size = readers.read_tiff_volume(path)
        readers.require_finite(path, volume)
        voxel_size = options.get("voxel_size") or voxel_size
        distance = predict_tiled(volume.astype(np.float32)[..., None], lambda tiles: serve(volumes=tiles)["distance"][..., None],
                                 tile=crop, overlap=tuple(c // 4 for c in crop), batch_size=1)[..., 0]
        result = analyze_synapse(distance, voxel_size)
        stem = os.path.join(output_dir, os.path.splitext(os.path.basename(path))[0])
        readers.write_tiff_volume(f"{stem}_distance.tif", distance.astype(np.float32), voxel_size)
        readers.write_tiff_volume(f"{stem}_labels.tif", result["labels"], voxel_size)
        readers.write_tiff_volume(f"{stem}_synapse.tif", result["synapse"].astype(np.uint8), voxel_size)
        write_json_atomic(f"{stem}_report.json", {"file": os.path.abspath(path), **result["report"]})
        written += [f"{stem}_{kind}" for kind in ("distance.tif", "labels.tif", "synapse.tif", "report.json")]
        bar.update(done)
    return written


TASK = DeepISTask()

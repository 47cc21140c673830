"""What lch writes for people: embeddings.csv (metadata, codes, probability of high
efficiency per cell), in-silico cells (a cell decoded while its code moves along the
classifier's direction from low to high efficiency) and interpolations between two
cells, as montage PNGs and animated GIFs; and the images shown in TensorBoard."""

import csv
import json
import os

import numpy as np

from biomodels.atomic import atomic_path, write_text_atomic
from biomodels.errors import ConfigError, InputError
from biomodels.tasks.lch import data, inference
from biomodels.tasks.lch.config import latent_columns
from biomodels.tasks.lch.data import file_metadata, find_crops, preprocess

MODES = ("embed", "insilico", "interpolate")
VIEW_SIZE = 128  # pixels per panel in montages and GIFs
GIF_FRAME_MS = 150


def write_predictions(predictor, config, input_path, output_dir, options):
    """Run `options["mode"]` over the crops under `input_path` with `predictor` of a run
    trained with `config`; returns the paths written."""
    mode = options["mode"] or "embed"
    if mode not in MODES:
        raise ConfigError(f"--mode={mode}: choose one of {', '.join(MODES)}")
    crop_size = inference.crop_size_of(predictor, config)
    paths, _ = find_crops(input_path, config, require_table=False)
    chosen = _chosen_cells(paths, options["cells"], mode)
    if mode == "interpolate":
        return write_interpolation(predictor, config, data.load_crops(chosen, crop_size), chosen, output_dir, options)
    table = write_embeddings(predictor, config, paths, crop_size, output_dir, options)
    if mode == "embed":
        return [table["path"]]
    return [table["path"], *write_insilico(predictor, config, chosen, table, output_dir, options)]


def write_embeddings(predictor, config, paths, crop_size, output_dir, options):
    """embeddings.csv: file, metadata, z0..z(n-1), probability_high; returns the table
    as arrays too (codes and probabilities, not crops). The crops are read, sent and
    written `batch_size` at a time, so memory does not grow with their number."""
    from biomodels.report import progress_bar

    batch_size = options["batch_size"]
    fields = list(file_metadata(paths[0], config)) if paths else []
    codes, probabilities = [], []
    path = os.path.join(output_dir, "embeddings.csv")
    bar = progress_bar(len(paths), "crops")
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        for start in range(0, len(paths), batch_size):
            batch = paths[start:start + batch_size]
            result = inference.embed(predictor, data.load_crops(batch, crop_size, show_progress=False), batch_size)
            if start == 0:  # the codes' own width: a served model's configuration is not known
                writer.writerow(["file", *fields, *latent_columns(result.codes.shape[1]), "probability_high"])
            for index, file in enumerate(batch):
                metadata = file_metadata(file, config)
                probability = "" if result.probability_high is None else f"{result.probability_high[index]:.6f}"
                writer.writerow([os.path.basename(file), *(metadata[name] for name in fields),
                                 *(f"{value:.6f}" for value in result.codes[index]), probability])
            codes.append(result.codes)
            probabilities.append(result.probability_high)
            bar.update(start + len(batch))
    return {"path": path, "files": paths, "codes": np.concatenate(codes),
            "probabilities": None if probabilities[0] is None else np.concatenate(probabilities)}


def write_insilico(predictor, config, chosen, table, output_dir, options):
    """For each chosen cell (default: the two most confidently low and the two most
    confidently high), decode its code with its component along the classifier's
    direction replaced by evenly spaced values from -span to +span (in units of the
    prior's standard deviation, so every column means the same for every cell); a
    montage PNG (input, then the steps from low to high), a GIF per cell and
    insilico.json with the classifier's probability at every step."""
    classifier = inference.classifier_of(predictor)
    if chosen is None:
        order = np.argsort(classifier.logits(table["codes"]), kind="stable")
        picks = list(order[:2]) + list(order[-2:][::-1])
        chosen = sorted(set(int(i) for i in picks), key=picks.index)
    else:
        chosen = [table["files"].index(path) for path in chosen]
    crop_size = inference.crop_size_of(predictor, config)
    steps = options["steps"]
    span = config.insilico_span
    targets = np.linspace(-span, span, steps)
    direction = classifier.direction
    rows, written, record = [], [], []
    for index in chosen:
        code = table["codes"][index]
        moved = inference.along_direction(code, direction, targets)
        decoded = inference.decode(predictor, moved)
        name = os.path.splitext(os.path.basename(table["files"][index]))[0]
        model_input = np.asarray(preprocess(data.load_crops([table["files"][index]], crop_size, show_progress=False),
                                            config))[0]
        rows.append([model_input, *decoded])
        gif = os.path.join(output_dir, f"insilico_{name}.gif")
        write_gif(gif, there_and_back(decoded))
        written.append(gif)
        record.append({"file": os.path.basename(table["files"][index]), "position": float(code @ direction),
                       "probability_high": float(classifier.probabilities(code[None])[0]),
                       "probability_high_per_step": [round(float(p), 4) for p in classifier.probabilities(moved)],
                       "gif": os.path.basename(gif)})
    montage = os.path.join(output_dir, "insilico_montage.png")
    write_montage(montage, rows)
    summary = {"columns": ["input"] + [f"{t:+.2f} along the direction" for t in targets], "steps": targets.tolist(),
               "direction": [round(float(v), 6) for v in direction], "cells": record,
               "note": "each row: the input crop as the model sees it, then its code with the component along the "
                       "classifier's direction (low to high efficiency) set to each step, decoded"}
    info = os.path.join(output_dir, "insilico.json")
    write_text_atomic(info, json.dumps(summary, indent=2))
    return [montage, *written, info]


def write_interpolation(predictor, config, crops, chosen, output_dir, options):
    """Decode codes on the straight line between two cells; montage and GIF."""
    decoded = inference.interpolate(predictor, crops, options["steps"])
    names = [os.path.splitext(os.path.basename(path))[0] for path in chosen]
    montage = os.path.join(output_dir, f"interpolate_{names[0]}_{names[1]}.png")
    inputs = np.asarray(preprocess(crops, config))
    write_montage(montage, [[inputs[0], *decoded, inputs[1]]])
    gif = os.path.join(output_dir, f"interpolate_{names[0]}_{names[1]}.gif")
    write_gif(gif, there_and_back(decoded))
    return [montage, gif]


def _chosen_cells(paths, cells, mode):
    """The paths named by --cells (file names or paths), checked; None when not given."""
    if not cells:
        if mode == "interpolate":
            raise ConfigError("--mode=interpolate needs --cells=FIRST,SECOND (two crop file names)")
        return None
    by_name = {os.path.basename(path): path for path in paths}
    chosen = []
    for cell in cells:
        path = by_name.get(os.path.basename(cell))
        if path is None:
            raise InputError(cell, "is not one of the crops given with --input")
        chosen.append(path)
    if mode == "interpolate" and len(chosen) != 2:
        raise ConfigError(f"--mode=interpolate needs exactly two --cells, got {len(chosen)}")
    return chosen


def _to_view(image):
    """uint8 [VIEW_SIZE, VIEW_SIZE] of a [size, size, 1] image in [0, 1]."""
    from PIL import Image

    array = np.clip(np.asarray(image)[..., 0] * 255 + 0.5, 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(array).resize((VIEW_SIZE, VIEW_SIZE), Image.BILINEAR))


def write_montage(path, rows, gap=2):
    """A gray PNG grid: one row per list of [size, size, 1] images."""
    from biomodels.pipelines.readers import write_png

    columns = max(len(row) for row in rows)
    step = VIEW_SIZE + gap
    canvas = np.full((len(rows) * step - gap, columns * step - gap), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            canvas[r * step:r * step + VIEW_SIZE, c * step:c * step + VIEW_SIZE] = _to_view(image)
    write_png(path, canvas)


def there_and_back(frames):
    """frames, then back without repeating either end: a loop without a pause."""
    return list(frames) + list(frames[-2:0:-1])


def write_gif(path, frames):
    """An endlessly looping animated GIF of [size, size, 1] images."""
    from PIL import Image

    pictures = [Image.fromarray(_to_view(frame)) for frame in frames]
    with atomic_path(path) as tmp:
        pictures[0].save(tmp, format="GIF", save_all=True, append_images=pictures[1:], duration=GIF_FRAME_MS, loop=0)


def side_by_side(inputs, reconstructions):
    """uint8 [N, size, 2 size, 3]: each input beside its reconstruction."""
    pairs = np.concatenate([np.asarray(inputs, np.float32), np.asarray(reconstructions, np.float32)], axis=2)
    return np.repeat(np.clip(pairs * 255 + 0.5, 0, 255).astype(np.uint8), 3, axis=-1)


def histogram_image(values, bins=48, limit=4.0, height=120, width=2 * 48 * 3):
    """uint8 [height, width, 3]: the histogram of `values` (blue bars) under the density
    of N(0, 1) (red), which the adversarial loss pulls the codes towards."""
    edges = np.linspace(-limit, limit, bins + 1)
    counts, _ = np.histogram(np.clip(values, -limit, limit), edges)
    density = counts / max(1, len(values)) / (edges[1] - edges[0])
    centres = 0.5 * (edges[:-1] + edges[1:])
    prior = np.exp(-0.5 * centres ** 2) / np.sqrt(2 * np.pi)
    top = max(density.max(), prior.max()) * 1.05
    image = np.full((height, width, 3), 255, np.uint8)
    column = width // bins
    for index in range(bins):
        bar = int(round(density[index] / top * (height - 1)))
        image[height - bar:, index * column:(index + 1) * column - 1] = (70, 110, 200)
        level = height - 1 - int(round(prior[index] / top * (height - 1)))
        image[max(0, level - 1):level + 1, index * column:(index + 1) * column] = (210, 40, 40)
    return image


def summary_images(model, inputs):
    """Four inputs beside their reconstructions, and the codes' histogram under N(0, 1)."""
    reconstructions = np.asarray(model(inputs[:4], training=False))
    codes = np.asarray(model.encoder(inputs, training=False))
    return {"inputs_and_reconstructions": side_by_side(np.asarray(inputs[:4]), reconstructions),
            "latent_against_prior": histogram_image(codes.reshape(-1))[None]}

"""One tomogram spread over workers in Z slabs (predict's --block=N, N slices a slab):
the tomogram's mean and deviation from every slab's voxel sums first (the statistics
it is standardised with, as when it is predicted whole), then each slab a task that
labels its slices into the output files, which the command made beforehand and closes
(MRC header statistics added up from the slabs', OME-Zarr levels) and renames when
every slab is written. The files equal those of the tomogram predicted in one piece.
"""

import contextlib
import os

from biomodels.errors import InputError
from biomodels.tasks.cryoet import data, inference, outputs


class SumsJob:
    """Pass 1: the voxel sums of one slab (first, last + 1)."""

    def __init__(self, path):
        self.path = path

    def __call__(self, slab):
        tomogram = data.open_slices(self.path)
        return data.voxel_sums(tomogram[z] for z in range(*slab))


class SlabJob:
    """Pass 2: one slab's slices labelled into the output files (their temporary
    paths), with this process's predictor; returns each file's statistics."""

    def __init__(self, task_name, model, path, files, moments, options):
        self.task_name, self.model, self.path = task_name, model, path
        self.files, self.moments, self.options = files, moments, options

    def __call__(self, slab):
        from biomodels import tasks
        from biomodels.pipelines.mrc_slices import MrcSliceFile
        from biomodels.pipelines.ome_zarr import ZarrSliceFile, is_ome_zarr
        from biomodels.predictors import process_predictor

        predictor = process_predictor(tasks.get(self.task_name), self.model)
        tomogram = data.open_slices(self.path)
        kind = ZarrSliceFile if is_ome_zarr(self.path) else MrcSliceFile
        files = [kind(path, tomogram.shape, dtype) for path, dtype in self.files]
        try:
            outputs.predict_slices(predictor, tomogram, self.moments, files, range(*slab), options=self.options)
        finally:
            for file in files:
                file.close()
        return [file.statistics for file in files]


def predict_in_slabs(executor, task_name, model, input_path, output_dir, options):
    """Every tomogram under `input_path` labelled in slabs of options["block"] slices,
    each slab a task of `executor`; returns the paths written."""
    from biomodels import tasks
    from biomodels.cluster import map_in_order
    from biomodels.pipelines import partial_sums
    from biomodels.predictors import process_predictor

    inference.require_standardised(process_predictor(tasks.get(task_name), model))
    written = []
    for path in data.predict_inputs(input_path):
        tomogram = data.open_slices(path)
        slabs = [(z, min(z + options["block"], len(tomogram))) for z in range(0, len(tomogram), options["block"])]
        sums = partial_sums.add(map_in_order(executor, SumsJob(path), slabs, f"{os.path.basename(path)} statistics"))
        mean, std, not_finite = data.moments_from_sums(sums)
        if not_finite:
            raise InputError(path, f"contains {not_finite} NaN or Inf values")
        kinds = outputs.output_kinds(path, output_dir, options)
        with contextlib.ExitStack() as stack:
            writers = [stack.enter_context(outputs.slice_writer(tomogram)(out, tomogram.shape, dtype, tomogram))
                       for out, dtype in kinds.items()]
            files = [(writer.temporary_path, dtype) for writer, dtype in zip(writers, kinds.values())]
            job = SlabJob(task_name, model, path, files, (mean, std), options)
            for parts in map_in_order(executor, job, slabs, f"{os.path.basename(path)} slabs"):
                for writer, statistics in zip(writers, parts):
                    writer.add_statistics(statistics)
        written += list(kinds)
    return written

"""One image too large for a worker, segmented in blocks (predict's --block=N), as
Cellpose's distributed segmentation does it: each block is a task, read with a margin
of twice the cell diameter around it, segmented whole, and its core written into an
OME-Zarr label image; cells are stitched across the seams by their overlap.

1. The image's 1st and 99th percentiles per channel, from every block's pixels (every
   s-th pixel when the image has more than 2**24), so every block is normalised as the
   whole image would be.
2. Each block: its region (core and margin) read, normalised, run through the network
   and Cellpose's dynamics; the core's labels (numbered within the block) written into a
   scratch array; the labels in the regions it shares with its neighbours returned.
3. Where two blocks' regions overlap, a cell of one and a cell of the other whose
   intersection over union there is at least 0.5 are one cell (union-find); cells are
   numbered 1..N over the image in block order.
4. Each block's core renumbered into the output image, whose smaller levels and
   metadata are written last; the store appears under its name only when whole.

Memory per worker is one block with its margin; the driver holds the shared regions of
blocks whose neighbours have not finished, and one number per cell.
"""

import dataclasses
import math
import os
import shutil

import numpy as np

from biomodels.errors import ConfigError
from biomodels.pipelines import image_regions, ome_zarr

#: above this many pixels, the percentiles come from every s-th pixel (s*s fewer)
PERCENTILE_PIXELS = 2 ** 24
#: the intersection over union in a shared region above which two blocks' cells are one
SAME_CELL_IOU = 0.5


@dataclasses.dataclass(frozen=True)
class Block:
    """One block: `core` (top, bottom, left, right) is what it writes, `region` the core
    with its margin (within the image), what it reads and segments."""

    index: int
    core: tuple
    region: tuple


def plan_blocks(shape, block, margin):
    """The blocks of `block` pixels a side tiling an image of `shape` (height, width),
    row by row, each with `margin` pixels of context around its core."""
    height, width = shape
    blocks = []
    for top in range(0, height, block):
        for left in range(0, width, block):
            core = (top, min(top + block, height), left, min(left + block, width))
            region = (max(0, core[0] - margin), min(height, core[1] + margin),
                      max(0, core[2] - margin), min(width, core[3] + margin))
            blocks.append(Block(len(blocks), core, region))
    return blocks


def shared_regions(blocks):
    """[(block a, block b, region both read)] for every pair of blocks whose regions
    overlap (side and corner neighbours)."""
    pairs = []
    for a in blocks:
        for b in blocks[a.index + 1:]:
            shared = (max(a.region[0], b.region[0]), min(a.region[1], b.region[1]),
                      max(a.region[2], b.region[2]), min(a.region[3], b.region[3]))
            if shared[0] < shared[1] and shared[2] < shared[3]:
                pairs.append((a.index, b.index, shared))
    return pairs


def _within(array, outer, inner):
    """The part `inner` (top, bottom, left, right, image coordinates) of `array`, which
    covers `outer`."""
    return array[inner[0] - outer[0]:inner[1] - outer[0], inner[2] - outer[2]:inner[3] - outer[2]]


def percentile_stride(shape):
    return max(1, math.ceil(math.sqrt(shape[0] * shape[1] / PERCENTILE_PIXELS)))


class SampleJob:
    """Pass 1: a block core's pixels (its chosen channels), every `stride`-th pixel of
    the image's grid."""

    def __init__(self, path, channels, gray, stride):
        self.path, self.channels, self.gray, self.stride = path, channels, gray, stride

    def __call__(self, block):
        from biomodels.tasks.cellular.data import cell_channels

        # read with the margin (a core at the image's edge may be a sliver), then cut
        raw = cell_channels(image_regions.ImageRegions(self.path).region(*block.region), self.channels, self.gray,
                            self.path)
        core = _within(raw, block.region, block.core)
        first_y, first_x = -block.core[0] % self.stride, -block.core[2] % self.stride
        return core[first_y::self.stride, first_x::self.stride].reshape(-1, core.shape[-1])


class SegmentJob:
    """Pass 2: one block segmented with its margin; its core's labels written into the
    scratch array; returns (labels in the core, {pair index: labels in that shared
    region})."""

    def __init__(self, task_name, model, path, *, settings, bounds, scratch, pairs):
        self.task_name, self.model, self.path, self.settings = task_name, model, path, settings
        self.bounds, self.scratch, self.pairs = bounds, scratch, pairs

    def __call__(self, block):
        from biomodels import tasks
        from biomodels.predictors import process_predictor
        from biomodels.tasks.cellular import data, inference

        predictor = process_predictor(tasks.get(self.task_name), self.model)
        raw = data.cell_channels(image_regions.ImageRegions(self.path).region(*block.region), self.settings.channels,
                                 self.settings.gray, self.path)
        image = data.normalise_between(raw, *self.bounds)
        network = lambda tiles: predictor("normalised", images=np.ascontiguousarray(tiles, np.float32))  # noqa: E731
        masks, _ = inference.segment(network, image, self.settings.diameter_mean / self.settings.diameter,
                                     self.settings.thresholds, tile=self.settings.tile, overlap=self.settings.overlap,
                                     batch_size=self.settings.batch_size)
        masks = masks.astype(np.uint32)
        core = _within(masks, block.region, block.core)
        scratch = ome_zarr.import_zarr().open_array(self.scratch, mode="r+")
        scratch[block.core[0]:block.core[1], block.core[2]:block.core[3]] = core
        shared = {index: _within(masks, block.region, region) for index, (a, b, region) in enumerate(self.pairs)
                  if block.index in (a, b)}
        present = np.unique(core)
        return present[present > 0], int(masks.max()), shared


class RelabelJob:
    """Pass 3: a block's core renumbered from the scratch array into the output image."""

    def __init__(self, scratch, output):
        self.scratch, self.output = scratch, output

    def __call__(self, item):
        block, lookup = item
        zarr = ome_zarr.import_zarr()
        top, bottom, left, right = block.core
        local = np.asarray(zarr.open_array(self.scratch, mode="r")[top:bottom, left:right])
        zarr.open_array(self.output, mode="r+")[top:bottom, left:right] = lookup[local]
        return None


class CellUnion:
    """Union-find over every block's cells, each numbered within its block."""

    def __init__(self, counts):
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.parent = np.arange(int(self.offsets[-1]) + 1, dtype=np.int64)

    def node(self, block, label):
        return int(self.offsets[block] + label)

    def root(self, node):
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = int(self.parent[node])
        return node

    def join(self, a, b):
        self.parent[self.root(a)] = self.root(b)


def same_cells(labels_a, labels_b):
    """[(label in a, label in b)] of the cells two segmentations of one region share:
    intersection over union at least SAME_CELL_IOU."""
    both = (labels_a > 0) & (labels_b > 0)
    if not both.any():
        return []
    pairs, overlap = np.unique(np.stack([labels_a[both], labels_b[both]]), axis=1, return_counts=True)
    area_a = dict(zip(*np.unique(labels_a[labels_a > 0], return_counts=True)))
    area_b = dict(zip(*np.unique(labels_b[labels_b > 0], return_counts=True)))
    found = []
    for (a, b), inter in zip(pairs.T, overlap):
        if inter / (area_a[a] + area_b[b] - inter) >= SAME_CELL_IOU:
            found.append((int(a), int(b)))
    return found


def segment_in_blocks(executor, task_name, model, path, output_dir, *, settings, block):
    """Segment the image at `path` in blocks of `block` pixels through `executor`;
    returns the OME-Zarr label image written (NAME_cp_masks.zarr in `output_dir`, the
    image's pixel size and OME-NGFF version kept, 0.4 for TIFF and PNG inputs)."""
    from biomodels.cluster import map_in_order
    from biomodels.tasks.cellular.outputs import ZARR_MASKS

    if settings.in_graph:
        raise ConfigError("--block runs Cellpose's dynamics here, block by block: use --masks_in=python")
    if settings.diameter == 0:
        raise ConfigError("--block needs the cells' --diameter (its blocks' margin is twice that); --diameter=0 "
                          "estimates it on whole images")
    image = image_regions.ImageRegions(path)
    blocks = plan_blocks(image.shape, block, margin=math.ceil(2 * settings.diameter))
    stride = percentile_stride(image.shape)
    samples = map_in_order(executor, SampleJob(path, settings.channels, settings.gray, stride), blocks,
                           "blocks (intensities)")
    values = np.concatenate(samples)
    bounds = tuple(np.percentile(values, q, axis=0).astype(np.float32) for q in (1.0, 99.0))
    del samples, values
    output = os.path.join(output_dir, image_regions.output_name(path, ZARR_MASKS))
    version = image.version or "0.4"
    chunk = math.gcd(block, 1024) if math.gcd(block, 1024) >= 64 else block
    with ome_zarr.AtomicStore(output) as tmp:
        scratch = tmp + "-scratch"
        try:
            zarr = ome_zarr.import_zarr()
            zarr.create_array(scratch, shape=image.shape, chunks=(chunk, chunk), dtype=np.uint32, fill_value=0,
                              zarr_format=2)
            group, levels = ome_zarr.new_image(tmp, version, image.shape, (chunk, chunk), np.uint32)
            lookups = _segment_and_stitch(executor, SegmentJob(task_name, model, path, settings=settings, bounds=bounds,
                                                               scratch=scratch, pairs=shared_regions(blocks)), blocks)
            map_in_order(executor, RelabelJob(scratch, os.path.join(tmp, "0")), list(zip(blocks, lookups)),
                         "blocks (numbering)")
            pixel = image.pixel_size[::-1] if image.pixel_size else (1.0, 1.0)
            ome_zarr.finish_image(group, levels, "yx", voxel_size=pixel, origin=(0.0, 0.0), version=version,
                                  name=os.path.basename(output))
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return output


def _segment_and_stitch(executor, job, blocks):
    """Pass 2 and 3's plan: every block segmented (as they finish, each shared region
    compared once both of its blocks are done) and the lookup from each block's labels
    to the image's cell numbers."""
    from biomodels.report import progress_bar

    bar = progress_bar(len(blocks), f"blocks on {executor.workers} worker(s)")
    present, counts, pending, merges = {}, {}, {}, []
    for done, (block, (labels, count, shared)) in enumerate(executor.map(job, blocks), start=1):
        present[block.index], counts[block.index] = labels, count
        for index, strip in shared.items():
            if index in pending:  # the other block of the pair is done: compare, then forget
                other_block, other = pending.pop(index)
                a, b, _ = job.pairs[index]
                first, second = (other, strip) if other_block == a else (strip, other)
                merges += [(a, la, b, lb) for la, lb in same_cells(first, second)]
            else:
                pending[index] = (block.index, strip)
        bar.update(done)
    cells = CellUnion([counts[index] for index in range(len(blocks))])
    for a, la, b, lb in merges:
        cells.join(cells.node(a, la), cells.node(b, lb))
    numbers, lookups = {}, []
    for index in range(len(blocks)):
        lookup = np.zeros(counts[index] + 1, np.uint32)
        for label in present[index]:
            lookup[label] = numbers.setdefault(cells.root(cells.node(index, int(label))), len(numbers) + 1)
        lookups.append(lookup)
    return lookups

"""One large image segmented in blocks (biomodels.tasks.cellular.blocks): the block plan
and the regions blocks share, the matching of cells across a seam, and a hand-made
image whose cells straddle the seams, segmented in blocks and whole by a stand-in
network whose flows are known: the same cells (AP@0.5 at least 0.98) and no cell cut
in two at a seam. The real network on workers is in tests/test_cellular.py."""

import numpy as np
import pytest
import tifffile

from biomodels.cluster import InProcess
from biomodels.ops.matching import average_precision
from biomodels.pipelines import ome_zarr
from biomodels.tasks.cellular import blocks
from biomodels.tasks.cellular.inference import Settings, segment


def test_blocks_tile_the_image_and_neighbours_share_their_margins():
    plan = blocks.plan_blocks((100, 70), block=40, margin=10)
    assert [b.core for b in plan] == [(0, 40, 0, 40), (0, 40, 40, 70), (40, 80, 0, 40), (40, 80, 40, 70),
                                      (80, 100, 0, 40), (80, 100, 40, 70)]
    assert plan[3].region == (30, 90, 30, 70) and plan[0].region == (0, 50, 0, 50)
    covered = np.zeros((100, 70), int)
    for b in plan:
        covered[b.core[0]:b.core[1], b.core[2]:b.core[3]] += 1
    assert (covered == 1).all()
    pairs = {(a, b): region for a, b, region in blocks.shared_regions(plan)}
    assert pairs[(0, 1)] == (0, 50, 30, 50) and pairs[(0, 3)] == (30, 50, 30, 50)  # a side, a corner
    assert (0, 5) not in pairs and (1, 2) in pairs  # too far apart; corner neighbours the other way


def test_cells_are_the_same_across_a_seam_when_they_overlap_enough():
    a = np.zeros((10, 10), np.uint32)
    b = np.zeros((10, 10), np.uint32)
    a[2:6, 2:6], b[2:6, 3:7] = 4, 9  # the same cell, seen one pixel apart: IoU 12/20
    a[7:9, 0:2], b[7:9, 1:3] = 5, 2  # two cells beside each other: IoU 2/6
    assert blocks.same_cells(a, b) == [(4, 9)]
    cells = blocks.CellUnion([5, 9])
    cells.join(cells.node(0, 4), cells.node(1, 9))
    assert cells.root(cells.node(0, 4)) == cells.root(cells.node(1, 9)) != cells.root(cells.node(0, 5))


class StandInNetwork:
    """A predictor whose `normalised` signature gives what a trained network gives on
    bright discs: the cell probability from the intensity, and unit flows up the
    intensity blurred by about a cell's radius (towards each disc's centre)."""

    remote, calibration, config, source = False, {}, {}, "stand-in"
    signatures = ("normalised",)

    def __call__(self, signature, images):
        from scipy import ndimage

        flows, cellprob = [], []
        for image in np.asarray(images)[..., 0]:
            blurred = ndimage.gaussian_filter(image, 4.0, mode="constant")
            dy, dx = np.gradient(blurred)
            norm = np.sqrt(dy ** 2 + dx ** 2) + 1e-9
            flows.append(np.stack([dy / norm, dx / norm], axis=-1))
            cellprob.append((image - 0.5) * 20)
        return {"flows": np.stack(flows).astype(np.float32), "cellprob": np.stack(cellprob).astype(np.float32)}


def discs(shape, spacing, radius, seed):
    """Labels of discs on a jittered grid, and the image of them (bright on dark)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    for cy in range(radius + 2, shape[0] - radius - 2, spacing):
        for cx in range(radius + 2, shape[1] - radius - 2, spacing):
            y, x = cy + rng.integers(-3, 4), cx + rng.integers(-3, 4)
            labels[(yy - y) ** 2 + (xx - x) ** 2 <= radius ** 2] = labels.max() + 1
    image = np.where(labels > 0, 3000, 200) + rng.integers(0, 100, shape)
    return labels, image.astype(np.uint16)


@pytest.fixture
def stand_in(monkeypatch):
    from biomodels import predictors

    monkeypatch.setitem(predictors._OPENED, ("cellular", "stand-in"), StandInNetwork())
    return Settings(channels=(0,), gray=False, diameter=16.0, diameter_mean=16.0,
                    thresholds={"flow_threshold": 0.0, "cellprob_threshold": 0.0, "min_size": 15}, in_graph=False,
                    tile=224, overlap=32, batch_size=4)


def test_cells_straddling_the_seams_are_found_whole_as_in_the_whole_image(tmp_path, stand_in):
    from biomodels.tasks.cellular import data

    truth, image = discs((200, 232), spacing=22, radius=8, seed=0)
    tifffile.imwrite(tmp_path / "large.tif", image)
    seams = [64, 128, 192]
    straddling = {int(v) for s in seams for v in np.unique(np.concatenate([truth[s - 1], truth[:, s - 1]])) if v} & {
        int(v) for s in seams for v in np.unique(np.concatenate([truth[s % 200], truth[:, s]])) if v}
    assert len(straddling) >= 10  # the test means something
    written = blocks.segment_in_blocks(InProcess(), "cellular", "stand-in", str(tmp_path / "large.tif"),
                                       str(tmp_path / "out"), settings=stand_in, block=64)
    found = np.asarray(ome_zarr.Image(written).array)
    assert written.endswith("large_cp_masks.zarr") and found.shape == truth.shape
    raw = data.cell_channels(image, (0,))
    whole, _ = segment(lambda tiles: StandInNetwork()("normalised", tiles), data.normalise(raw), 1.0,
                       stand_in.thresholds, tile=224, overlap=32, batch_size=4)
    assert average_precision(whole, found, [0.5])[0][0] >= 0.98
    assert average_precision(truth, found, [0.5])[0][0] >= 0.98
    for cell in straddling:  # one label covers each true cell that crosses a seam
        labels, counts = np.unique(found[truth == cell], return_counts=True)
        assert counts.max() >= 0.9 * counts.sum() and (labels[counts.argmax()] > 0), cell
    assert sorted(np.unique(found))[-1] == len(np.unique(found)) - 1  # numbered 1..N


def test_blocks_need_a_known_diameter(tmp_path, stand_in):
    from biomodels.errors import ConfigError

    tifffile.imwrite(tmp_path / "large.tif", np.zeros((64, 64), np.uint16))
    with pytest.raises(ConfigError, match="--block needs the cells' --diameter"):
        blocks.segment_in_blocks(InProcess(), "cellular", "stand-in", str(tmp_path / "large.tif"), str(tmp_path / "out"),
                                 settings=Settings(**{**stand_in.__dict__, "diameter": 0.0}), block=64)
    assert not (tmp_path / "out").exists()

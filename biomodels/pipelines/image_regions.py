"""One large 2-D image read a region at a time, whatever its format: an OME-Zarr image
(by chunk), a TIFF (through tifffile's Zarr view of its tiles or strips), a PNG (read
whole: the format has no regions). Regions come channels last, [h, w] or [h, w, C].
"""

import os

import numpy as np

from biomodels.errors import InputError
from biomodels.pipelines import ome_zarr, readers


class ImageRegions:
    """A 2-D image (axes y, x and at most a channel axis) opened for reading regions.

    Attributes:
        path: the image.
        shape: (height, width).
        pixel_size: (x, y) in ångström from an OME-Zarr image's metadata, else None.
        version: the OME-NGFF version of an OME-Zarr image, else None.
    """

    def __init__(self, path):
        readers.require_exists(path)
        self.path, self.pixel_size, self.version = path, None, None
        if ome_zarr.is_ome_zarr(path):
            image = ome_zarr.Image(path)
            axes = "".join(image.axes)
            self._array, self._axes = image.array, axes
            self.pixel_size, self.version = image.voxel_size("xy"), image.version
        elif path.lower().endswith((".tif", ".tiff")):
            self._array, self._axes = _tiff_view(path)
        else:
            data = readers.read_image(path)
            self._array, self._axes = data, "yx" if data.ndim == 2 else "yxc"
        ome_zarr.require_single(path, self._axes, self._array.shape, "yxc", "one 2-D image (axes y, x and channels)")
        if "y" not in self._axes or "x" not in self._axes:
            raise InputError(path, f"has axes {self._axes}: expected a 2-D image with y and x")
        self.shape = (self._array.shape[self._axes.index("y")], self._array.shape[self._axes.index("x")])

    def region(self, top, bottom, left, right):
        """The pixels [top:bottom, left:right], channels last."""
        index = []
        for axis in self._axes:
            index.append(slice(top, bottom) if axis == "y" else slice(left, right) if axis == "x" else
                         slice(None) if axis == "c" else 0)
        data = np.asarray(self._array[tuple(index)])
        kept = [axis for axis in self._axes if axis in "yxc"]
        return np.transpose(data, [kept.index(axis) for axis in "yxc" if axis in kept])


def _tiff_view(path):
    """(a lazy array of a TIFF's first series, its axes in lower case with samples as
    channels)."""
    import tifffile

    zarr = ome_zarr.import_zarr()
    try:
        with tifffile.TiffFile(path) as tiff:
            axes = tiff.series[0].axes.lower().replace("s", "c")
        array = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    except Exception as error:  # tifffile raises many kinds for damaged files
        raise InputError(path, f"not a readable image ({str(error).splitlines()[0]})") from None
    if not hasattr(array, "shape"):  # a pyramid: its full-resolution level
        array = array["0"]
    return array, axes


def output_name(path, suffix):
    """The output beside an input's name: "a/cells.ome.zarr" -> "cells" + suffix."""
    base = os.path.basename(os.path.normpath(path))
    for ending in (".ome.zarr", ".zarr", ".ome.tif", ".ome.tiff"):
        if base.lower().endswith(ending):
            return base[: -len(ending)] + suffix
    return os.path.splitext(base)[0] + suffix

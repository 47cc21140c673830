"""Tomograms one Z slice at a time: an MRC file read slice by slice with plain file reads
(no copy of the volume, no memory map whose pages would count against the process), and
MRC files written slice by slice into a temporary file that is renamed when whole. With
these, predicting a tomogram holds a few slices in memory whatever its depth.
"""

import os
import warnings

import numpy as np

from biomodels.atomic import atomic_path
from biomodels.errors import InputError
from biomodels.pipelines import readers

_HEADER_BYTES = 1024


class MrcSlices:
    """Z slices of an MRC file; `shape` (Z, Y, X), `voxel_size`, `origin` and `start` as
    in readers.Volume. Files in the standard axis order (columns X, rows Y, sections Z:
    what tomograms are written in) are read a slice at a time; a file in another order
    is read whole by readers.read_mrc."""

    def __init__(self, path):
        import mrcfile

        readers.require_exists(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with mrcfile.open(path, mode="r", permissive=False, header_only=True) as mrc:
                    header = mrc.header
                    self.dtype = mrcfile.utils.data_dtype_from_header(header)
                    voxel = mrc.voxel_size
                    self.voxel_size = (float(voxel.x), float(voxel.y), float(voxel.z))
                    self.origin = (float(header.origin.x), float(header.origin.y), float(header.origin.z))
                    self.start = (int(header.nxstart), int(header.nystart), int(header.nzstart))
                    axes = (int(header.mapc), int(header.mapr), int(header.maps))
                    self.shape = (int(header.nz), int(header.ny), int(header.nx))
                    self._offset = _HEADER_BYTES + int(header.nsymbt)
        except (ValueError, OSError, EOFError) as error:
            raise InputError(path, f"not a readable MRC file ({str(error).splitlines()[0]})") from None
        self.path, self._volume = path, None
        if axes != (1, 2, 3):
            self._volume = readers.read_mrc(path)
            self.shape = self._volume.data.shape
            return
        if np.issubdtype(self.dtype, np.complexfloating):
            raise InputError(path, f"is a complex-valued MRC ({self.dtype}): expected a real density map or labels")
        self._slice_bytes = self.shape[1] * self.shape[2] * self.dtype.itemsize
        expected = self._offset + self.shape[0] * self._slice_bytes
        if os.path.getsize(path) < expected:
            raise InputError(path, f"not a readable MRC file (cut short: {os.path.getsize(path)} bytes, "
                                   f"the header announces {expected})")

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, z):
        if self._volume is not None:
            return self._volume.data[z]
        with open(self.path, "rb") as handle:
            handle.seek(self._offset + z * self._slice_bytes)
            data = np.frombuffer(handle.read(self._slice_bytes), self.dtype)
        return data.reshape(self.shape[1:]).astype(self.dtype.newbyteorder("="))

    def __iter__(self):
        return (self[z] for z in range(len(self)))


class MrcSliceWriter:
    """Write a (Z, Y, X) MRC of `dtype` slice by slice (`writer[z] = slice`) with the
    voxel size, origin and start of `like`; the file appears at `path` only when
    `close()` is reached without an error (use as a context manager)."""

    def __init__(self, path, shape, dtype, like):
        self.path, self.shape, self.dtype, self.like = path, tuple(shape), np.dtype(dtype), like
        self._atomic = atomic_path(path)
        self._tmp = self._atomic.__enter__()
        import mrcfile

        mode = mrcfile.utils.mode_from_dtype(self.dtype)
        with mrcfile.new_mmap(self._tmp, shape=self.shape, mrc_mode=mode, overwrite=True) as mrc:
            mrc.voxel_size = tuple(like.voxel_size)
            mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = like.origin
            mrc.header.nxstart, mrc.header.nystart, mrc.header.nzstart = (int(value) for value in like.start)
            self._offset = _HEADER_BYTES + int(mrc.header.nsymbt)
        self._handle = open(self._tmp, "r+b")
        self._low, self._high, self._sum, self._squares = np.inf, -np.inf, 0.0, 0.0

    def __setitem__(self, z, image):
        image = np.ascontiguousarray(image, self.dtype)
        if image.shape != self.shape[1:]:
            raise ValueError(f"slice of shape {image.shape} for a volume of {self.shape}")
        self._handle.seek(self._offset + z * image.nbytes)
        self._handle.write(image.tobytes())
        values = image.astype(np.float64)
        self._low, self._high = min(self._low, values.min()), max(self._high, values.max())
        self._sum += values.sum()
        self._squares += np.square(values).sum()

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        self._handle.close()
        if error is None:
            self._write_statistics()
        return self._atomic.__exit__(kind, error, traceback)

    def _write_statistics(self):
        """The header's minimum, maximum, mean and RMS deviation, as mrcfile sets them."""
        import mrcfile

        count = max(1, int(np.prod(self.shape)))
        mean = self._sum / count
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.mmap(self._tmp, mode="r+") as mrc:  # maps the data without touching it
                mrc.header.dmin, mrc.header.dmax = self._low, self._high
                mrc.header.dmean = mean
                mrc.header.rms = np.sqrt(max(self._squares / count - mean * mean, 0.0))

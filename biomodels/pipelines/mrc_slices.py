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


class SliceStatistics:
    """The minimum, maximum, sum and sum of squares of the voxels written, which an MRC
    header keeps; the parts written by several processes add up with `+`."""

    def __init__(self, low=np.inf, high=-np.inf, total=0.0, squares=0.0):
        self.low, self.high, self.total, self.squares = low, high, total, squares

    def add(self, image):
        values = np.asarray(image, np.float64)
        self.low, self.high = min(self.low, values.min()), max(self.high, values.max())
        self.total += values.sum()
        self.squares += np.square(values).sum()

    def __add__(self, other):
        return SliceStatistics(min(self.low, other.low), max(self.high, other.high), self.total + other.total,
                               self.squares + other.squares)


class MrcSliceFile:
    """Slices written into the data of an MRC file whose header is written already (one
    that an MrcSliceWriter is making), from this process or another: `file[z] = slice`;
    `statistics` are those of the slices written through it."""

    def __init__(self, path, shape, dtype):
        import mrcfile

        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, mode="r", header_only=True, permissive=True) as mrc:
                self._offset = _HEADER_BYTES + int(mrc.header.nsymbt)
        self._handle = open(path, "r+b")
        self.statistics = SliceStatistics()

    def __setitem__(self, z, image):
        image = np.ascontiguousarray(image, self.dtype)
        if image.shape != self.shape[1:]:
            raise ValueError(f"slice of shape {image.shape} for a volume of {self.shape}")
        self._handle.seek(self._offset + z * image.nbytes)
        self._handle.write(image.tobytes())
        self.statistics.add(image)

    def close(self):
        self._handle.close()


class MrcSliceWriter:
    """Write a (Z, Y, X) MRC of `dtype` slice by slice (`writer[z] = slice`) with the
    voxel size, origin and start of `like`; the file appears at `path` only when
    `close()` is reached without an error (use as a context manager). Other processes
    may write slices too, through an MrcSliceFile of `temporary_path`, handing their
    `statistics` to `add_statistics` before the writer closes."""

    def __init__(self, path, shape, dtype, like):
        self.path, self.shape, self.dtype, self.like = path, tuple(shape), np.dtype(dtype), like
        self._atomic = atomic_path(path)
        self.temporary_path = self._atomic.__enter__()
        import mrcfile

        mode = mrcfile.utils.mode_from_dtype(self.dtype)
        with mrcfile.new_mmap(self.temporary_path, shape=self.shape, mrc_mode=mode, overwrite=True) as mrc:
            mrc.voxel_size = tuple(like.voxel_size)
            mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = like.origin
            mrc.header.nxstart, mrc.header.nystart, mrc.header.nzstart = (int(value) for value in like.start)
        self._file = MrcSliceFile(self.temporary_path, self.shape, self.dtype)
        self._elsewhere = SliceStatistics()

    def __setitem__(self, z, image):
        self._file[z] = image

    def add_statistics(self, statistics):
        """Count the slices another process wrote (their MrcSliceFile's statistics)."""
        self._elsewhere = self._elsewhere + statistics

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        self._file.close()
        if error is None:
            self._write_statistics(self._file.statistics + self._elsewhere)
        return self._atomic.__exit__(kind, error, traceback)

    def _write_statistics(self, statistics):
        """The header's minimum, maximum, mean and RMS deviation, as mrcfile sets them."""
        import mrcfile

        count = max(1, int(np.prod(self.shape)))
        mean = statistics.total / count
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.mmap(self.temporary_path, mode="r+") as mrc:  # maps the data without touching it
                mrc.header.dmin, mrc.header.dmax = statistics.low, statistics.high
                mrc.header.dmean = mean
                mrc.header.rms = np.sqrt(max(statistics.squares / count - mean * mean, 0.0))

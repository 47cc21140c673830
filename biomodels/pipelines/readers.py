"""Readers and writers for the raw formats (MRC, TIFF, PNG) that check what they read.

Every problem with a user's file becomes an `InputError` naming the file. Writers go
through a temporary name and a rename, so an interrupted run leaves no half-written file.
"""

import contextlib
import dataclasses
import logging
import os
import warnings

import numpy as np

from biomodels.atomic import atomic_path
from biomodels.errors import InputError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png")


@dataclasses.dataclass(frozen=True)
class Volume:
    """A 3-D array (Z, Y, X) with its voxel size (x, y, z) in ångström, origin (x, y, z)
    in ångström and start indices (x, y, z) in voxels (MRC's nxstart, nystart, nzstart:
    where the box lies in the unit cell)."""

    data: np.ndarray
    voxel_size: tuple = (1.0, 1.0, 1.0)
    origin: tuple = (0.0, 0.0, 0.0)
    start: tuple = (0, 0, 0)


def read_mrc(path):
    """An MRC file as a `Volume` in (Z, Y, X) order, whatever axis order its header's
    mapc/mapr/maps give; a 2-D MRC becomes one slice; complex-valued maps are refused."""
    import mrcfile

    _require_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mrcfile.open(path, mode="r", permissive=False) as mrc:
                data = np.asarray(mrc.data).copy()
                header = mrc.header
                voxel = mrc.voxel_size
                voxel_size = (float(voxel.x), float(voxel.y), float(voxel.z))
                origin = (float(header.origin.x), float(header.origin.y), float(header.origin.z))
                axes = (int(header.mapc), int(header.mapr), int(header.maps))  # X/Y/Z (1/2/3) of columns, rows, sections
                starts = (int(header.nxstart), int(header.nystart), int(header.nzstart))  # of columns, rows, sections
                mode = int(header.mode)
    except (ValueError, OSError, EOFError) as error:
        raise InputError(path, f"not a readable MRC file ({_first_line(error)})") from None
    if np.iscomplexobj(data):
        raise InputError(path, f"is a complex-valued MRC (mode {mode}): expected a real density map or labels")
    if sorted(axes) != [1, 2, 3]:
        raise InputError(path, f"has mapc/mapr/maps {axes}: expected an order of the axes 1, 2, 3")
    if data.ndim == 2:
        data = data[np.newaxis]
    if data.ndim != 3:
        raise InputError(path, f"expected a 2-D or 3-D MRC volume, found {data.ndim} dimensions")
    # the array is (sections, rows, columns); put the Z, Y and X axes first to last
    data = np.transpose(data, [2 - axes.index(axis) for axis in (3, 2, 1)])
    start = tuple(starts[axes.index(axis)] for axis in (1, 2, 3))
    return Volume(np.ascontiguousarray(data), voxel_size, origin, start)


def write_mrc(path, data, voxel_size=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), start=(0, 0, 0)):
    """Write `data` (Z, Y, X) as MRC in the standard axis order with the given voxel size,
    origin and start indices (x, y, z), atomically."""
    import mrcfile

    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(data))
            mrc.voxel_size = tuple(voxel_size)
            mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = origin
            mrc.header.nxstart, mrc.header.nystart, mrc.header.nzstart = (int(value) for value in start)


def write_mrc_like(path, data, volume):
    """Write `data` (Z, Y, X) with the voxel size, origin and start indices of `volume`."""
    write_mrc(path, data, volume.voxel_size, volume.origin, volume.start)


def read_image(path):
    """A TIFF or PNG image as a numpy array (TIFF keeps all its axes)."""
    _require_file(path)
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with _tifffile_quiet():
                return tifffile.imread(path)
        if suffix == ".png":
            from PIL import Image

            with Image.open(path) as image:
                return np.asarray(image).copy()
    except Exception as error:  # the libraries raise many kinds for corrupt files
        raise InputError(path, f"not a readable image ({_first_line(error)})") from None
    raise InputError(path, f"unsupported image format {suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}")


def write_tiff(path, data, metadata=None):
    import tifffile

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, metadata=metadata)


def write_imagej_tiff(path, data, axes, labels=None, voxel_size=None, unit=None):
    """Write `data` as an ImageJ TIFF (hyperstack) whose axes are `axes` (such as "YX",
    "CYX" or "ZCYX"; ImageJ takes uint8, uint16 and float32), with optional channel
    `labels` that Fiji shows as slice names and a voxel size (z, y, x) in `unit` (the Z
    spacing and pixel size ImageJ shows), atomically."""
    import tifffile

    metadata = {"axes": axes, **({"Labels": list(labels)} if labels else {})}
    extra = {}
    if voxel_size is not None:
        metadata.update(spacing=float(voxel_size[0]), **({"unit": unit} if unit else {}))
        extra["resolution"] = (1.0 / float(voxel_size[2]), 1.0 / float(voxel_size[1]))
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, data, imagej=True, metadata=metadata, **extra)


def write_png(path, data):
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(data).save(tmp, format="PNG")


def readable(text):
    """A name from the file system as text any file can hold: bytes of a file name that
    are not UTF-8 (Linux names are bytes; Python keeps them as lone surrogates, which no
    UTF-8 writer accepts) become \\xNN escapes, e.g. Latin-1 'Zelle_ä' → 'Zelle_\\xe4'."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def require_exists(path):
    """Raise unless `path` names an existing file or folder."""
    if not os.path.exists(path):
        raise InputError(path, "no such file or directory")


def require_finite(path, data):
    """Raise if `data` holds NaN or Inf values."""
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
        raise InputError(path, f"contains {bad} NaN or Inf values")


def require_labels_in_range(path, labels, num_classes):
    """Raise unless `labels` are integers in 0..num_classes-1."""
    if not (np.issubdtype(labels.dtype, np.integer) or np.all(np.mod(labels, 1) == 0)):
        raise InputError(path, "labels must be integers")
    low, high = labels.min(), labels.max()
    if low < 0 or high >= num_classes:
        raise InputError(path, f"labels must lie in 0..{num_classes - 1}, found values from {low:g} to {high:g}")


def _require_file(path):
    if not os.path.exists(path):
        raise InputError(path, "no such file")
    if not os.path.isfile(path):
        raise InputError(path, "not a file")


@contextlib.contextmanager
def _tifffile_quiet():
    """tifffile logs each malformed tag of a damaged file before it raises; the one-line
    InputError that follows says what is wrong, so those lines stay off the console."""
    logger = logging.getLogger("tifffile")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _first_line(error):
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def read_tiff_volume(path):
    """(Z, Y, X) array, voxel size (x, y, z) in µm or None) of a TIFF stack; the voxel
    size comes from the X/Y resolution tags and ImageJ's `spacing`, when in µm."""
    import tifffile

    _require_file(path)
    try:
        with _tifffile_quiet(), tifffile.TiffFile(path) as tif:
            data = tif.asarray()
            page = tif.pages[0]
            imagej = tif.imagej_metadata or {}
            resolution = page.tags.get("XResolution"), page.tags.get("YResolution")
            unit = str(imagej.get("unit", "")).lower().replace("\\u00b5", "µ")
            voxel_size = None
            if all(resolution) and unit in ("um", "µm", "micron", "microns"):
                x, y = (tag.value[1] / tag.value[0] for tag in resolution)
                voxel_size = (float(x), float(y), float(imagej.get("spacing", x)))
    except Exception as error:  # tifffile raises many kinds for corrupt files
        raise InputError(path, f"not a readable TIFF ({_first_line(error)})") from None
    if data.ndim == 2:
        raise InputError(path, f"is a 2-D image {data.shape}; expected a Z×Y×X volume")
    if data.ndim != 3:
        raise InputError(path, f"expected a Z×Y×X volume, found shape {data.shape}")
    return data, voxel_size


def write_tiff_volume(path, data, voxel_size=None):
    """Write a (Z, Y, X) volume as an ImageJ TIFF stack, with the voxel size (x, y, z) in
    µm when given, atomically."""
    import tifffile

    kwargs = {}
    if voxel_size is not None:
        kwargs = {"resolution": (1.0 / voxel_size[0], 1.0 / voxel_size[1]),
                  "metadata": {"spacing": voxel_size[2], "unit": "um", "axes": "ZYX"}}
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, np.ascontiguousarray(data), imagej=True, **kwargs)

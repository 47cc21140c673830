"""OME-Zarr images (OME-NGFF 0.4 on Zarr v2, 0.5 on Zarr v3), read lazily and written
slice by slice, the voxel size kept.

Reading takes level 0 of a multiscale image group, its axes and units, and its voxel
size from the coordinate transformations (the multiscale's own scale times the
dataset's); a tomogram is read one Z slab of chunks at a time, so memory holds one row
of chunks, not the volume. This is the layout the cryoET Data Portal publishes (a
multiscale group, axes z/y/x in ångström). Writing gives a multiscale image: level 0
as computed, then levels halved by taking every other voxel (what suits labels), with a
scale transformation each; the store is written under a hidden name and renamed when
whole. ome-zarr-py's reader and zarr read what is written here.
"""

import os
import shutil

import numpy as np

from biomodels.errors import ConfigError, InputError

#: a length unit of OME-NGFF's list, in ångström
ANGSTROM_PER_UNIT = {"angstrom": 1.0, "nanometer": 10.0, "micrometer": 1e4, "millimeter": 1e7, "picometer": 0.01}
SUFFIX = ".zarr"
VERSIONS = ("0.4", "0.5")
#: levels are added while the smallest plane axis of the last is above this
SMALLEST_LEVEL = 256


def import_zarr():
    """zarr, or one line naming the extra that installs it."""
    try:
        import zarr
    except ImportError:
        raise ConfigError("OME-Zarr images need the optional extra distributed: pip install 'biomodels[distributed]'") from None
    return zarr


def require_single(path, axes, shape, kept, what):
    """One line naming `path` when an axis of `axes` outside `kept` holds more than one
    entry (a second time point or channel where `what` is expected)."""
    for axis, size in zip(axes, shape):
        if axis not in kept and size != 1:
            raise InputError(path, f"has {size} along axis {axis!r}: expected {what}")


def is_ome_zarr(path):
    """Whether `path` is a Zarr store (a folder named *.zarr, or holding Zarr's metadata)."""
    if not os.path.isdir(path):
        return False
    return path.rstrip("/").endswith(SUFFIX) or any(
        os.path.isfile(os.path.join(path, name)) for name in (".zattrs", ".zgroup", "zarr.json"))


class Image:
    """Level 0 of an OME-Zarr multiscale image.

    Attributes:
        array: the level's Zarr array (read lazily, by chunk).
        axes: the axes' names, as the metadata gives them ("z", "y", "x", "c", "t").
        scale: the size of a voxel along each axis, in ångström for space axes (1.0
            for the others).
        translation: the position of the first voxel along each axis, in ångström for
            space axes.
        version: "0.4" or "0.5".
    """

    def __init__(self, path):
        zarr = import_zarr()
        if not os.path.isdir(path):
            raise InputError(path, "not found: expected an OME-Zarr image (a .zarr folder)")
        try:
            group = zarr.open_group(path, mode="r")
            attributes = dict(group.attrs)
        except Exception as error:  # zarr's errors differ between formats
            raise InputError(path, f"not a readable Zarr group ({str(error).splitlines()[0]})") from None
        ome = attributes.get("ome", attributes)
        multiscales = ome.get("multiscales")
        if not multiscales or not isinstance(multiscales, list):
            raise InputError(path, "not an OME-Zarr image: no multiscales in its metadata (.zattrs or zarr.json)")
        self.path, self.version = path, str(ome.get("version") or multiscales[0].get("version") or "0.4")
        try:
            multiscale = multiscales[0]
            self.axes = tuple(axis["name"] if isinstance(axis, dict) else axis for axis in multiscale["axes"])
            units = [axis.get("unit") if isinstance(axis, dict) else None for axis in multiscale["axes"]]
            level = multiscale["datasets"][0]
            scale, translation = _transformations(multiscale.get("coordinateTransformations", []), len(self.axes))
            level_scale, level_translation = _transformations(level.get("coordinateTransformations", []), len(self.axes))
            self.array = group[level["path"]]
        except (KeyError, IndexError, TypeError) as error:
            raise InputError(path, f"damaged OME-Zarr metadata (multiscales: {error!r} is missing or wrong)") from None
        # a point's place: the level's transformations, then the multiscale's; in ångström
        to_angstrom = [self._angstrom(unit, name) for unit, name in zip(units, self.axes)]
        self.scale = tuple(float(a * b * f) for a, b, f in zip(scale, level_scale, to_angstrom))
        self.translation = tuple(float((a * s + b) * f)
                                 for a, s, b, f in zip(level_translation, scale, translation, to_angstrom))
        if len(self.array.shape) != len(self.axes):
            raise InputError(path, f"level 0 has {len(self.array.shape)} dimensions for {len(self.axes)} axes")

    def _angstrom(self, unit, axis):
        if unit is None or axis not in ("z", "y", "x"):
            return 1.0
        if unit not in ANGSTROM_PER_UNIT:
            raise InputError(self.path, f"axis {axis} is in {unit!r}: expected one of {', '.join(ANGSTROM_PER_UNIT)}")
        return ANGSTROM_PER_UNIT[unit]

    @property
    def shape(self):
        return tuple(self.array.shape)

    def spatial(self, wanted):
        """The array with only the axes `wanted` (e.g. "zyx", "cyx") in that order:
        axes of size 1 (a single time point or channel) dropped, "c" optional."""
        present = "".join(self.axes)
        extra = [axis for axis in present if axis not in wanted]
        require_single(self.path, present, self.shape, wanted, f"one image of axes {wanted}")
        missing = [axis for axis in wanted if axis not in present and axis != "c"]
        if missing:
            raise InputError(self.path, f"has axes {present}: expected {wanted}")
        index = tuple(0 if axis in extra else slice(None) for axis in present)
        data = self.array[index] if extra else self.array[...]
        kept = [axis for axis in present if axis not in extra]
        order = [kept.index(axis) for axis in wanted if axis in kept]
        return np.transpose(np.asarray(data), order)

    def voxel_size(self, axes="xyz"):
        """The size of a voxel in ångström along `axes` (1.0 where an axis is absent)."""
        return tuple(self.scale[self.axes.index(axis)] if axis in self.axes else 1.0 for axis in axes)

    def origin(self, axes="xyz"):
        return tuple(self.translation[self.axes.index(axis)] if axis in self.axes else 0.0 for axis in axes)


def _transformations(transformations, rank):
    """(scale, translation) of a list of OME-NGFF coordinate transformations."""
    scale, translation = [1.0] * rank, [0.0] * rank
    for transformation in transformations or []:
        if transformation.get("type") == "scale":
            scale = [float(value) for value in transformation["scale"]]
        elif transformation.get("type") == "translation":
            translation = [float(value) for value in transformation["translation"]]
    if len(scale) != rank or len(translation) != rank:
        raise KeyError("coordinateTransformations of another rank than the axes")
    return scale, translation


class ZarrSlices:
    """The Z slices of an OME-Zarr tomogram (axes z, y, x; a single t or c allowed), as
    biomodels.pipelines.mrc_slices.MrcSlices gives an MRC's: `shape` (Z, Y, X), `dtype`,
    `voxel_size`, `origin` (x, y, z, in ångström) and `start`. Slices are read a row of
    chunks at a time and kept until a slice outside it is asked for."""

    def __init__(self, path):
        self.image = Image(path)
        axes = "".join(self.image.axes)
        if not {"z", "y", "x"} <= set(axes):
            raise InputError(path, f"has axes {axes}: a tomogram needs z, y and x")
        require_single(path, axes, self.image.shape, "zyx", "one tomogram (axes z, y, x)")
        self.path, self.dtype = path, np.dtype(self.image.array.dtype)
        self._z = axes.index("z")
        self.shape = tuple(self.image.shape[axes.index(axis)] for axis in "zyx")
        self.voxel_size, self.origin, self.start = self.image.voxel_size(), self.image.origin(), (0, 0, 0)
        self._depth = int(self.image.array.chunks[self._z])
        self._slab, self._slab_start = None, None

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, z):
        if self._slab is None or not self._slab_start <= z < self._slab_start + len(self._slab):
            start = (z // self._depth) * self._depth
            index = [0] * len(self.image.axes)
            for position, axis in enumerate(self.image.axes):
                if axis in "yx":
                    index[position] = slice(None)
            index[self._z] = slice(start, min(start + self._depth, self.shape[0]))
            slab = np.asarray(self.image.array[tuple(index)])
            kept = [axis for axis in self.image.axes if axis in "zyx"]
            self._slab, self._slab_start = np.transpose(slab, [kept.index(axis) for axis in "zyx"]), start
        return self._slab[z - self._slab_start]

    def __iter__(self):
        return (self[z] for z in range(len(self)))


def read_volume(path):
    """An OME-Zarr tomogram as a readers.Volume (Z, Y, X), read whole."""
    from biomodels.pipelines.readers import Volume

    slices = ZarrSlices(path)
    return Volume(np.stack(list(slices)) if len(slices) else np.zeros(slices.shape, slices.dtype),
                  slices.voxel_size, slices.origin, slices.start)


class ZarrSliceFile:
    """Slices written into level 0 of an image a ZarrSliceWriter is making, from this
    process or another (each slice its own chunks): `file[z] = slice`."""

    #: what the slices' values add to the image's metadata: nothing (OME-Zarr keeps no statistics)
    statistics = None

    def __init__(self, path, shape, dtype):
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self._array = import_zarr().open_array(path, mode="r+")

    def __setitem__(self, z, image):
        image = np.ascontiguousarray(image, self.dtype)
        if image.shape != self.shape[1:]:
            raise ValueError(f"slice of shape {image.shape} for a volume of {self.shape}")
        self._array[z] = image

    def close(self):
        pass


class ZarrSliceWriter:
    """Write a (Z, Y, X) OME-Zarr image of `dtype` slice by slice (`writer[z] = slice`)
    with the voxel size and origin of `like`, as MrcSliceWriter writes an MRC; the
    store appears at `path` with its smaller levels only when the block ends without an
    error (use as a context manager). Other processes may write slices through a
    ZarrSliceFile of `temporary_path` (level 0)."""

    def __init__(self, path, shape, dtype, like, version="0.4"):
        self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)
        self._store = AtomicStore(path)
        self._tmp = self._store.__enter__()
        chunks = (1, min(self.shape[1], 512), min(self.shape[2], 512))
        self._axes = "zyx"
        self._group, self._levels = new_image(self._tmp, version, self.shape, chunks, self.dtype)
        self.temporary_path = os.path.join(self._tmp, "0")
        self._voxel = tuple(like.voxel_size)[::-1]  # z, y, x
        self._origin = tuple(like.origin)[::-1]
        self._version = version

    def __setitem__(self, z, image):
        image = np.ascontiguousarray(image, self.dtype)
        if image.shape != self.shape[1:]:
            raise ValueError(f"slice of shape {image.shape} for a volume of {self.shape}")
        self._levels[0][z] = image

    def add_statistics(self, statistics):
        """Nothing to count: OME-Zarr keeps no statistics of its values."""

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if error is None:
            finish_image(self._group, self._levels, self._axes, voxel_size=self._voxel, origin=self._origin,
                         version=self._version, name=os.path.basename(self.path))
        return self._store.__exit__(kind, error, traceback)


def write_image(path, data, axes, voxel_size, origin=None, version="0.4"):
    """Write a whole array (a 2-D image "yx", "cyx", or a volume "zyx") as an OME-Zarr
    multiscale image with `voxel_size` (ångström, per axis of `axes`; 1.0 for "c")."""
    data = np.asarray(data)
    chunks = tuple(1 if axis in "zc" else min(n, 512) for axis, n in zip(axes, data.shape))
    with AtomicStore(path) as tmp:
        group, levels = new_image(tmp, version, data.shape, chunks, data.dtype)
        levels[0][...] = data
        finish_image(group, levels, axes, voxel_size=tuple(voxel_size), origin=tuple(origin or [0.0] * len(axes)),
                     version=version, name=os.path.basename(path))
    return path


def new_image(path, version, shape, chunks, dtype):
    """(a new Zarr group at `path` for OME-NGFF `version`, [its level 0 array]); once
    level 0 is written, `finish_image` adds the rest."""
    zarr = import_zarr()

    if version not in VERSIONS:
        raise ValueError(f"OME-Zarr version {version!r}: expected one of {VERSIONS}")
    group = zarr.open_group(path, mode="w", zarr_format=2 if version == "0.4" else 3)
    level = group.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
    return group, [level]


def finish_image(group, levels, axes, *, voxel_size, origin, version, name):
    """Add the halved levels (every other voxel along the space axes) and the multiscale
    metadata to a written level 0."""
    space = [axis in "zyx" for axis in axes]
    planes = [n for axis, n in zip(axes, levels[0].shape) if axis in "yx"]
    halvings = 0
    while min(planes) >> halvings > SMALLEST_LEVEL and halvings < 3:
        halvings += 1
    magnification = [[1.0] * len(axes)]  # each level's voxel size over level 0's, per axis
    for index in range(1, halvings + 1):
        previous = levels[-1]
        step = tuple(slice(None, None, 2) if flag and (axis != "z" or previous.shape[i] > 1) else slice(None)
                     for i, (axis, flag) in enumerate(zip(axes, space)))
        magnification.append([m * (2 if s.step else 1) for m, s in zip(magnification[-1], step)])
        shape = tuple(len(range(*s.indices(n))) for s, n in zip(step, previous.shape))
        level = group.create_array(str(index), shape=shape, chunks=tuple(min(c, n) for c, n in zip(previous.chunks, shape)),
                                   dtype=previous.dtype, fill_value=0)
        rows = 2 * previous.chunks[0]  # an even number of rows, a slab at a time
        for start in range(0, previous.shape[0], rows):
            block = np.asarray(previous[start:start + rows])[step]
            first = start // 2 if step[0].step else start
            level[first:first + block.shape[0]] = block
        levels.append(level)
    datasets = []
    for index, ratio in enumerate(magnification):
        scale = [float(v) * r for v, r in zip(voxel_size, ratio)]
        datasets.append({"path": str(index), "coordinateTransformations": [
            {"type": "scale", "scale": scale}, {"type": "translation", "translation": [float(v) for v in origin]}]})
    axes_metadata = [{"name": axis, "type": "space", "unit": "angstrom"} if axis in "zyx" else
                     {"name": axis, "type": "channel" if axis == "c" else "time"} for axis in axes]
    multiscale = {"name": name, "axes": axes_metadata, "datasets": datasets, "type": "nearest"}
    if version == "0.4":
        group.attrs["multiscales"] = [{"version": "0.4", **multiscale}]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}


class AtomicStore:
    """A hidden folder beside `path` to write a store into, renamed onto `path` (an
    older store there replaced) when the block ends without an error, else removed."""

    def __init__(self, path):
        directory, name = os.path.split(os.path.abspath(path))
        os.makedirs(directory, exist_ok=True)
        self.path, self.tmp = path, os.path.join(directory, f".{name}.tmp-{os.getpid()}")

    def __enter__(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
        return self.tmp

    def __exit__(self, kind, error, traceback):
        if error is None:
            old = None
            if os.path.exists(self.path):
                if not is_ome_zarr(self.path):
                    shutil.rmtree(self.tmp, ignore_errors=True)
                    raise InputError(self.path, "exists and is not a Zarr store; move it or choose another output folder")
                old = self.tmp + "-old"
                os.replace(self.path, old)
            os.replace(self.tmp, self.path)
            if old:
                shutil.rmtree(old, ignore_errors=True)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

"""Read a PyTorch state dict (what `torch.save(net.state_dict(), path)` writes) into
numpy arrays without importing PyTorch.

Since PyTorch 1.6 such a file is a zip archive: `data.pkl` pickles the dict, with each
tensor's storage kept as a separate raw little-endian file `data/<key>`. The unpickler
here resolves only the few PyTorch names a state dict refers to (storage types, the
tensor rebuilders, OrderedDict), so it runs no code from the file. Files in the older
non-zip format are read with PyTorch when it is installed.
"""

import collections
import pickle
import zipfile

import numpy as np

from biomodels.errors import CheckpointError

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16", "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        self.name = name


def _tensor_rebuilder(path):
    """torch._utils._rebuild_tensor_v2 for numpy: the (offset, size, stride) view of a
    storage, each number checked against the storage first. A crafted file could
    otherwise make the strided view reach outside the storage: a crash, or the
    process's memory copied into the weights."""

    def rebuild(storage, offset, size, stride, *unused):
        size, stride = tuple(size), tuple(stride)
        numbers = (offset, *size, *stride)
        if (not isinstance(storage, np.ndarray) or len(size) != len(stride)
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers)):
            raise CheckpointError(path, f"holds a tensor with offset {offset!r}, size {size!r} and stride {stride!r}, "
                                        "which do not describe a tensor")
        if 0 not in size:
            last = offset + sum((extent - 1) * step for extent, step in zip(size, stride))
            if last >= storage.size:
                raise CheckpointError(path, f"holds a tensor of size {size} (offset {offset}, stride {stride}) "
                                            f"reaching element {last} of a storage of {storage.size}")
        view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size,
                                               strides=tuple(step * storage.itemsize for step in stride))
        return np.array(view)

    return rebuild


def _rebuild_parameter(data, *unused):
    return data


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file, archive, prefix, path):
        super().__init__(file)
        self.archive, self.prefix, self.path = archive, prefix, path

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _tensor_rebuilder(self.path)
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(self.path, f"holds {module}.{name}, which is not part of a plain state dict")

    def persistent_load(self, saved_id):
        kind, storage_type, key, _location, _numel = saved_id
        if kind != "storage":
            raise CheckpointError(self.path, f"holds a persistent object of kind {kind!r}")
        try:
            raw = self.archive.read(f"{self.prefix}data/{key}")
        except KeyError:
            raise CheckpointError(self.path, f"has no storage data/{key}") from None
        dtype = _STORAGE_DTYPES[storage_type.name]
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        if len(raw) % itemsize:
            raise CheckpointError(self.path, f"storage data/{key} holds {len(raw)} bytes, not whole {itemsize}-byte values")
        if dtype == "bfloat16":
            halves = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
            return halves.view(np.float32)
        return np.frombuffer(raw, np.dtype(dtype).newbyteorder("<"))


def read_state_dict(path):
    """{name: numpy array} of a PyTorch state dict file; a 'module.' prefix (from
    DataParallel) is dropped."""
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as error:
        raise CheckpointError(path, f"cannot be read ({error.strerror or error})") from None
    state = _read_zip(path) if is_zip else _read_with_torch(path)
    if not isinstance(state, dict) or not state:
        raise CheckpointError(path, "is not a state dict (a mapping of names to tensors)")
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    arrays = {}
    for name, value in state.items():
        if not isinstance(value, np.ndarray):
            raise CheckpointError(path, f"entry {name!r} is not a tensor")
        arrays[name[len("module."):] if name.startswith("module.") else name] = value
    return arrays


def _read_zip(path):
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
        if len(pickles) != 1:
            raise CheckpointError(path, "is a zip archive but not a PyTorch checkpoint (no data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = f"{prefix}byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise CheckpointError(path, "was saved on a big-endian machine, which is not supported")
        with archive.open(pickles[0]) as file:
            try:
                state = _StateDictUnpickler(file, archive, prefix, path).load()
            except CheckpointError:
                raise
            except Exception as error:
                raise CheckpointError(path, f"cannot be unpickled ({type(error).__name__}: {error})") from None
    return {name: np.asarray(value) if isinstance(value, np.ndarray) else value for name, value in state.items()} \
        if isinstance(state, dict) else state


def _read_with_torch(path):
    try:
        import torch
    except ImportError:
        raise CheckpointError(path, "is not a zip-format PyTorch checkpoint; reading the legacy format needs "
                                    "PyTorch (pip install torch)") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(path, f"cannot be read by PyTorch ({str(error).splitlines()[0]})") from None
    if not isinstance(state, dict):
        return state
    return {name: value.float().numpy() if value.dtype == torch.bfloat16 else value.numpy()
            if hasattr(value, "numpy") else value for name, value in state.items()}


def read_cellpose_net(path, nchan=2):
    """A `CellposeNet` with the weights of a Cellpose 1.x-3.x CPnet checkpoint (a PyTorch
    state dict); widths and diameter are read from the checkpoint."""
    from biomodels.models import CellposeNet

    return CellposeNet.from_cellpose_state(read_state_dict(path), nchan, path)

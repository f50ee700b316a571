"""TFLite metadata for an image classifier or segmenter, written into the .tflite and read back.

MediaPipe Tasks, the TFLite Task Library and Android Studio's ML Model Binding read a
model's metadata: a FlatBuffer of TFLite's published metadata schema (file identifier
``M001``) stored in a model buffer named ``TFLITE_METADATA``, with the associated files
(the labels) appended to the model as an uncompressed zip. Neither tflite-support nor
MediaPipe's writer installs beside this project's TensorFlow, so the FlatBuffer is built
here with ``flatbuffers``' Builder from the schema's field order; :func:`read_metadata`
parses it back (tests, ``factory predict``).

Only fields of schema 1.0.0 are written, so the minimum parser version is 1.0.0, unless a custom metadata entry
is (schema 1.5.0): a segmenter's ``SEGMENTER_METADATA``, MediaPipe's ``ImageSegmenterOptions`` (file identifier
``V001``) naming the activation its confidence masks need.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field

import flatbuffers
import numpy as np
from flatbuffers.table import Table

from factory.core.errors import FactoryError

METADATA_NAME = "TFLITE_METADATA"
IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"
CUSTOM_PARSER_VERSION = "1.5.0"  # SubGraphMetadata.custom_metadata
SEGMENTER_METADATA, SEGMENTER_IDENTIFIER = "SEGMENTER_METADATA", b"V001"
SEGMENTER_ACTIVATIONS = ("NONE", "SIGMOID", "SOFTMAX")  # mediapipe.tasks.Activation

# enum values and union type tags of metadata_schema.fbs
TENSOR_AXIS_LABELS = 2
COLOR_RGB = 1
CONTENT_FEATURE, CONTENT_IMAGE = 1, 2
OPTIONS_NORMALIZATION = 1


@dataclass(frozen=True)
class TensorInfo:
    """What the metadata says of one input or output tensor."""

    name: str
    description: str
    image: tuple[int, int] | None = None  # (width, height) of an RGB image input
    mean: tuple[float, ...] = ()  # NormalizationOptions: (value - mean) / std
    std: tuple[float, ...] = ()
    min: tuple[float, ...] = ()  # Stats: the tensor's value range
    max: tuple[float, ...] = ()
    labels_file: str | None = None  # a TENSOR_AXIS_LABELS associated file


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    version: str
    author: str
    license: str
    inputs: tuple[TensorInfo, ...] = field(default_factory=tuple)
    outputs: tuple[TensorInfo, ...] = field(default_factory=tuple)
    custom: tuple[tuple[str, bytes], ...] = ()  # (name, flatbuffer) entries of the subgraph's custom_metadata
    min_parser_version: str = MIN_PARSER_VERSION


def segmenter_options(activation: str) -> bytes:
    """MediaPipe's ``ImageSegmenterOptions`` FlatBuffer: the activation (NONE, SIGMOID or SOFTMAX) its
    ImageSegmenter applies to the output before the confidence masks."""
    b = flatbuffers.Builder(16)
    b.StartObject(2)  # activation 0 (byte), min_parser_version 1
    b.PrependInt8Slot(0, SEGMENTER_ACTIVATIONS.index(activation), 0)
    b.Finish(b.EndObject(), file_identifier=SEGMENTER_IDENTIFIER)
    return bytes(b.Output())


def segmenter_activation(data: bytes) -> str:
    """The activation an ``ImageSegmenterOptions`` FlatBuffer names."""
    if not flatbuffers.util.BufferHasIdentifier(data, 0, SEGMENTER_IDENTIFIER):
        raise FactoryError(f"{SEGMENTER_METADATA} is not MediaPipe's ImageSegmenterOptions (no V001 identifier)")
    root = _Reader(data, flatbuffers.encode.Get(flatbuffers.packer.uoffset, data, 0))
    return SEGMENTER_ACTIVATIONS[root.scalar(0, flatbuffers.number_types.Int8Flags)]


# ------------------------------------------------------------------ writing
class _Writer:
    """Tables are built children first, as flatbuffers requires; each helper returns an offset."""

    def __init__(self):
        self.b = flatbuffers.Builder(1024)

    def table(self, fields: list[tuple[int, str, object]]) -> int:
        """``fields``: (slot, kind, value) with kind 'offset', 'uint8', 'int8' or 'uint32'; None values are skipped."""
        b = self.b
        b.StartObject(max((slot for slot, _, _ in fields), default=-1) + 1)
        for slot, kind, value in fields:
            if value is None:
                continue
            if kind == "offset":
                b.PrependUOffsetTRelativeSlot(slot, value, 0)
            elif kind == "uint8":
                b.PrependUint8Slot(slot, value, 0)
            elif kind == "int8":
                b.PrependInt8Slot(slot, value, 0)
            else:
                b.PrependUint32Slot(slot, value, 0)
        return b.EndObject()

    def string(self, text: str | None) -> int | None:
        return None if text is None else self.b.CreateString(text)

    def offsets(self, items: list[int]) -> int:
        self.b.StartVector(4, len(items), 4)
        for item in reversed(items):
            self.b.PrependUOffsetTRelative(item)
        return self.b.EndVector()

    def floats(self, values) -> int | None:
        return self.b.CreateNumpyVector(np.asarray(values, np.float32)) if len(values) else None

    def labels_file(self, name: str) -> int:
        # AssociatedFile: name 0, description 1, type 2, locale 3
        return self.table([(0, "offset", self.string(name)),
                           (1, "offset", self.string("Labels for the classes the output scores, one per line")),
                           (2, "int8", TENSOR_AXIS_LABELS)])

    def tensor(self, info: TensorInfo) -> int:
        content = None
        if info.image is not None:
            size = self.table([(0, "uint32", info.image[0]), (1, "uint32", info.image[1])])  # ImageSize
            props = self.table([(0, "int8", COLOR_RGB), (1, "offset", size)])  # ImageProperties
            content = self.table([(0, "uint8", CONTENT_IMAGE), (1, "offset", props)])  # Content
        else:
            content = self.table([(0, "uint8", CONTENT_FEATURE), (1, "offset", self.table([]))])
        units = None
        if info.mean:
            norm = self.table([(0, "offset", self.floats(info.mean)), (1, "offset", self.floats(info.std))])
            units = self.offsets([self.table([(0, "uint8", OPTIONS_NORMALIZATION), (1, "offset", norm)])])
        stats = None
        if info.min or info.max:  # Stats: max 0, min 1
            stats = self.table([(0, "offset", self.floats(info.max)), (1, "offset", self.floats(info.min))])
        files = self.offsets([self.labels_file(info.labels_file)]) if info.labels_file else None
        # TensorMetadata: name 0, description 1, dimension_names 2, content 3, process_units 4, stats 5,
        # associated_files 6
        return self.table([(0, "offset", self.string(info.name)), (1, "offset", self.string(info.description)),
                           (3, "offset", content), (4, "offset", units), (5, "offset", stats),
                           (6, "offset", files)])

    def custom(self, name: str, data: bytes) -> int:
        b = self.b
        b.StartVector(1, len(data), 16)  # data: [ubyte] (force_align: 16)
        for byte in reversed(data):
            b.PrependUint8(byte)
        vector = b.EndVector()
        return self.table([(0, "offset", self.string(name)), (1, "offset", vector)])  # CustomMetadata: name, data

    def model(self, info: ModelInfo) -> bytes:
        inputs = self.offsets([self.tensor(t) for t in info.inputs])
        outputs = self.offsets([self.tensor(t) for t in info.outputs])
        custom = self.offsets([self.custom(n, d) for n, d in info.custom]) if info.custom else None
        # SubGraphMetadata: name 0, description 1, input_tensor_metadata 2, output_tensor_metadata 3,
        # associated_files 4, input_process_units 5, output_process_units 6, input_tensor_groups 7,
        # output_tensor_groups 8, custom_metadata 9
        subgraph = self.table([(0, "offset", self.string(info.name)), (2, "offset", inputs),
                               (3, "offset", outputs), (9, "offset", custom)])
        subgraphs = self.offsets([subgraph])
        # ModelMetadata: name 0, description 1, version 2, subgraph_metadata 3, author 4, license 5,
        # associated_files 6, min_parser_version 7
        strings = [self.string(s) for s in (info.name, info.description, info.version)]
        author, license_, parser = (self.string(s) for s in (info.author, info.license, info.min_parser_version))
        root = self.table([(0, "offset", strings[0]), (1, "offset", strings[1]), (2, "offset", strings[2]),
                           (3, "offset", subgraphs), (4, "offset", author), (5, "offset", license_),
                           (7, "offset", parser)])
        self.b.Finish(root, file_identifier=IDENTIFIER)
        return bytes(self.b.Output())


def metadata_buffer(info: ModelInfo) -> bytes:
    """The metadata FlatBuffer of ``info``."""
    return _Writer().model(info)


def embed(content: bytes, info: ModelInfo, files: dict[str, bytes]) -> bytes:
    """``content`` with ``info``'s metadata in a ``TFLITE_METADATA`` buffer and ``files`` zipped after it.

    The model's own tensors, operators and other metadata entries (the converter's
    ``min_runtime_version``) are kept; an older ``TFLITE_METADATA`` entry is replaced.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata_buffer(info), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME, len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if _text(m.name) != METADATA_NAME] + [entry]
    out = io.BytesIO(flatbuffer_utils.convert_object_to_bytearray(model))
    out.seek(0, io.SEEK_END)
    # mode "a" on bytes that are not a zip appends an archive whose offsets count from the file's start,
    # as the readers (minizip in MediaPipe and the Task Library) expect; they read files stored uncompressed
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ------------------------------------------------------------------ reading
class _Reader:
    def __init__(self, buf: bytes, pos: int):
        self.t = Table(bytearray(buf) if not isinstance(buf, bytearray) else buf, pos)

    def _offset(self, slot: int) -> int:
        return self.t.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str | None:
        o = self._offset(slot)
        return self.t.String(o + self.t.Pos).decode() if o else None

    def scalar(self, slot: int, flags) -> int:
        o = self._offset(slot)
        return self.t.Get(flags, o + self.t.Pos) if o else 0

    def table(self, slot: int) -> _Reader | None:
        o = self._offset(slot)
        return _Reader(self.t.Bytes, self.t.Indirect(o + self.t.Pos)) if o else None

    def tables(self, slot: int) -> list[_Reader]:
        o = self._offset(slot)
        if not o:
            return []
        start, n = self.t.Vector(o), self.t.VectorLen(o)
        return [_Reader(self.t.Bytes, self.t.Indirect(start + 4 * i)) for i in range(n)]

    def bytes(self, slot: int) -> bytes:
        o = self._offset(slot)
        return self.t.GetVectorAsNumpy(flatbuffers.number_types.Uint8Flags, o).tobytes() if o else b""

    def floats(self, slot: int) -> tuple[float, ...]:
        o = self._offset(slot)
        if not o:
            return ()
        return tuple(float(v) for v in self.t.GetVectorAsNumpy(flatbuffers.number_types.Float32Flags, o))


def _tensor(r: _Reader) -> TensorInfo:
    image = mean = std = ()
    content = r.table(3)
    if content is not None and content.scalar(0, flatbuffers.number_types.Uint8Flags) == CONTENT_IMAGE:
        size = content.table(1).table(1)
        image = (size.scalar(0, flatbuffers.number_types.Uint32Flags),
                 size.scalar(1, flatbuffers.number_types.Uint32Flags)) if size else (0, 0)
    for unit in r.tables(4):
        if unit.scalar(0, flatbuffers.number_types.Uint8Flags) == OPTIONS_NORMALIZATION:
            mean, std = unit.table(1).floats(0), unit.table(1).floats(1)
    stats = r.table(5)
    labels = [f.string(0) for f in r.tables(6) if f.scalar(2, flatbuffers.number_types.Int8Flags) == TENSOR_AXIS_LABELS]
    return TensorInfo(name=r.string(0) or "", description=r.string(1) or "", image=image or None,
                      mean=mean, std=std, min=stats.floats(1) if stats else (), max=stats.floats(0) if stats else (),
                      labels_file=labels[0] if labels else None)


def read_metadata(content: bytes) -> tuple[ModelInfo, dict[str, bytes]]:
    """The metadata and associated files of a .tflite; a model without metadata is a FactoryError."""
    from tensorflow.lite.python import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(bytearray(content), 0)
        entries = {model.Metadata(i).Name().decode(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    except Exception:  # flatbuffers raises struct and index errors on bytes that are not a model
        raise FactoryError("not a .tflite model: give the model.tflite of a bundle") from None
    if METADATA_NAME not in entries:
        raise FactoryError("the model holds no TFLite metadata: export it again with this version of the factory")
    buf = model.Buffers(entries[METADATA_NAME]).DataAsNumpy().tobytes()
    if not flatbuffers.util.BufferHasIdentifier(buf, 0, IDENTIFIER):
        raise FactoryError(f"the model's {METADATA_NAME} buffer is not TFLite metadata (no {IDENTIFIER.decode()} identifier)")
    root = _Reader(buf, flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0))
    [subgraph] = root.tables(3)
    info = ModelInfo(name=root.string(0) or "", description=root.string(1) or "", version=root.string(2) or "",
                     author=root.string(4) or "", license=root.string(5) or "",
                     inputs=tuple(_tensor(t) for t in subgraph.tables(2)),
                     outputs=tuple(_tensor(t) for t in subgraph.tables(3)),
                     custom=tuple((c.string(0) or "", c.bytes(1)) for c in subgraph.tables(9)),
                     min_parser_version=root.string(7) or "")
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return info, files

"""Read TensorFlow checkpoints (tensor bundle V2) without TensorFlow.

A checkpoint is `<prefix>.index`, a LevelDB-format table mapping each variable name to a
`BundleEntryProto` (dtype, shape, shard, offset, size), and `<prefix>.data-00000-of-00001`, the raw
little-endian tensor bytes. This reads both with the standard library and NumPy, so the musicnn
weights in the musicnn wheel can be converted once, with no TensorFlow at run time.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import numpy.typing as npt

from warehouse.errors import ModelNotFound

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48
_BLOCK_TRAILER = 5  # 1 byte compression type + 4 bytes crc32c
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 10: np.bool_}


def read_checkpoint(prefix: str | Path) -> dict[str, npt.NDArray]:
    """Every tensor of the checkpoint at `prefix` (the path without `.index`)."""
    index_path = Path(f"{prefix}.index")
    data_path = Path(f"{prefix}.data-00000-of-00001")
    for path in (index_path, data_path):
        if not path.is_file():
            raise ModelNotFound(f"TensorFlow checkpoint file {path} is missing; expected {index_path.name} and {data_path.name}")
    index = index_path.read_bytes()
    data = data_path.read_bytes()
    tensors = {}
    for name, entry in _table_entries(index):
        if not name:  # the empty key holds the BundleHeaderProto
            continue
        fields = _parse_proto(entry)
        dtype = _DTYPES[fields.get(1, [1])[0]]
        shape = [_parse_proto(dim).get(1, [0])[0] for dim in _parse_proto(fields[2][0]).get(2, [])] if 2 in fields else []
        offset, size = fields.get(4, [0])[0], fields.get(5, [0])[0]
        tensors[name.decode()] = np.frombuffer(data, dtype=dtype, count=size // np.dtype(dtype).itemsize, offset=offset).reshape(shape).copy()
    return tensors


def _table_entries(table: bytes) -> list[tuple[bytes, bytes]]:
    footer = table[-_FOOTER_SIZE:]
    (magic,) = struct.unpack("<Q", footer[-8:])
    if magic != _TABLE_MAGIC:
        raise ValueError("not a TensorFlow checkpoint index (bad table magic)")
    _, pos = _varint(footer, 0)  # metaindex offset
    _, pos = _varint(footer, pos)  # metaindex size
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    entries = []
    for _, handle in _block_entries(_block(table, index_offset, index_size)):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        entries.extend(_block_entries(_block(table, offset, size)))
    return entries


def _block(table: bytes, offset: int, size: int) -> bytes:
    if table[offset + size] != 0:
        raise ValueError("compressed checkpoint index blocks are not supported")
    return table[offset : offset + size]


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    (restarts,) = struct.unpack("<I", block[-4:])
    end = len(block) - 4 - 4 * restarts
    entries, key, pos = [], b"", 0
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _parse_proto(buf: bytes) -> dict[int, list]:
    """A protobuf message as {field number: [values]}: varints as int, length-delimited as bytes."""
    fields: dict[int, list] = {}
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack("<I", buf[pos : pos + 4])[0], pos + 4
        elif wire == 1:
            value, pos = struct.unpack("<Q", buf[pos : pos + 8])[0], pos + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields

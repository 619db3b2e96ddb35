"""The native row maker (consumers/native/archive_rows.c) through ctypes: apache_combined
records become the raw and fields columns at 0.8-0.9 µs a record instead of 6-7 µs in Python.

It writes a row only where its answer is the Python way's by construction (the C file says
which records); it declines every other record, and columnar.py makes those rows in Python.
ctypes releases the GIL for the call. The library is found at METRICPIPE_ARCHIVE_NATIVE_LIB
(the consumer image sets it; `make native` builds it for the host); without it the archiver
makes every row in Python and says so at start.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

ABI = 1  # metricpipe_rows_abi() of the C file this binding speaks to
FIELDS_PER_RECORD = 192  # the fields column's own text (keys, braces, numbers) per record
MAX_COLUMN = 2**31 - 1  # a string column's int32 offsets


class NativeRowsError(RuntimeError):
    pass


@dataclass(frozen=True)
class NativeColumns:
    """raw and fields of each record (an empty string where declined) and which were made."""

    raw: pa.Array
    fields: pa.Array
    made: np.ndarray  # bool per record


class NativeRows:
    def __init__(self, path: Path) -> None:
        try:
            library = ctypes.CDLL(str(path))
        except OSError as error:
            raise NativeRowsError(
                f"cannot load the native row maker {path}: {error}; build it with "
                "'make native' or unset METRICPIPE_ARCHIVE_NATIVE_LIB"
            ) from error
        library.metricpipe_rows_abi.restype = ctypes.c_int64
        found = library.metricpipe_rows_abi()
        if found != ABI:
            raise NativeRowsError(f"{path} speaks ABI {found}, this archiver {ABI}: rebuild it")
        make = library.metricpipe_archive_rows
        make.restype = ctypes.c_int64
        make.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                         ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                         ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                         ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]  # fmt: skip
        self._make = make
        self.path = path

    def build_columns(self, values: pa.BinaryArray) -> NativeColumns | None:
        """The raw and fields columns of apache_combined records (nulls are declined); None
        when the columns would outgrow int32 offsets (the caller makes the rows in Python)."""
        count = len(values)
        values = _without_nulls(values)
        offsets = np.frombuffer(values.buffers()[1], np.int32, count + 1, values.offset * 4)
        start, end = int(offsets[0]), int(offsets[-1])
        data_buffer = values.buffers()[2]
        data = data_buffer.address + start if data_buffer is not None else 0
        relative = offsets - start if start else offsets
        size = end - start
        raw = pa.allocate_buffer(size, resizable=True)
        fields_cap = min(2 * size + FIELDS_PER_RECORD * count, MAX_COLUMN)
        fields = pa.allocate_buffer(fields_cap, resizable=True)
        raw_offsets = np.empty(count + 1, np.int32)
        fields_offsets = np.empty(count + 1, np.int32)
        scratch = np.empty(max(size, 1), np.uint8)
        made = np.zeros(count, np.uint8)
        written = self._make(
            data, relative.ctypes.data, count, raw.address, size, raw_offsets.ctypes.data,
            fields.address, fields_cap, fields_offsets.ctypes.data, scratch.ctypes.data,
            scratch.size, made.ctypes.data,
        )  # fmt: skip
        if written < 0:  # the fields of a huge batch reached MAX_COLUMN
            return None
        raw.resize(int(raw_offsets[-1]))
        fields.resize(int(fields_offsets[-1]))
        raw_column = pa.Array.from_buffers(
            pa.string(), count, [None, pa.py_buffer(raw_offsets), raw]
        )
        fields_column = pa.Array.from_buffers(
            pa.string(), count, [None, pa.py_buffer(fields_offsets), fields]
        )
        return NativeColumns(raw_column, fields_column, made.view(np.bool_))


def _without_nulls(values: pa.BinaryArray) -> pa.BinaryArray:
    """Nulls as empty values (the C side declines an empty value; a null's row is Python's)."""
    if values.null_count == 0:
        return values
    return values.fill_null(b"")


def load_native_rows(path: Path | None) -> NativeRows | None:
    """The row maker at path, None when no path is configured; a clear error when the path is
    configured but unusable (an archiver told to be fast should not quietly be slow)."""
    return None if path is None else NativeRows(path)

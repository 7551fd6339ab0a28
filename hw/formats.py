"""Sparse storage formats of a flattened conv weight matrix, with exact bit counts.

The matrix (METHOD.md, "Storage formats") has one row per filter and ``C_i * k * k`` columns;
column ``c * k * k + tap`` holds tap ``tap`` (row-major in the kernel) of input channel ``c``
(:func:`flatten_weights`). Each encoder returns an immutable object that holds the arrays a
memory would hold, reports its exact size in bits under a :class:`BitWidths`
(``.bits(widths)``) and decodes back to the dense matrix (``.decode()``).

Which entries are stored is the *support*: by default the non-zero entries, or an explicit
boolean ``mask`` (pre-defined sparsity: a trained or quantized weight may be exactly zero inside
its support and must still be stored, or the periodicity would break).

Bit counts follow METHOD.md's table entry by entry:

=======  =========================================================================
format   stored arrays (entries x width)
=======  =========================================================================
Dense    every entry x b_v
COO      nnz values x b_v, nnz row indices x b_r, nnz column indices x b_c
CSR      nnz values x b_v, nnz column indices x b_c, H_F + 1 row pointers x b_i
CSC      nnz values x b_v, nnz row indices x b_r, W_F + 1 column pointers x b_i
CSR_P    nnz values x b_v, column indices of the first P rows x b_c,
         H_F + 1 row pointers x b_i, the period once x b_P
CSC_P    nnz values x b_v, row indices of the first P columns x b_r,
         W_F + 1 column pointers x b_i, the period once x b_P
=======  =========================================================================

For CSR_P, rows ``i`` and ``i + P`` must have identical column-index sets (rotation makes
filters ``f`` and ``f + P`` share supports); for CSC_P columns ``j`` and ``j + P`` must have
identical row-index sets, where P counts columns (``P * k * k`` for a rotated conv layer).
When the matrix has fewer than P rows (columns) every row's (column's) indices are stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BitWidths", "FORMATS", "Encoded", "DenseEncoded", "COO", "CSR", "CSC", "CSRP", "CSCP",
           "flatten_weights", "encode", "encode_dense", "encode_coo", "encode_csr", "encode_csc",
           "encode_csr_p", "encode_csc_p"]

#: Format names in report order (METHOD.md's table).
FORMATS = ("Dense", "COO", "CSR", "CSC", "CSR_P", "CSC_P")


@dataclass(frozen=True)
class BitWidths:
    """Bits per stored entry of each array kind (METHOD.md's notation).

    Parameters
    ----------
    b_v : int
        Bits per weight value.
    b_r, b_c : int
        Bits per row index and per column index.
    b_i : int
        Bits per index-pointer entry (CSR row pointers, CSC column pointers).
    b_P : int
        Bits to store the period (once per matrix, CSR_P and CSC_P only).

    Members
    -------
    b_v, b_r, b_c, b_i, b_P : int
        As given, all validated positive integers.

    Notes
    -----
    The widths are a cost model: they are not checked against the matrix size (the paper's own
    example stores 32-row tiles with 4-bit row indices).
    """

    b_v: int = 8
    b_r: int = 4
    b_c: int = 4
    b_i: int = 7
    b_P: int = 6

    def __post_init__(self):
        for name in ("b_v", "b_r", "b_c", "b_i", "b_P"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"Bit width {name} must be a positive integer, not {v!r}")
            object.__setattr__(self, name, int(v))

    def as_dict(self) -> dict:
        """``{"b_v": .., "b_r": .., "b_c": .., "b_i": .., "b_P": ..}``."""
        return {n: getattr(self, n) for n in ("b_v", "b_r", "b_c", "b_i", "b_P")}


def flatten_weights(weights: np.ndarray) -> np.ndarray:
    """``[C_o, C_i, k, k]`` weights (or masks) -> ``[C_o, C_i * k * k]``.

    Column ``c * k * k + tap`` holds tap ``tap`` (row-major) of input channel ``c``.
    """
    w = np.asarray(weights)
    if w.ndim != 4 or w.shape[2] != w.shape[3]:
        raise ValueError(f"Conv weights must have shape [C_o, C_i, k, k], not {w.shape}")
    return w.reshape(w.shape[0], -1)


def _frozen(a, dtype=None) -> np.ndarray:
    a = np.array(a, dtype=dtype, copy=True)
    a.flags.writeable = False
    return a


def _support(matrix, mask, fmt: str):
    """Validate ``matrix`` (2D) and ``mask``; return (matrix, boolean support)."""
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] < 1:
        raise ValueError(f"{fmt}: the matrix must be 2D and non-empty, not of shape {m.shape}")
    if mask is None:
        return m, m != 0
    s = np.asarray(mask)
    if s.shape != m.shape or s.dtype != bool:
        raise ValueError(f"{fmt}: the mask must be a boolean array of the matrix's shape "
                         f"{m.shape}, not {s.dtype} {s.shape}")
    outside = np.argwhere((m != 0) & ~s)
    if len(outside):
        r, c = outside[0]
        raise ValueError(f"{fmt}: entry ({r}, {c}) = {m[r, c].item()!r} is non-zero outside "
                         f"the mask")
    return m, s


def _check_period(period, fmt: str) -> int:
    if isinstance(period, bool) or not isinstance(period, (int, np.integer)) or period < 1:
        raise ValueError(f"{fmt}: the period must be a positive integer, not {period!r}")
    return int(period)


class Encoded:
    """Base of the encoded matrices.

    Members
    -------
    format : str
        The format's name (one of :data:`FORMATS`).
    shape : tuple of int
        ``(H_F, W_F)`` of the encoded matrix.
    nnz : int
        Stored values (the support's size).
    dtype : numpy.dtype
        Dtype of the stored values.
    """

    format = ""

    def __init__(self, shape, values):
        self._shape = (int(shape[0]), int(shape[1]))
        self._values = _frozen(values)

    @property
    def shape(self) -> tuple:
        return self._shape

    @property
    def values(self) -> np.ndarray:
        """The stored values, in the format's storage order (read-only)."""
        return self._values

    @property
    def nnz(self) -> int:
        return int(self._values.size)

    @property
    def dtype(self) -> np.dtype:
        return self._values.dtype

    def counts(self) -> dict:
        """Stored entries per width: ``{"b_v": n, "b_r": n, "b_c": n, "b_i": n, "b_P": n}``."""
        raise NotImplementedError

    def bits(self, widths: BitWidths) -> int:
        """Exact storage size in bits under ``widths``."""
        if not isinstance(widths, BitWidths):
            raise TypeError(f"widths must be a BitWidths, not {type(widths).__name__}")
        return sum(n * getattr(widths, w) for w, n in self.counts().items())

    def decode(self) -> np.ndarray:
        """The dense matrix, exactly as encoded."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.shape[0]}x{self.shape[1]} nnz={self.nnz}>"


def _counts(b_v=0, b_r=0, b_c=0, b_i=0, b_P=0) -> dict:
    return {"b_v": int(b_v), "b_r": int(b_r), "b_c": int(b_c), "b_i": int(b_i), "b_P": int(b_P)}


class DenseEncoded(Encoded):
    """Every entry stored, row-major."""

    format = "Dense"

    def counts(self) -> dict:
        return _counts(b_v=self.nnz)

    def decode(self) -> np.ndarray:
        return self._values.reshape(self._shape).copy()


class COO(Encoded):
    """Coordinate list: one (row, column, value) triple per stored entry, row-major order.

    Members
    -------
    rows, cols : numpy.ndarray
        Row and column index of each stored value.
    """

    format = "COO"

    def __init__(self, shape, values, rows, cols):
        super().__init__(shape, values)
        self._rows = _frozen(rows, np.int64)
        self._cols = _frozen(cols, np.int64)

    @property
    def rows(self) -> np.ndarray:
        return self._rows

    @property
    def cols(self) -> np.ndarray:
        return self._cols

    def counts(self) -> dict:
        return _counts(b_v=self.nnz, b_r=self.nnz, b_c=self.nnz)

    def decode(self) -> np.ndarray:
        out = np.zeros(self._shape, dtype=self.dtype)
        out[self._rows, self._cols] = self._values
        return out


class _Compressed(Encoded):
    """Shared by CSR and CSC: values and minor indices per major line, plus a pointer vector."""

    _major_axis = 0

    def __init__(self, shape, values, indices, ptr):
        super().__init__(shape, values)
        self._indices = _frozen(indices, np.int64)
        self._ptr = _frozen(ptr, np.int64)

    @property
    def ptr(self) -> np.ndarray:
        """Pointer vector: line ``i``'s values are ``values[ptr[i]:ptr[i + 1]]``."""
        return self._ptr

    def _line_indices(self, i: int) -> np.ndarray:
        return self._indices[self._ptr[i]:self._ptr[i + 1]]

    def decode(self) -> np.ndarray:
        out = np.zeros(self._shape, dtype=self.dtype)
        view = out if self._major_axis == 0 else out.T
        for i in range(view.shape[0]):
            view[i, self._line_indices(i)] = self._values[self._ptr[i]:self._ptr[i + 1]]
        return out


class CSR(_Compressed):
    """Compressed sparse rows.

    Members
    -------
    col_idx : numpy.ndarray
        Column index of each stored value.
    row_ptr : numpy.ndarray
        ``H_F + 1`` entries; row ``i`` is ``values[row_ptr[i]:row_ptr[i + 1]]``.
    """

    format = "CSR"
    _major_axis = 0

    @property
    def col_idx(self) -> np.ndarray:
        return self._indices

    @property
    def row_ptr(self) -> np.ndarray:
        return self._ptr

    def counts(self) -> dict:
        return _counts(b_v=self.nnz, b_c=self._indices.size, b_i=self._ptr.size)


class CSC(_Compressed):
    """Compressed sparse columns.

    Members
    -------
    row_idx : numpy.ndarray
        Row index of each stored value (column-major order).
    col_ptr : numpy.ndarray
        ``W_F + 1`` entries; column ``j`` is ``values[col_ptr[j]:col_ptr[j + 1]]``.
    """

    format = "CSC"
    _major_axis = 1

    @property
    def row_idx(self) -> np.ndarray:
        return self._indices

    @property
    def col_ptr(self) -> np.ndarray:
        return self._ptr

    def counts(self) -> dict:
        return _counts(b_v=self.nnz, b_r=self._indices.size, b_i=self._ptr.size)


class _Periodic(_Compressed):
    """CSR/CSC whose minor-index vector is stored only for the first ``period`` lines.

    Line ``i`` reuses the indices of line ``i mod period``; because the stored indices are the
    first lines' indices in storage order, line ``i < period`` finds them at ``ptr[i]:ptr[i + 1]``.
    """

    def __init__(self, shape, values, indices, ptr, period):
        super().__init__(shape, values, indices, ptr)
        self._period = int(period)

    @property
    def period(self) -> int:
        """P, in lines of the major axis (rows for CSR_P, columns for CSC_P)."""
        return self._period

    def _line_indices(self, i: int) -> np.ndarray:
        j = i % self._period
        return self._indices[self._ptr[j]:self._ptr[j + 1]]


class CSRP(_Periodic):
    """CSR with the column-index vector stored for the first P rows only (CSR_P).

    Members
    -------
    col_idx : numpy.ndarray
        Column indices of rows ``0 .. min(P, H_F) - 1``, concatenated.
    row_ptr : numpy.ndarray
        ``H_F + 1`` entries into ``values``.
    period : int
        P; row ``i`` uses the column indices of row ``i mod P``.
    """

    format = "CSR_P"
    _major_axis = 0

    @property
    def col_idx(self) -> np.ndarray:
        return self._indices

    @property
    def row_ptr(self) -> np.ndarray:
        return self._ptr

    def counts(self) -> dict:
        return _counts(b_v=self.nnz, b_c=self._indices.size, b_i=self._ptr.size, b_P=1)


class CSCP(_Periodic):
    """CSC with the row-index vector stored for the first P columns only (CSC_P).

    Members
    -------
    row_idx : numpy.ndarray
        Row indices of columns ``0 .. min(P, W_F) - 1``, concatenated.
    col_ptr : numpy.ndarray
        ``W_F + 1`` entries into ``values``.
    period : int
        P in columns (``P * k * k`` for a rotated conv layer); column ``j`` uses the row indices
        of column ``j mod P``.
    """

    format = "CSC_P"
    _major_axis = 1

    @property
    def row_idx(self) -> np.ndarray:
        return self._indices

    @property
    def col_ptr(self) -> np.ndarray:
        return self._ptr

    def counts(self) -> dict:
        return _counts(b_v=self.nnz, b_r=self._indices.size, b_i=self._ptr.size, b_P=1)


def _compress(m, s):
    """Values, minor indices and pointer vector of ``m`` along axis 0 (rows)."""
    rows, cols = np.nonzero(s)
    ptr = np.zeros(m.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=m.shape[0]), out=ptr[1:])
    return m[rows, cols], cols, ptr


def _check_line_period(s, period: int, fmt: str, line: str, index: str, other: str):
    """Raise if line ``i`` of ``s`` (axis 0) has a different support from line ``i mod period``."""
    n = s.shape[0]
    if n <= period:
        return
    ref = s[np.arange(n) % period]
    bad = np.nonzero((s != ref).any(axis=1))[0]
    if len(bad):
        i = int(bad[0])
        where = np.nonzero(s[i] != s[i % period])[0]
        shown = ", ".join(str(int(x)) for x in where[:8]) + (", ..." if len(where) > 8 else "")
        raise ValueError(f"{fmt} with period {period}: {line} {i} does not repeat {line} "
                         f"{i % period} (it should: {line}s {i % period} and {i} are a period "
                         f"apart); their {index} differ at {other} {shown}")


def encode_dense(matrix, *, mask=None) -> DenseEncoded:
    """Every entry, row-major (``mask`` is only checked: nothing outside it may be non-zero)."""
    m, _ = _support(matrix, mask, "Dense")
    return DenseEncoded(m.shape, m.reshape(-1))


def encode_coo(matrix, *, mask=None) -> COO:
    """COO of ``matrix``; ``mask`` (bool, same shape) is the support, default ``matrix != 0``."""
    m, s = _support(matrix, mask, "COO")
    rows, cols = np.nonzero(s)
    return COO(m.shape, m[rows, cols], rows, cols)


def encode_csr(matrix, *, mask=None) -> CSR:
    """CSR of ``matrix``; ``mask`` as for :func:`encode_coo`."""
    m, s = _support(matrix, mask, "CSR")
    values, cols, ptr = _compress(m, s)
    return CSR(m.shape, values, cols, ptr)


def encode_csc(matrix, *, mask=None) -> CSC:
    """CSC of ``matrix``; ``mask`` as for :func:`encode_coo`."""
    m, s = _support(matrix, mask, "CSC")
    values, rows, ptr = _compress(m.T, s.T)
    return CSC(m.shape, values, rows, ptr)


def encode_csr_p(matrix, *, period, mask=None) -> CSRP:
    """CSR_P of ``matrix`` with row period ``period``.

    Raises
    ------
    ValueError
        If some row's column-index set differs from that of the row it should repeat
        (row ``i mod period``); the message names the first such row.
    """
    p = _check_period(period, "CSR_P")
    m, s = _support(matrix, mask, "CSR_P")
    _check_line_period(s, p, "CSR_P", "row", "column indices", "column")
    values, cols, ptr = _compress(m, s)
    return CSRP(m.shape, values, cols[:ptr[min(p, m.shape[0])]], ptr, p)


def encode_csc_p(matrix, *, period, mask=None) -> CSCP:
    """CSC_P of ``matrix`` with column period ``period`` (``P * k * k`` columns for a conv layer).

    Raises
    ------
    ValueError
        If some column's row-index set differs from that of the column it should repeat
        (column ``j mod period``); the message names the first such column.
    """
    p = _check_period(period, "CSC_P")
    m, s = _support(matrix, mask, "CSC_P")
    _check_line_period(s.T, p, "CSC_P", "column", "row indices", "row")
    values, rows, ptr = _compress(m.T, s.T)
    return CSCP(m.shape, values, rows[:ptr[min(p, m.shape[1])]], ptr, p)


_ENCODERS = {"Dense": encode_dense, "COO": encode_coo, "CSR": encode_csr, "CSC": encode_csc,
             "CSR_P": encode_csr_p, "CSC_P": encode_csc_p}


def encode(fmt: str, matrix, *, period=None, mask=None) -> Encoded:
    """Encode ``matrix`` in format ``fmt`` (one of :data:`FORMATS`).

    ``period`` is required by CSR_P and CSC_P and refused by the others.
    """
    if fmt not in _ENCODERS:
        raise ValueError(f"Unknown storage format {fmt!r}; known: {', '.join(FORMATS)}")
    if fmt in ("CSR_P", "CSC_P"):
        if period is None:
            raise ValueError(f"{fmt} needs a period")
        return _ENCODERS[fmt](matrix, period=period, mask=mask)
    if period is not None:
        raise ValueError(f"{fmt} has no period; pass period only for CSR_P or CSC_P")
    return _ENCODERS[fmt](matrix, mask=mask)

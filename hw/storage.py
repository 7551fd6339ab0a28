"""Analytic storage cost of the sparse formats, break-even densities and network storage.

The formulas are METHOD.md's table for an ``H_F x W_F`` matrix of density ``rho``:

=======  ===================================================================
format   bits
=======  ===================================================================
Dense    H_F W_F b_v
COO      rho H_F W_F (b_v + b_r + b_c)
CSR      rho H_F W_F (b_v + b_c) + (H_F + 1) b_i
CSC      rho H_F W_F (b_v + b_r) + (W_F + 1) b_i
CSR_P    rho H_F W_F b_v + rho P W_F b_c + (H_F + 1) b_i + b_P
CSC_P    rho H_F W_F b_v + rho P H_F b_r + (W_F + 1) b_i + b_P
=======  ===================================================================

with one extension: P is clipped to the matrix (``min(P, H_F)`` for CSR_P, ``min(P, W_F)`` for
CSC_P), because a matrix with fewer rows than the period stores every row's indices once; for
``P <= H_F`` (``W_F``) it is the table's formula unchanged. For CSC_P, P counts columns
(``P * k * k`` for a rotated conv layer).

Agreement with the real encoders of :mod:`hw.formats`: with ``rho = nnz / (H_F W_F)`` Dense,
COO, CSR and CSC agree exactly for every matrix. CSR_P agrees exactly when its first
``min(P, H_F)`` rows hold ``rho min(P, H_F) W_F`` non-zeros, e.g. when every row has the same
count (PS/PSD layers with ``C_i`` a multiple of P); otherwise the formula uses the average row
where the encoder stores the actual first P rows. CSC_P likewise for its first columns (every
column period holds the same count when ``W_F`` is a multiple of the column period).

Formulas return exact :class:`fractions.Fraction` (or ``int``) values for exact ``rho`` (int or
Fraction) and floats for float ``rho``.
"""

from __future__ import annotations

from fractions import Fraction
from numbers import Rational, Real

import numpy as np

from .formats import FORMATS, BitWidths
from .networks import Conv, layer_masks, parse_model

__all__ = ["PAPER_WIDTHS", "PAPER_TILE", "SPARSE_FORMATS", "METHODS", "format_bits",
           "storage_coefficients", "break_even", "break_even_all", "layer_periods",
           "tile_storage_bits", "network_storage_bits", "network_storage"]

#: The paper's example bit widths: b_v = 8, b_c = b_r = 4, b_i = 7, b_P = 6.
PAPER_WIDTHS = BitWidths(b_v=8, b_r=4, b_c=4, b_i=7, b_P=6)
#: The paper's processing-element-sized tile: 32 rows x 12 columns.
PAPER_TILE = (32, 12)
#: The formats compared against dense.
SPARSE_FORMATS = FORMATS[1:]
#: How :func:`network_storage` counts a tile: METHOD.md's formula or the real encoders' count.
METHODS = ("formula", "exact")


def _pos_int(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, not {v!r}")
    return int(v)


def _check_widths(widths):
    if not isinstance(widths, BitWidths):
        raise TypeError(f"widths must be a BitWidths, not {type(widths).__name__}")
    return widths


def storage_coefficients(fmt: str, *, rows: int, cols: int, widths: BitWidths,
                         period: int | None = None) -> tuple:
    """``(a, b)`` with ``bits = a * rho + b`` for format ``fmt`` (every formula is linear in rho).

    ``period`` is required for CSR_P (rows) and CSC_P (columns) and clipped to the matrix.
    """
    rows, cols = _pos_int("rows", rows), _pos_int("cols", cols)
    w = _check_widths(widths)
    if fmt not in FORMATS:
        raise ValueError(f"Unknown storage format {fmt!r}; known: {', '.join(FORMATS)}")
    n = rows * cols
    if fmt in ("CSR_P", "CSC_P"):
        if period is None:
            raise ValueError(f"{fmt} needs a period")
        period = _pos_int(f"{fmt} period", period)
    if fmt == "Dense":
        return 0, n * w.b_v
    if fmt == "COO":
        return n * (w.b_v + w.b_r + w.b_c), 0
    if fmt == "CSR":
        return n * (w.b_v + w.b_c), (rows + 1) * w.b_i
    if fmt == "CSC":
        return n * (w.b_v + w.b_r), (cols + 1) * w.b_i
    if fmt == "CSR_P":
        return n * w.b_v + min(period, rows) * cols * w.b_c, (rows + 1) * w.b_i + w.b_P
    return n * w.b_v + min(period, cols) * rows * w.b_r, (cols + 1) * w.b_i + w.b_P


def format_bits(fmt: str, *, rows: int, cols: int, rho, widths: BitWidths,
                period: int | None = None):
    """Bits of a ``rows x cols`` matrix of density ``rho`` in format ``fmt`` (METHOD.md's formula).

    Parameters
    ----------
    fmt : str
        One of :data:`hw.formats.FORMATS`.
    rows, cols : int
        ``H_F`` and ``W_F``.
    rho : int, Fraction or float
        Density in [0, 1]; exact inputs give exact results.
    widths : BitWidths
    period : int, optional
        P for CSR_P (in rows) or CSC_P (in columns); ignored by the other formats.
    """
    if isinstance(rho, bool) or not isinstance(rho, Real) or not 0 <= rho <= 1:
        raise ValueError(f"Density rho must be a number in [0, 1], not {rho!r}")
    a, b = storage_coefficients(fmt, rows=rows, cols=cols, widths=widths, period=period)
    if isinstance(rho, Rational):
        return Fraction(rho) * a + b if a else b
    return float(rho) * a + b


def break_even(fmt: str, *, rows: int, cols: int, widths: BitWidths,
               period: int | None = None) -> Fraction:
    """The largest density at which ``fmt`` needs no more bits than dense, exactly.

    Solved from the linear formula: ``rho* = (dense - b) / a``, clipped to [0, 1]. A result of 0
    also covers formats that exceed dense even when empty (their overhead alone is larger).
    """
    if fmt == "Dense":
        raise ValueError("Dense has no break-even density against itself")
    a, b = storage_coefficients(fmt, rows=rows, cols=cols, widths=widths, period=period)
    dense = rows * cols * widths.b_v
    return min(Fraction(1), max(Fraction(0), Fraction(dense - b, a)))


def break_even_all(*, rows: int, cols: int, widths: BitWidths, period: int,
                   col_period: int | None = None) -> dict:
    """``{format: break_even}`` for every sparse format.

    ``col_period`` is CSC_P's period in columns; by default ``period``, as in METHOD.md's table.
    """
    col_period = period if col_period is None else col_period
    return {f: break_even(f, rows=rows, cols=cols, widths=widths,
                          period={"CSR_P": period, "CSC_P": col_period}.get(f))
            for f in SPARSE_FORMATS}


def layer_periods(conv: Conv, variant) -> tuple:
    """``(row period, column period)`` of a conv layer's flattened matrix under ``variant``.

    Periodic sparse layers: ``(P, P * k * k)`` (rotation: filters f and f + P share supports,
    and input channels c and c + P use the same slot). Dense layers (the first conv, 1x1 and
    depthwise convs, or the dense baseline): ``(1, 1)``, every row and column being full.
    Non-periodic pSC layers: ``(None, None)``: CSR_P and CSC_P then store every row's
    (column's) indices, i.e. cost CSR (CSC) plus ``b_P``.
    """
    if not conv.sparse or variant.is_dense:
        return 1, 1
    if variant.is_periodic:
        return variant.period, variant.period * conv.k * conv.k
    return None, None


def _tile_grid(mask, tile):
    """Per-tile row/column sizes and a zero-padded ``[n_r, R, n_c, C]`` view of ``mask``."""
    R, C = tile
    H, W = mask.shape
    n_r, n_c = -(-H // R), -(-W // C)
    padded = np.zeros((n_r * R, n_c * C), dtype=bool)
    padded[:H, :W] = mask
    r = np.minimum(R, H - R * np.arange(n_r))
    c = np.minimum(C, W - C * np.arange(n_c))
    return padded.reshape(n_r, R, n_c, C), r, c


def tile_storage_bits(mask, *, tile=PAPER_TILE, widths: BitWidths = PAPER_WIDTHS,
                      row_period: int | None = None, col_period: int | None = None,
                      method: str = "formula") -> dict:
    """Bits ``{format: bits}`` of one matrix of support ``mask``, stored as ``R x C`` tiles.

    Tiles are cut from the top-left corner; the last tile row and column hold the remainder
    (smaller tiles, each counted at its own size, with its own pointers and period).
    ``method="formula"`` applies METHOD.md's formula to every tile at the tile's own density
    (exact Fractions); ``method="exact"`` counts what the encoders of :mod:`hw.formats` store
    (integers). A period of None means no periodicity (every line's indices are stored).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != bool or mask.size == 0:
        raise ValueError(f"mask must be a non-empty 2D boolean array, not {mask.dtype} "
                         f"{mask.shape}")
    if len(tile) != 2:
        raise ValueError(f"tile must be (rows, cols), not {tile!r}")
    R, C = _pos_int("tile rows", tile[0]), _pos_int("tile cols", tile[1])
    w = _check_widths(widths)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    t, r, c = _tile_grid(mask, (R, C))
    # No periodicity: the whole tile is one period.
    pr = R if row_period is None else min(_pos_int("row_period", row_period), R)
    pc = C if col_period is None else min(_pos_int("col_period", col_period), C)
    nnz = t.sum(axis=(1, 3), dtype=np.int64)
    out = {}
    if method == "exact":
        rr, cc = r[:, None], c[None, :]
        # Padding is all zero, so the first pr rows of a padded tile are its first min(pr, r) rows.
        head_rows = t[:, :pr].sum(axis=(1, 3), dtype=np.int64)
        head_cols = t[..., :pc].sum(axis=(1, 3), dtype=np.int64)
        per_tile = {
            "Dense": np.broadcast_to(rr * cc * w.b_v, nnz.shape),
            "COO": nnz * (w.b_v + w.b_r + w.b_c),
            "CSR": nnz * (w.b_v + w.b_c) + (rr + 1) * w.b_i,
            "CSC": nnz * (w.b_v + w.b_r) + (cc + 1) * w.b_i,
            "CSR_P": nnz * w.b_v + head_rows * w.b_c + (rr + 1) * w.b_i + w.b_P,
            "CSC_P": nnz * w.b_v + head_cols * w.b_r + (cc + 1) * w.b_i + w.b_P,
        }
        return {f: int(v.sum()) for f, v in per_tile.items()}
    # The formulas are linear in rho, so a group of equal-sized tiles costs as many tiles at the
    # group's mean density: at most four groups (interior, right edge, bottom edge, corner).
    for f in FORMATS:
        out[f] = 0
    for rs in np.unique(r):
        for cs in np.unique(c):
            sel = nnz[np.ix_(r == rs, c == cs)]
            count, rho = sel.size, Fraction(int(sel.sum()), sel.size * int(rs) * int(cs))
            for f in FORMATS:
                out[f] += count * format_bits(f, rows=int(rs), cols=int(cs), rho=rho, widths=w,
                                              period={"CSR_P": pr, "CSC_P": pc}.get(f))
    return out


def network_storage_bits(model: str, *, tile=PAPER_TILE, widths: BitWidths = PAPER_WIDTHS,
                         seed: int = 0, mode: str = "random", method: str = "formula",
                         dataset: str | None = None) -> dict:
    """``{conv name: {format: bits}}`` for every conv layer of ``model`` (e.g. ``"VGG16_PSD2_P8"``).

    Every conv layer's weights count, the dense first conv and the 1x1 and depthwise convs
    included (they are stored too); FC layers are not counted (never sparsified, and not part
    of the engine's conv weight stream). Masks come from :func:`hw.networks.layer_masks` with
    ``seed`` and ``mode``; periods from :func:`layer_periods`.
    """
    network, variant = parse_model(model, dataset)
    masks = layer_masks(network, variant, seed=seed, mode=mode)
    out = {}
    for conv in network.convs:
        rp, cp = layer_periods(conv, variant)
        m = masks[conv.name]
        out[conv.name] = tile_storage_bits(m.reshape(m.shape[0], -1), tile=tile, widths=widths,
                                           row_period=rp, col_period=cp, method=method)
    return out


def network_storage(model: str, **kwargs) -> dict:
    """Conv weight storage of ``model`` in each format relative to dense: ``{"Dense": 1.0, ...}``.

    Keyword arguments are those of :func:`network_storage_bits`.
    """
    per_layer = network_storage_bits(model, **kwargs)
    totals = {f: sum(layer[f] for layer in per_layer.values()) for f in FORMATS}
    return {f: float(Fraction(totals[f]) / totals["Dense"]) for f in FORMATS}

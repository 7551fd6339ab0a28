"""The bit-exact integer reference of the engine: what every layer computes, in numpy.

It is the golden model the gateware, host/ and models/ are checked against, and it computes
from the same data the engine holds: the layer's CSR_P image (:class:`hw.csrp.ConvCSRP`: period
table plus data vectors), never a dense weight tensor. For each output pixel and filter ``f``::

    acc = bias[f] + sum over (c, tap) in filter f's tap sequence of  w * x_pad[c, s*oy + dy, s*ox + dx]
    y   = requantize(acc, M[f], s[f], relu)          # hw.quant: round half up, clamp to int8
    y   = maxpool2x2(y)                              # optional, stride 2, after requantization

with ``(dy, dx) = divmod(tap, k)``, zero padding ``k // 2``, stride 1 or 2, int8 in and out and a
signed 32-bit accumulator. An FC layer is a 1x1 conv on a 1x1 input whose ``c_in`` channels are
the previous output flattened in C, H, W order.

A layer whose accumulator could overflow 32 bits, for any int8 input, is refused before it runs
(:func:`hw.quant.check_accumulator`); results are checked against the int32 range again after.

Speed: filters of one class ``r = f mod P`` share their tap sequence (rotation), so each class is
one matrix product ``W_r [filters, nnz_r] @ X_r [nnz_r, pixels]`` over all output pixels, with
``X_r`` gathered from the padded input by the class's ``(c, tap)`` list. The product runs in
floating-point BLAS, exactly: every product is an integer of magnitude at most ``2**14`` and every
partial sum at most ``2**14 * nnz``, so all are integers the format represents exactly whatever the
summation order (float32 while ``2**14 * nnz <= 2**24``, i.e. ``nnz <= 1024``; float64 above).
"""

from __future__ import annotations

import numpy as np

from .csrp import ConvCSRP
from .quant import (ACT_MIN, ACT_MAX, ACC_BITS, MULTIPLIER_MIN, MULTIPLIER_MAX, SHIFT_MIN, SHIFT_MAX,
                    acc_limits, check_accumulator, requantize)

__all__ = ["KINDS", "validate_layer", "conv_accumulate", "maxpool2x2", "output_stage", "run_layer",
           "run_model"]

#: Layer kinds the engine runs.
KINDS = ("conv", "fc")

# Largest im2col block gathered at once (elements): bounds memory for large batches.
_BLOCK_ELEMS = 1 << 23
# Float sums stay exact while every partial sum (at most 2**14 per product) fits the mantissa.
_MAX_EXACT_NNZ = 1 << 38            # float64: 2**14 * nnz <= 2**52
_MAX_FLOAT32_NNZ = 1 << 10          # float32: 2**14 * nnz <= 2**24


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _int_array(layer, field, value, shape, lo, hi):
    arr = np.asarray(value)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"Layer {layer!r}: {field} must hold integers, not dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"Layer {layer!r}: {field} must have shape {list(shape)}, not {list(arr.shape)}")
    if arr.size and (arr.min() < lo or arr.max() > hi):
        i = int(np.argmax((arr < lo) | (arr > hi)))
        raise ValueError(f"Layer {layer!r}: {field}[{i}] = {int(arr.reshape(-1)[i])} is outside the "
                         f"allowed range {lo}..{hi}")
    return arr.astype(np.int64)


def validate_layer(qlayer) -> ConvCSRP:
    """Check a :class:`hw.qmodel.QLayer` against what the engine runs; return its CSR_P image.

    Checked, with errors that name the layer, the field, the bad value and the allowed range:
    ``kind`` in :data:`KINDS`; ``k`` in {1, 3}; ``stride`` in {1, 2}; positive sizes; FC layers
    1x1 with stride 1, a 1 x 1 input and no pooling; ``relu`` and ``pool`` booleans; a pooled
    output at least 1 x 1; ``weight`` ``[c_out, c_in, k, k]`` integers in int8 range and zero
    outside the period table's pattern; ``bias`` ``[c_out]`` in int32 range; ``multiplier``
    ``[c_out]`` in ``MULTIPLIER_MIN..MULTIPLIER_MAX``; ``shift`` ``[c_out]`` in
    ``SHIFT_MIN..SHIFT_MAX``; and that no int8 input can overflow the 32-bit accumulator.
    """
    name = getattr(qlayer, "name", "?")
    if qlayer.kind not in KINDS:
        raise ValueError(f"Layer {name!r}: kind must be one of {', '.join(KINDS)}, not {qlayer.kind!r}")
    for field in ("c_in", "c_out", "h_in", "w_in"):
        v = getattr(qlayer, field)
        if not _is_int(v) or v < 1:
            raise ValueError(f"Layer {name!r}: {field} must be a positive integer, not {v!r}")
    if not _is_int(qlayer.k) or qlayer.k not in (1, 3):
        raise ValueError(f"Layer {name!r}: k must be 1 or 3, not {qlayer.k!r}")
    if not _is_int(qlayer.stride) or qlayer.stride not in (1, 2):
        raise ValueError(f"Layer {name!r}: stride must be 1 or 2, not {qlayer.stride!r}")
    for field in ("relu", "pool"):
        if not isinstance(getattr(qlayer, field), (bool, np.bool_)):
            raise ValueError(f"Layer {name!r}: {field} must be a bool, not {getattr(qlayer, field)!r}")
    if qlayer.kind == "fc":
        for field, want in (("k", 1), ("stride", 1), ("h_in", 1), ("w_in", 1), ("pool", False)):
            if getattr(qlayer, field) != want:
                raise ValueError(f"Layer {name!r}: an fc layer needs {field} = {want}, not "
                                 f"{getattr(qlayer, field)!r} (it is a 1x1 conv on its flattened input)")
    h_conv, w_conv = _conv_out(qlayer)
    if qlayer.pool and (h_conv < 2 or w_conv < 2):
        raise ValueError(f"Layer {name!r}: pool needs a conv output of at least 2 x 2, not "
                         f"{h_conv} x {w_conv}")
    c_out = qlayer.c_out
    _int_array(name, "bias", qlayer.bias, (c_out,), *acc_limits(ACC_BITS))
    _int_array(name, "multiplier", qlayer.multiplier, (c_out,), MULTIPLIER_MIN, MULTIPLIER_MAX)
    _int_array(name, "shift", qlayer.shift, (c_out,), SHIFT_MIN, SHIFT_MAX)
    w = np.asarray(qlayer.weight)
    want = (c_out, qlayer.c_in, qlayer.k, qlayer.k)
    if w.shape != want:
        raise ValueError(f"Layer {name!r}: weight must have shape {list(want)}, not {list(w.shape)}")
    if qlayer.k == 1 and qlayer.period_table is not None and \
            [list(s) for s in qlayer.period_table] != [[0]]:
        raise ValueError(f"Layer {name!r}: a 1x1 layer is dense: period_table must be None or [[0]], "
                         f"not {qlayer.period_table!r}")
    image = ConvCSRP.from_qlayer(qlayer)
    check_accumulator(qlayer, ACC_BITS)
    if image.nnz_per_filter.max() >= _MAX_EXACT_NNZ:   # unreachable after the 32-bit check
        raise ValueError(f"Layer {name!r}: too many weights per filter for the reference")
    return image


def _conv_out(qlayer):
    """Conv output size before pooling."""
    p = qlayer.k // 2
    return ((qlayer.h_in + 2 * p - qlayer.k) // qlayer.stride + 1,
            (qlayer.w_in + 2 * p - qlayer.k) // qlayer.stride + 1)


def _input_batch(x, shape, where):
    """``x`` as int64 ``[N, *shape]`` plus whether it had a batch axis; checks dtype and range."""
    x = np.asarray(x)
    if x.dtype == bool or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{where}: input must hold integers (int8), not dtype {x.dtype}")
    if x.shape == tuple(shape):
        batched = False
        x = x[None]
    elif x.ndim == len(shape) + 1 and x.shape[1:] == tuple(shape):
        batched = True
    else:
        raise ValueError(f"{where}: input must have shape {list(shape)} or [N, {', '.join(map(str, shape))}], "
                         f"not {list(x.shape)}")
    if x.size and (x.min() < ACT_MIN or x.max() > ACT_MAX):
        bad = x.min() if x.min() < ACT_MIN else x.max()
        raise ValueError(f"{where}: input value {int(bad)} is outside the int8 range {ACT_MIN}..{ACT_MAX}")
    return x.astype(np.int64), batched


def conv_accumulate(image: ConvCSRP, x, *, stride: int) -> np.ndarray:
    """The accumulators (no bias) of a conv computed from its CSR_P image.

    Parameters
    ----------
    image : ConvCSRP
        The layer's period table and data vectors.
    x : array_like of int
        int8-range input ``[c_in, H, W]`` or a batch ``[N, c_in, H, W]``.
    stride : int
        1 or 2; padding is ``k // 2`` zeros.

    Returns
    -------
    numpy.ndarray
        int64 ``[c_out, H_o, W_o]`` (or ``[N, c_out, H_o, W_o]``), ``H_o = (H + 2 (k//2) - k) // stride + 1``.
    """
    if not isinstance(image, ConvCSRP):
        raise ValueError(f"image must be a hw.csrp.ConvCSRP, not {type(image).__name__}")
    if not _is_int(stride) or stride not in (1, 2):
        raise ValueError(f"Layer {image.layer!r}: stride must be 1 or 2, not {stride!r}")
    arr = np.asarray(x)
    if arr.ndim not in (3, 4):
        raise ValueError(f"Layer {image.layer!r}: input must be [c_in, H, W] or [N, c_in, H, W], "
                         f"not shape {list(arr.shape)}")
    xb, batched = _input_batch(arr, arr.shape[-3:], f"Layer {image.layer!r}")
    n, c_in, h, w = xb.shape
    if c_in != image.c_in:
        raise ValueError(f"Layer {image.layer!r}: input has {c_in} channels, the layer expects {image.c_in}")
    k, p = image.k, image.k // 2
    h_o, w_o = (h + 2 * p - k) // stride + 1, (w + 2 * p - k) // stride + 1
    if h_o < 1 or w_o < 1:
        raise ValueError(f"Layer {image.layer!r}: input {h} x {w} is too small for k = {k}")
    acc = np.empty((n, image.c_out, h_o * w_o), dtype=np.int64)
    step = max(1, _BLOCK_ELEMS // (c_in * k * k * h_o * w_o))
    # float32 halves the memory traffic of the im2col gather where it is still exact.
    dtype = np.float32 if image.nnz_per_filter.max() <= _MAX_FLOAT32_NNZ else np.float64
    classes = _class_plans(image, dtype)
    for i in range(0, n, step):
        acc[i:i + step] = _conv_block(image, classes, xb[i:i + step], stride, h_o, w_o)
    acc = acc.reshape(n, image.c_out, h_o, w_o)
    return acc if batched else acc[0]


def _class_plans(image, dtype):
    """Per filter class r: (filters, gather index into im2col rows or None if dense, weights [n_r, nnz_r])."""
    k2 = image.k * image.k
    plans = []
    for r in range(min(image.period, image.c_out)):
        filters = np.arange(r, image.c_out, image.period)
        cs, ts = image.tap_arrays(r)
        rows = cs * k2 + ts
        if len(rows) == image.c_in * k2:
            rows = None                                 # every tap of every channel: no gather
        nnz = int(image.nnz_per_filter[r])
        idx = image.row_ptr[filters][:, None] + np.arange(nnz)[None, :]
        plans.append((filters, rows, image.values[idx].astype(dtype)))
    return plans


def _conv_block(image, classes, xb, stride, h_o, w_o):
    n, c_in, h, w = xb.shape
    k, p = image.k, image.k // 2
    dtype = classes[0][2].dtype
    xp = np.pad(xb.astype(dtype), ((0, 0), (0, 0), (p, p), (p, p)))
    # im2col rows ordered (c, tap), columns (image, oy, ox): row c*k*k + tap is x_pad shifted by tap.
    cols = np.empty((c_in, k * k, n, h_o, w_o), dtype=dtype)
    for t in range(k * k):
        dy, dx = divmod(t, k)
        win = xp[:, :, dy:dy + stride * (h_o - 1) + 1:stride, dx:dx + stride * (w_o - 1) + 1:stride]
        cols[:, t] = win.transpose(1, 0, 2, 3)
    cols = cols.reshape(c_in * k * k, n * h_o * w_o)
    out = np.empty((image.c_out, n * h_o * w_o), dtype=np.int64)
    for filters, rows, wr in classes:
        xr = cols if rows is None else cols[rows]
        out[filters] = np.rint(wr @ xr).astype(np.int64)
    return out.reshape(image.c_out, n, h_o * w_o).transpose(1, 0, 2)


def maxpool2x2(y) -> np.ndarray:
    """2x2 max-pool, stride 2, over the last two axes; an odd last row / column is dropped."""
    y = np.asarray(y)
    h, w = y.shape[-2] // 2, y.shape[-1] // 2
    y = y[..., :2 * h, :2 * w].reshape(*y.shape[:-2], h, 2, w, 2)
    return y.max(axis=(-3, -1))


def output_stage(acc, bias, multiplier, shift, *, relu: bool, pool: bool, layer: str = "?") -> np.ndarray:
    """The engine's output path: ``+ bias``, per-channel requantization, ReLU, optional 2x2 max-pool.

    ``acc`` is ``[c_out, H, W]`` or ``[N, c_out, H, W]`` (int64, from :func:`conv_accumulate`);
    ``bias``, ``multiplier`` and ``shift`` hold one value per output channel. Raises ``ValueError``
    when ``acc + bias`` leaves the signed 32-bit range.
    """
    acc = np.asarray(acc, dtype=np.int64)
    axis = acc.ndim - 3
    shape = [1] * acc.ndim
    shape[axis] = -1
    total = acc + np.asarray(bias, dtype=np.int64).reshape(shape)
    lo, hi = acc_limits(ACC_BITS)
    if total.size and (total.min() < lo or total.max() > hi):
        raise ValueError(f"Layer {layer!r}: accumulator {int(total.max() if total.max() > hi else total.min())} "
                         f"overflows the signed {ACC_BITS}-bit range {lo}..{hi}")
    y = requantize(total, multiplier, shift, relu=bool(relu), axis=axis)
    return maxpool2x2(y) if pool else y


def run_layer(qlayer, x) -> np.ndarray:
    """Run one :class:`hw.qmodel.QLayer` on an int8 input, as the engine does.

    Parameters
    ----------
    qlayer : hw.qmodel.QLayer
        Validated by :func:`validate_layer` first.
    x : array_like of int
        Conv: ``[c_in, h_in, w_in]``. FC: any ``[C, H, W]`` with ``C * H * W == c_in`` (flattened
        in C, H, W order). A leading batch axis ``N`` is allowed in both cases.

    Returns
    -------
    numpy.ndarray
        int8 ``qlayer.out_shape`` (FC: ``[c_out, 1, 1]``), with the batch axis if ``x`` had one.
    """
    image = validate_layer(qlayer)
    x = np.asarray(x)
    name = qlayer.name
    if qlayer.kind == "fc":
        # Flatten C, H, W (per frame when batched) into the 1x1 input's channels.
        if x.ndim == 4 and x[0].size == qlayer.c_in:
            x = x.reshape(x.shape[0], qlayer.c_in, 1, 1)
        elif x.ndim in (1, 3) and x.size == qlayer.c_in:
            x = x.reshape(qlayer.c_in, 1, 1)
        else:
            raise ValueError(f"Layer {name!r}: an fc layer needs an input of {qlayer.c_in} values "
                             f"(C x H x W, flattened) or a batch [N, C, H, W] of them, not shape "
                             f"{list(x.shape)}")
    else:
        _input_batch(x, (qlayer.c_in, qlayer.h_in, qlayer.w_in), f"Layer {name!r}")
    acc = conv_accumulate(image, x, stride=qlayer.stride)
    return output_stage(acc, qlayer.bias, qlayer.multiplier, qlayer.shift, relu=qlayer.relu,
                        pool=qlayer.pool, layer=name)


def run_model(qmodel, x) -> list:
    """Run every layer of a :class:`hw.qmodel.QModel`; return each layer's int8 output, in order.

    ``x`` is the int8 input frame ``qmodel.input_shape`` (``[C, H, W]``) or a batch
    ``[N, C, H, W]``. Each layer's input is the previous layer's output; a conv layer must match
    its ``(c_in, h_in, w_in)`` exactly, an FC layer its flattened size.
    """
    shape = tuple(qmodel.input_shape)
    _input_batch(x, shape, f"Model {qmodel.name!r}")
    outs = []
    for layer in qmodel.layers:
        outs.append(run_layer(layer, x))
        x = outs[-1]
    return outs


def _random_model(net: str, variant: str, *, seed: int = 0):
    """A random-weight QModel of a sequential network of :mod:`hw.networks` (for timing only)."""
    from .networks import Conv, build_network, layer_period_tables
    from .qmodel import QLayer, QModel
    from .quant import choose_multiplier_shift
    from .variants import parse_variant

    network, v = build_network(net), parse_variant(variant)
    tables = layer_period_tables(network, v, seed=seed)
    rng = np.random.default_rng(seed)
    layers, wl = [], list(network.layers)
    for i, l in enumerate(wl):
        if isinstance(l, Conv):
            if l.groups != 1:
                raise ValueError(f"{net} is not a plain sequential network (grouped conv {l.name})")
            nxt = wl[i + 1]
            # A 2x2 pool sits between this conv and the next layer when the size halves.
            size_next = nxt.h_in if isinstance(nxt, Conv) else int(np.sqrt(nxt.in_features // l.c_out))
            pool = size_next == l.h_out // 2 and size_next != l.h_out
            t = tables[l.name]
            w = (rng.integers(-127, 128, size=(l.c_out, l.c_in, l.k, l.k)) * t.mask(l.c_out, l.c_in))
            nnz = int(t.mask(1, l.c_in).sum())
            spec = dict(name=l.name, kind="conv", c_in=l.c_in, c_out=l.c_out, k=l.k, stride=l.stride,
                        h_in=l.h_in, w_in=l.w_in, relu=True, pool=pool, variant=variant,
                        period_table=[list(s) for s in t.supports] if t.period > 1 or l.sparse else None)
        else:
            nnz = l.in_features
            w = rng.integers(-127, 128, size=(l.out_features, l.in_features, 1, 1))
            spec = dict(name=l.name, kind="fc", c_in=l.in_features, c_out=l.out_features, k=1,
                        stride=1, h_in=1, w_in=1, relu=False, pool=False)
        m, s = choose_multiplier_shift(np.full(spec["c_out"], 60.0 / (73 * 73 * np.sqrt(nnz))))
        layers.append(QLayer(**spec, weight=w.astype(np.int8), multiplier=m, shift=s,
                             bias=rng.integers(-1000, 1000, size=spec["c_out"]).astype(np.int32)))
    return QModel(f"{net}_{variant}", network.dataset, (layers[0].c_in, layers[0].h_in, layers[0].w_in),
                  1.0, layers)


def _main(argv=None):
    import argparse
    import json
    import time

    parser = argparse.ArgumentParser(prog="python -m hw.reference",
                                     description="Time the integer reference on a random-weight model.")
    parser.add_argument("--model", default="VGG16_PSD2_P8",
                        help="NET_VARIANT of a sequential network (VGG16, FashionNet, DigitsNet)")
    parser.add_argument("--batch", type=int, default=1, help="frames per run_model call")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    from .variants import split_model_name
    net, variant = split_model_name(args.model)
    model = _random_model(net, str(variant))
    x = np.random.default_rng(1).integers(-128, 128, size=(args.batch, *model.input_shape)).astype(np.int8)
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        run_model(model, x)
        best = min(best, time.perf_counter() - t0)
    macs = sum(ConvCSRP.from_qlayer(l).nnz * int(np.prod(_conv_out(l))) for l in model.layers)
    result = {"model": args.model, "batch": args.batch, "seconds_per_frame": best / args.batch,
              "macs_per_frame": macs, "gmacs_per_second": macs * args.batch / best / 1e9}
    print(json.dumps(result) if args.json else
          f"{args.model}: {best / args.batch * 1e3:.1f} ms/frame (batch {args.batch}), "
          f"{macs / 1e6:.1f} M non-zero MACs/frame, {result['gmacs_per_second']:.2f} GMAC/s")


if __name__ == "__main__":
    _main()

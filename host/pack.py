"""Pack a quantized model (:class:`hw.qmodel.QModel`) into the image the engine loads.

Packing checks the model against the hardware's assumptions before a single word is built:

* every layer's period table is a valid table for the layer's variant (period P, KSS of the
  sparse slots, one dense slot per period for PSD; dense layers use the one-slot dense table),
* every weight outside the pattern is exactly zero (:meth:`hw.csrp.ConvCSRP.from_dense` names the
  layer, filter, input channel and tap of the first offender),

then lays out the words of every address space with :func:`hw.layout.build_layout` and wraps
them in the container of :mod:`hw.image`. :func:`storage_report` sets the image's size beside
METHOD.md's analytic storage formulas (Dense, CSR, CSR_P) for the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from hw.array import parse_array  # the CLI's --array, shared with gateware.build
from hw.csrp import ConvCSRP
from hw.memory_map import Space
from hw.patterns import PeriodTable
from hw.qmodel import QModel, QLayer
from hw.variants import parse_variant, VariantNameError

__all__ = ["PackError", "PackedModel", "check_layer", "check_model", "pack", "storage_report",
           "parse_array", "load_model", "REPORT_FORMATS"]

#: The formats the pack report compares the image with.
REPORT_FORMATS = ("Dense", "CSR", "CSR_P")


class PackError(ValueError):
    """The model cannot be packed; the message names the layer and what is wrong."""


def _layer_table(layer: QLayer) -> PeriodTable:
    """The layer's period table (the dense one-slot table when it has none)."""
    k = layer.k
    if layer.period_table is None:
        return PeriodTable(k, (tuple(range(k * k)),))
    try:
        return PeriodTable(k, tuple(tuple(int(t) for t in slot) for slot in layer.period_table))
    except (ValueError, TypeError) as e:
        raise PackError(f"Layer {layer.name!r}: bad period table: {e}") from None


def _check_table(layer: QLayer, table: PeriodTable) -> None:
    """Raise :class:`PackError` unless ``table`` is what ``layer.variant`` prescribes."""
    k, taps = layer.k, layer.k * layer.k
    dense = tuple(range(taps))
    try:
        variant = parse_variant(layer.variant)
    except VariantNameError as e:
        raise PackError(f"Layer {layer.name!r}: {e}") from None
    is_dense_table = table.supports == (dense,)
    # The first conv, 1x1 convs and FC layers stay dense whatever the model's variant (METHOD.md).
    if layer.kind == "fc" or k == 1 or variant.is_dense or layer.period_table is None:
        if not is_dense_table:
            raise PackError(f"Layer {layer.name!r} ({layer.kind}, k = {k}, variant {variant}) must "
                            f"be dense, but its period table has {table.period} slots "
                            f"{[list(s) for s in table.supports]}")
        return
    if not variant.is_periodic:
        raise PackError(f"Layer {layer.name!r}: variant {variant} is not periodic; the engine needs a "
                        f"period table (PS<n>_P<m> or PSD<n>_P<m>) or a dense layer")
    if table.period != variant.period:
        raise PackError(f"Layer {layer.name!r}: period table has {table.period} slots but variant "
                        f"{variant} has period {variant.period}")
    sizes = [len(s) for s in table.supports]
    if variant.kind == "PS":
        bad = [s for s, n in enumerate(sizes) if n != variant.kss]
        if bad:
            raise PackError(f"Layer {layer.name!r}: slot {bad[0]} of the period table has "
                            f"{sizes[bad[0]]} taps {list(table.supports[bad[0]])}, but variant "
                            f"{variant} has KSS {variant.kss} in every slot")
        return
    n_dense = sum(1 for s in table.supports if s == dense)
    bad = [s for s, n in enumerate(sizes) if n != variant.kss and table.supports[s] != dense]
    if n_dense != 1 or bad:
        where = (f"slot {bad[0]} has {sizes[bad[0]]} taps {list(table.supports[bad[0]])}" if bad
                 else f"{n_dense} dense slots")
        raise PackError(f"Layer {layer.name!r}: variant {variant} needs exactly one dense slot and "
                        f"{variant.period - 1} slots of KSS {variant.kss}, but the period table's {where}")


def check_layer(layer: QLayer) -> ConvCSRP:
    """Check one layer's period table and pattern; return its CSR_P form."""
    table = _layer_table(layer)
    _check_table(layer, table)
    try:
        return ConvCSRP.from_dense(np.asarray(layer.weight), table, layer=layer.name)
    except ValueError as e:
        raise PackError(str(e)) from None


def check_model(qmodel: QModel) -> list:
    """:func:`check_layer` for every layer, in order; the list of :class:`hw.csrp.ConvCSRP`."""
    if not isinstance(qmodel, QModel):
        raise TypeError(f"Expected a hw.qmodel.QModel, not {type(qmodel).__name__}")
    if not qmodel.layers:
        raise PackError(f"Model {qmodel.name!r} has no layers")
    return [check_layer(l) for l in qmodel.layers]


def load_model(path) -> QModel:
    """Read a quantized model file; :class:`PackError` naming the file if it is missing or bad."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise PackError(f"Model file {str(path)!r} does not exist")
    try:
        return QModel.load(path)
    except (ValueError, KeyError, OSError, TypeError) as e:
        raise PackError(f"Cannot read quantized model {str(path)!r}: {e}") from None


@dataclass(frozen=True)
class PackedModel:
    """A model packed for one engine configuration.

    Members
    -------
    image : bytes
        The loadable image (:mod:`hw.image` container).
    config : hw.array.ArrayConfig
        The engine configuration it was packed for (``config.config_id`` is in the image).
    layout : hw.layout.Layout
        Word layout of every space; also encodes input frames and decodes outputs.
    csrp : list of hw.csrp.ConvCSRP
        Every layer's weights in CSR_P form.
    image_bits : int
        Size of the image in bits.
    """

    image: bytes
    config: object
    layout: object
    csrp: list

    @property
    def image_bits(self) -> int:
        return 8 * len(self.image)

    def section_bits(self) -> dict:
        """``{space name: bits}`` of the data words of each section."""
        return {Space(s).name: 32 * len(w) for s, w in self.layout.sections.items()}


def _check_batch_value(batch) -> int:
    from hw.layout import check_batch
    try:
        return check_batch(batch, name="Batch (--batch)")
    except ValueError as e:
        raise PackError(str(e)) from None


def pack(qmodel: QModel, *, config=None, array=None, batch: int = 1) -> PackedModel:
    """Check ``qmodel`` and pack it for ``config`` (default: ``ArrayConfig.for_model``).

    Parameters
    ----------
    config : hw.array.ArrayConfig, optional
        The engine to pack for.
    array : (rows, cols) or "auto", optional
        Array size for the default config (``"auto"``: ``ArrayConfig.shape_for_model``, the shape
        ``python -m gateware.build --model Q --array auto`` builds); ignored when ``config`` is given.
    batch : int
        Frames the engine runs per INFER request (``hw.layout.build_layout``): the layout takes
        ``batch`` frames at once and the default config's activation memory is sized to hold them
        all (``ArrayConfig.for_model(..., batch=batch)``, so its ``config_id`` is that of an engine
        built for the batch). A given ``config`` whose ``act_depth`` cannot hold them is refused
        (``ArrayConfig.check_model``, naming the bytes). 1 packs exactly as before.
    """
    from hw.array import config_for_model
    from hw.image import build_image
    from hw.layout import build_layout

    batch = _check_batch_value(batch)
    csrp = check_model(qmodel)
    at = f" at --batch {batch}" if batch > 1 else ""
    try:
        if config is None:
            config = config_for_model(qmodel, array, batch=batch)
        layout = build_layout(qmodel, config, batch=batch)
    except ValueError as e:
        raise PackError(f"Model {qmodel.name!r} does not fit the engine{at}: {e}") from None
    sections = {Space(s): np.asarray(w, dtype=np.uint32) for s, w in layout.sections.items()}
    try:
        image = build_image(sections, config.config_id, capacity=config.capacity())
    except ValueError as e:
        raise PackError(f"Model {qmodel.name!r} does not fit the engine: {e}") from None
    return PackedModel(image, config, layout, csrp)


def storage_report(packed: PackedModel, *, widths=None, tile=None) -> dict:
    """Image size in bits beside METHOD.md's formulas for the same weights.

    Each layer's flattened matrix (one row per filter, ``C_i k^2`` columns) is costed with
    :func:`hw.storage.tile_storage_bits` under its own support mask (pattern positions, which
    the engine stores even when a trained weight is zero), row period P and column period
    ``P k^2``; FC and dense layers have period 1. Default widths and tile are the paper's.

    Returns ``{"stored_weights", "stored_weight_bits", "image_bits", "weight_section_bits",
    "sections": {...}, "formulas": {fmt: bits},
    "per_layer": {layer: {fmt: bits}}, "widths": {...}, "tile": [R, C]}``.
    """
    from hw.storage import PAPER_TILE, PAPER_WIDTHS, tile_storage_bits

    widths = PAPER_WIDTHS if widths is None else widths
    tile = PAPER_TILE if tile is None else tuple(tile)
    per_layer = {}
    for c in packed.csrp:
        mask = c.table.mask(c.c_out, c.c_in).reshape(c.c_out, -1)
        P = c.table.period
        bits = tile_storage_bits(mask, tile=tile, widths=widths, row_period=P,
                                 col_period=P * c.k * c.k, method="formula")
        per_layer[c.layer] = {f: bits[f] for f in REPORT_FORMATS}
    totals = {f: sum(Fraction(layer[f]) for layer in per_layer.values()) for f in REPORT_FORMATS}
    sections = packed.section_bits()
    values = sum(c.nnz for c in packed.csrp)
    return {
        "stored_weights": values,
        "stored_weight_bits": 8 * values,
        "image_bits": packed.image_bits,
        "weight_section_bits": sections.get("WEIGHTS", 0) + sections.get("TABLES", 0),
        "sections": sections,
        "formulas": {f: float(v) for f, v in totals.items()},
        "per_layer": {n: {f: float(v) for f, v in d.items()} for n, d in per_layer.items()},
        "widths": widths.as_dict(),
        "tile": list(tile),
    }


def format_report(report: dict) -> str:
    """The storage report as a few human-readable lines."""
    lines = [f"image: {report['image_bits']} bits ({report['image_bits'] // 8} bytes)",
             "  sections: " + ", ".join(f"{k} {v} bits" for k, v in report["sections"].items()),
             f"  weights + period tables: {report['weight_section_bits']} bits "
             f"({report['stored_weights']} pattern weights = {report['stored_weight_bits']} bits; "
             f"the rest is padding of weight entries to the array's rows)",
             f"storage formulas (METHOD.md; tile {report['tile'][0]}x{report['tile'][1]}, "
             + ", ".join(f"{k} = {v}" for k, v in report["widths"].items()) + "):"]
    dense = report["formulas"]["Dense"]
    for f, v in report["formulas"].items():
        lines.append(f"  {f:6s} {v:12.0f} bits  ({v / dense:6.1%} of dense)")
    return "\n".join(lines)


__all__.append("format_report")


def format_schedule(layout) -> str:
    """``layout``'s :meth:`hw.layout.Layout.schedule` as a table under a title line: one line a
    layer descriptor, then the totals. With a batch (``layout.batch > 1``) the title gives the
    cycles of a run and of a frame (and the depth-first prefix, whose layers have a line a
    frame), and the table's cycles and MACs are a whole run's (all its frames)."""
    schedule = layout.schedule()
    batch = layout.batch
    if batch == 1:
        title = (f"schedule ({layout.config.rows}x{layout.config.cols} array, "
                 f"{layout.expected_cycles} cycles a frame):")
    else:
        title = (f"schedule ({layout.config.rows}x{layout.config.cols} array, batches of {batch} "
                 f"frames: {layout.expected_cycles} cycles a run, "
                 f"{layout.expected_cycles / batch:.1f} cycles a frame; cycles and MACs are a "
                 f"run's" + (f"; the first {layout.depth_first} layers depth-first, one frame "
                             f"at a time" if layout.depth_first else "") + "):")
    width = max([34] + [len(r["mapping"]) for r in schedule])
    lines = [title,
             f"{'layer':12s} {'mapping':{width}s} {'tiles':>6s} {'cycles':>8s} {'MACs':>10s} "
             f"{'util':>6s} {'bound':>6s}"]
    for r in schedule:
        lines.append(f"{r['layer']:12s} {r['mapping']:{width}s} {r['tiles']:6d} {r['cycles']:8d} "
                     f"{r['macs']:10d} {r['utilization']:6.3f} {r['tile_bound']:6.3f}")
    total = sum(r["cycles"] for r in schedule)
    lines.append(f"{'total':12s} {'':{width}s} {'':6s} {total:8d} {sum(r['macs'] for r in schedule):10d}")
    return "\n".join(lines)


__all__.append("format_schedule")

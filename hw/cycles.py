"""The engine's cycle model: how many clock cycles a layer takes, exactly as the sequencer
spends them (every core and cocotb test asserts the engine's ``cycles`` counter against it).

A tile is ``gs`` filters of one class times ``cols`` consecutive output pixels of ``G`` output
rows (one per row group; flat: ``cols`` consecutive flat pixels per region; mixed: ``gs`` filters
of each of ``G`` classes times the same ``cols`` pixels); it streams ``L_r`` steps (the class's
non-zeros per filter) and takes ``max(L_r, rows)`` cycles (the accumulators drain down the
columns in ``rows`` cycles while the next tile computes: :func:`tile_span`).
:data:`LAYER_OVERHEAD` cycles per layer cover the descriptor load and the setup; the first
layer's load (:data:`DESC_CYCLES`) runs while the engine idles, before the start, and after the
first layer :func:`prefetch_cycles` of each load hide behind the previous layer's drain
(:func:`drain_cycles`). The pipeline depths are the gateware's latencies
(``tests/test_gw_output_path.py`` checks that they agree). :mod:`hw.layout` picks each layer's
mapping by these counts and sums them over a model's runs.
"""

from __future__ import annotations

from .descriptors import LAYER_FIELDS

__all__ = ["DESC_CYCLES", "LAYER_OVERHEAD", "FRAME_OVERHEAD", "READ_CYCLES", "ISSUE_CYCLES",
           "OUTPUT_PATH_CYCLES", "POOL_CYCLES", "WRITEBACK_CYCLES", "PASS_CYCLES",
           "drain_cycles", "prefetch_cycles", "tile_span", "layer_cycles"]

#: Cycles of a layer's descriptor load: one per field, plus two (the block RAM's read and its
#: output register).
DESC_CYCLES = len(LAYER_FIELDS) + 2
#: Cycles per layer outside its tiles: the descriptor load, three setup cycles and the final class
#: check. The first layer's load runs while the engine idles (``gateware.sequencer``: after a
#: model write, a frame's end or an abort), so a frame's ``cycles`` counter never sees it; after
#: the first layer, the load overlaps the previous layer's drain (:func:`prefetch_cycles`).
LAYER_OVERHEAD = DESC_CYCLES + 3 + 1
#: Cycles per frame beyond its layers.
FRAME_OVERHEAD = 0
#: Cycles from a step's issue to the array inputs: the activation buffer's read latency
#: (``gateware.act_buffer.READ_LATENCY``: bank addresses, bank read, landing register, bank
#: output register, column select).
READ_CYCLES = 5
#: Cycles a step spends in the sequencer before its issue register (the issue snapshot:
#: ``gateware.sequencer.ISSUE_LATENCY - 1``).
ISSUE_CYCLES = 1
#: Cycles of the engine's output path (``gateware.output_path.OUTPUT_LATENCY``).
OUTPUT_PATH_CYCLES = 9
#: Extra drain cycles of a layer with a 2x2 max-pool (the pool stage's two registers).
POOL_CYCLES = 2
#: Cycles from the output side (output path or pool stage) to the activation buffer's write
#: request: the write-back register (``gateware.core.WRITEBACK_LATENCY``).
WRITEBACK_CYCLES = 1


def drain_cycles(rows: int, cols: int, pool: bool = False) -> int:
    """Cycles from a layer's last issued step until its last row is written back (then the next
    layer may read it): the issue snapshot (:data:`ISSUE_CYCLES`), the read stages
    (:data:`READ_CYCLES`, the issue register's included), the array, the tag stage, the output
    path (and the pool stage of a pooled layer), the write-back register
    (:data:`WRITEBACK_CYCLES`). The output path is
    ``gateware.output_path.OUTPUT_LATENCY`` (:data:`OUTPUT_PATH_CYCLES`) cycles, the array
    ``gateware.systolic_array.ARRAY_LATENCY`` (``rows + cols + 4``)."""
    from_issue = (ISSUE_CYCLES + READ_CYCLES + (rows + cols + 4) + rows + OUTPUT_PATH_CYCLES
                  + WRITEBACK_CYCLES)
    return from_issue + (POOL_CYCLES if pool else 0)


def prefetch_cycles(rows: int, cols: int, *, pool: bool, trailing: int) -> int:
    """Cycles of the next layer's descriptor load hidden behind a layer's drain: the sequencer
    starts it once the layer's ``trailing`` empty classes are checked (a cycle each after its
    last step) and waits for whichever ends last, the load or the drain
    (:func:`drain_cycles`)."""
    return max(0, min(DESC_CYCLES, drain_cycles(rows, cols, pool) - trailing))


def tile_span(rows: int) -> int:
    """Fewest cycles between two tiles' last steps (``gateware.sequencer`` holds a tile's last
    step until then: the previous tile's drain down ``rows`` rows, at least 2)."""
    return max(rows, 2)


#: Cycles between two passes of a layer run frame by frame (``passes > 1``): the class check
#: that finds the pass done and the two setup cycles of the next.
PASS_CYCLES = 3


def layer_cycles(steps, class_filters, tiles, *, rows: int, cols: int, group_rows: int | None = None,
                 pool: bool = False, passes: int = 1) -> int:
    """Engine cycles of one layer, exactly as the sequencer spends them.

    Per class: one CLASS cycle (plus one PREP cycle when the class has filters; classes after the
    last non-empty one overlap the drain); per tile its
    ``L_r`` steps plus the cycles its last step is held until ``max(rows, 2)`` cycles after the previous
    tile's last step (the drain chain's time); then the pipeline drain (:data:`POOL_CYCLES` longer
    for a pooled layer: pooling itself costs no step and no tile). A layer that runs ``passes``
    frames one after the other repeats its classes, each pass but the last followed by its
    trailing empty classes and :data:`PASS_CYCLES` (the tiles keep streaming: no drain between).
    """
    span = tile_span(rows)
    gap = span
    cycles = LAYER_OVERHEAD
    # Empty classes after the last non-empty one are checked while the pipeline drains.
    last = max(i for i, n in enumerate(class_filters) if n)
    for p in range(passes):
        for L, n in zip(steps[:last + 1], class_filters[:last + 1]):
            cycles += 1
            gap = min(gap + 1, span)
            if not n:
                continue
            cycles += 1
            gap = min(gap + 1, span)
            for _ in range(-(-n // (group_rows or rows)) * tiles):
                gap = min(gap + L - 1, span)
                hold = max(0, span - gap)
                cycles += L + hold
                gap = 1
        if p < passes - 1:
            between = len(class_filters) - 1 - last + PASS_CYCLES
            cycles += between
            gap = min(gap + between, span)
    return cycles + drain_cycles(rows, cols, pool)

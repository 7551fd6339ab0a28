"""Hand-made descriptor sections for the tests of the model check (``hw.descriptors.check_descriptors``,
the engine's ``model_ok`` in amaranth.sim and in the generated Verilog)."""

import numpy as np

from hw.array import ArrayConfig
from hw.descriptors import LAYER_FIELDS, DESC_HEADER_WORDS, header_limits, layer_limits


def small_engine():
    """2 x 2 engine: 256 bytes of activations, 16 parameters, table slots and weight entries,
    P <= 4, 3 descriptor slots, 2 row groups."""
    return ArrayConfig(rows=2, cols=2, p_max=4, weight_depth=16, table_depth=16, param_depth=16,
                       act_depth=256, max_layers=3)


def hand_layer(**changes):
    """A hand-made descriptor of a 3x3 conv, 3 -> 6 channels on 4 x 5, P = 4, for the small
    engine; ``changes`` edits fields."""
    fields = dict(c_in=3, h_in=4, w_in=5, hw_in=20, c_out=6, h_out=4, w_out=5, out_w=5, out_hw=20,
                  k=3, stride=1, relu=1, pool=0, period=4, q=1, rem=2, table_base=12,
                  weight_base=3, param_base=10, in_base=0, out_base=60, groups=2, fold=0, flat=1,
                  flat_n=10, flat_h=2, flat_in=10, mix=0, mix_wrap=0, frames=1, frame_in=0,
                  frame_out=0)
    fields.update(changes)
    return [fields[n] for n in LAYER_FIELDS]


def hand_section(*layers, n_layers=None, header=(60, 120, 60)):
    """A DESCRIPTORS section of ``layers`` (lists of words, whole or cut short): a header of
    ``n_layers`` (default: as many as given) and ``header`` (input_len, output_len, result_base)."""
    header = [len(layers) if n_layers is None else n_layers, *header]
    words = header + [0] * (DESC_HEADER_WORDS - len(header))
    for layer in layers:
        words += layer
    return np.array(words, dtype=np.int64)


def model_check_cases(rng):
    """Descriptor sections for the model check of :func:`small_engine`: header edges, hand-made
    layers at and past their fields' limits, short sections, and random words (from ``rng``) in
    random fields."""
    cfg = small_engine()
    lim, hlim = layer_limits(cfg), header_limits(cfg)
    good = hand_layer()
    headers = [[1, 4, 4, 0], [3, hlim["input_len"], 1, hlim["result_end"] - 1],
               [0, 4, 4, 0], [4, 4, 4, 0], [1, 0, 4, 0], [1, hlim["input_len"] + 1, 4, 0],
               [1, 4, 0, 0], [1, 4, hlim["result_end"], 1], [1, 4, 5, hlim["result_end"] - 4],
               [2 ** 32 - 1, 4, 4, 0], [1, 4, 2 ** 32 - 1, 2 ** 32 - 1]]
    headers += [[int(v) for v in rng.integers(0, [5, 300, 300, 300])] for _ in range(20)]
    cases = [hand_section(*[good] * min(h[0], 3), n_layers=h[0], header=h[1:]) for h in headers]
    cases += [hand_section(hand_layer(rem=3, c_out=7, param_base=9)),
              hand_section(hand_layer(table_base=15, period=1, q=6, rem=0)),
              hand_section(hand_layer(rem=3)), hand_section(hand_layer(q=0, rem=2)),
              hand_section(hand_layer(q=2, rem=0, c_out=8, param_base=8)),
              hand_section(hand_layer(param_base=0, c_out=16, q=4, rem=0)),
              hand_section(hand_layer(period=2)), hand_section(hand_layer(table_base=13)),
              hand_section(hand_layer(param_base=11)), hand_section(hand_layer(h_out=1 << 24)),
              hand_section(hand_layer(k=2)), hand_section(hand_layer(k=1, stride=2, mix=2)),
              hand_section(good, n_layers=2), hand_section(good, good[:31], n_layers=2),
              hand_section(n_layers=1), hand_section(good, good[:9], n_layers=1),
              hand_section(good, hand_layer(k=0)[:10], n_layers=1)]
    for _ in range(60):
        layers = [list(good) for _ in range(int(rng.integers(1, 4)))]
        layer, i = int(rng.integers(len(layers))), int(rng.integers(len(LAYER_FIELDS)))
        limit = lim[LAYER_FIELDS[i]]
        layers[layer][i] = int(rng.choice([0, 1, 2, 3, limit.hi, limit.hi + 1, 1 << 24,
                                           int(rng.integers(0, 2 ** 32))]))
        cases.append(hand_section(*layers))
    return cases

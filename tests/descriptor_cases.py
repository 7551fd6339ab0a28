"""Hand-made descriptor sections for the tests of the model check (``hw.layout.check_descriptors``
and the engine's ``model_ok``)."""

import numpy as np

from hw.array import ArrayConfig
from hw.layout import LAYER_FIELDS, DESC_HEADER_WORDS


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

"""RTL tests of the link layer with the real engine core: gateware.top.LinkedEngine (byte streams)
and UartEngine (8N1 pins) on Icarus and Verilator, bit-exact against hw.reference.

One cocotb run per (simulator, top) plays a whole session (sim_tests/link_engine_tb.py): errors
before an image, corrupted and foreign images, a good image, inference, counters, a truncated
frame and garbage between frames, images whose model cannot run (BAD_MODEL), an inference the
address guard stops (ADDRESS_FAULT), and one that runs far longer than the host waits, abandoned
by the host and aborted by its next request.
"""

from pathlib import Path

import numpy as np
import pytest

from bench.layers import random_layer_model
from hw.array import ArrayConfig
from hw.image import ImageError, build_image
from hw.layout import build_layout
from hw.descriptors import check_descriptors, DESC_HEADER_WORDS, HEADER_FIELDS, LAYER_FIELDS
from hw.memory_map import Space
from hw.reference import run_model

from conftest import overrun_sections, runaway_sections, with_descriptor_words

SEED = 5
DIVISOR = 6


def _unrunnable_images(layout, config):
    """Well-formed images the engine must refuse or abort: a model header with no layers, no
    DESCRIPTORS section at all, a layer with a stride of 3, a layer descriptor cut short by a
    word; a model whose first layer passes the checks but runs far longer than the host waits
    (the host gives up on its INFER), and one whose output passes the memory's end (its INFER
    gets ADDRESS_FAULT)."""
    def image(sections):
        return np.frombuffer(build_image(sections, config.config_id), np.uint8)

    desc = layout.sections[Space.DESCRIPTORS]
    no_layers = with_descriptor_words(layout.sections, {HEADER_FIELDS.index("n_layers"): 0})
    headerless = {s: w for s, w in layout.sections.items() if s != Space.DESCRIPTORS}
    stride3 = with_descriptor_words(layout.sections,
                                    {DESC_HEADER_WORDS + LAYER_FIELDS.index("stride"): 3})
    short = {**layout.sections, Space.DESCRIPTORS: desc[:-1]}
    images = dict(no_layers_image=no_layers, headerless_image=headerless,
                  stride3_image=stride3, short_descriptor_image=short)
    for sections in images.values():
        with pytest.raises(ImageError, match="BAD_MODEL"):
            check_descriptors(sections.get(Space.DESCRIPTORS), config)
    images["runaway_image"] = runaway_sections(layout.sections, config)
    images["overrun_image"] = overrun_sections(layout.sections, config)
    return {name: image(sections) for name, sections in images.items()}


def _case(path):
    q = random_layer_model(seed=SEED, c_in=3, c_out=8, h=6, w=5, k=3, stride=1, relu=True,
                           variant="PSD2_P8")
    config = ArrayConfig.for_model(q, rows=2, cols=2)
    layout = build_layout(q, config)
    rng = np.random.default_rng(SEED)
    frames = [rng.integers(-128, 128, q.input_shape).astype(np.int8) for _ in range(2)]
    arrays = dict(
        config_id=config.config_id, n_frames=len(frames), macs=layout.macs,
        max_cycles=4 * layout.expected_cycles + 1000,
        image=np.frombuffer(build_image(layout.sections, config.config_id), np.uint8),
        other_image=np.frombuffer(build_image(layout.sections, config.config_id ^ 1), np.uint8),
        **_unrunnable_images(layout, config),
    )
    for i, f in enumerate(frames):
        arrays[f"frame_{i}"] = f.reshape(-1)
        arrays[f"expect_{i}"] = run_model(q, f)[-1].reshape(-1).astype(np.int8)
    np.savez(path, **arrays)
    return config


@pytest.mark.parametrize("sim, mode", [
    # Each simulator plays the session once in `make test`: Icarus on the byte-stream top (with
    # tx back-pressure), Verilator on the UART top, which contains it. The other two pairs run
    # with the sweeps (`make sweep`): Icarus moves the UART's bits at ~1,500 cycles/s (2 min).
    pytest.param("icarus", "bytes", marks=pytest.mark.icarus),
    pytest.param("icarus", "uart", marks=[pytest.mark.icarus, pytest.mark.slow]),
    pytest.param("verilator", "bytes", marks=[pytest.mark.verilator, pytest.mark.slow]),
    pytest.param("verilator", "uart", marks=pytest.mark.verilator),
])
def test_link_session(sim, mode, tmp_path):
    from gateware.simulate import build, run
    from gateware.top import LinkedEngine, UartEngine

    config = _case(tmp_path / "case.npz")
    if mode == "uart":
        timeout = 40 * 10 * DIVISOR
        top = UartEngine(config=config, divisor=DIVISOR, timeout=timeout, error_hold=16)
    else:
        timeout = 200
        top = LinkedEngine(config=config, timeout=timeout)
    root = Path(__file__).resolve().parents[1]
    build_dir = root / "sim_build" / f"link_{mode}_{sim}"
    # Icarus in its default -g2012 mode runs declaration initialisers before `always @*` blocks
    # start, so a combinational output whose inputs never change after time 0 (the link's
    # rx.ready while hunting) stays X; Verilog-2005 ordering gives Yosys's time-0 trigger effect.
    runner = build(top, sim=sim, build_dir=build_dir,
                   extra_args=["-g2005"] if sim == "icarus" else [])
    run(runner, build_dir=build_dir, test_module="link_engine_tb",
        test_dir=Path(__file__).parent, seed=SEED,
        extra_env={"LINK_CASE": str(tmp_path / "case.npz"), "LINK_MODE": mode,
                   "LINK_DIVISOR": str(DIVISOR), "LINK_TIMEOUT": str(timeout),
                   "LINK_SEED": str(SEED)})

"""The Fmax harness of bench.fmax: what it wraps and what it leaves outside (no place and route)."""

import re

import pytest
from amaranth.back import verilog

from bench.fmax import COMPONENTS, TimingHarness, make_component, summarize_path


def _ports(text):
    header = re.search(r"module harness\((.*?)\);", text, re.S)[1]
    names = sorted(n.strip() for n in header.split(","))
    directions = {name: re.search(rf"^\s*(input|output)\s+(?:\[[^\]]*\]\s*)?{name};", text,
                                  re.M)[1] for name in names}
    return directions


@pytest.mark.parametrize("name", ["uart", "output_path", "weight_streamer"])
def test_harness_has_one_input_and_one_output_pin(name):
    from hw.array import ArrayConfig
    harness = make_component(name, ArrayConfig(rows=4, cols=4))
    inputs, outputs = harness.ports()
    assert inputs and outputs
    text = verilog.convert(harness, name="harness")
    assert _ports(text) == {"clk": "input", "din": "input", "dout": "output"}


def test_linked_ports_are_not_on_the_chain():
    from hw.array import ArrayConfig
    harness = make_component("output_path", ArrayConfig(rows=4, cols=4))
    out, pool = harness.components
    inputs, outputs = harness.ports()
    ids = {id(v) for v in inputs + outputs}
    for value in (out.out_valid, pool.valid, out.out_side, pool.side):
        assert id(value) not in ids


def test_every_component_elaborates():
    from hw.array import ArrayConfig
    for name in COMPONENTS:
        if name in ("core", "top"):
            continue    # covered by their own tests; the harness code path is the same
        verilog.convert(make_component(name, ArrayConfig(rows=2, cols=2)), name="harness")


def test_validation():
    with pytest.raises(ValueError, match="Unknown component 'nope'"):
        make_component("nope")
    with pytest.raises(TypeError, match="Components must be a non-empty list"):
        TimingHarness([])


def test_path_summary_compresses_carry_chains():
    def step(kind, a, ap, b, bp, d, net=None):
        return {"type": kind, "from": a, "from_port": ap, "to": b, "to_port": bp, "net": net,
                "delay_ns": d}
    steps = [
        step("clk-to-q", "x_TRELLIS_FF_Q_3", "Q", "x_TRELLIS_FF_Q_3", "Q", 0.5),
        step("routing", "x_TRELLIS_FF_Q_3", "Q", "c0", "A", 1.0, net="x[3]"),
        step("logic", "c0", "A", "c0", "FCO", 0.4),
        step("routing", "c0", "FCO", "c1", "FCI", 0.0),
        step("logic", "c1", "FCI", "c1", "FCO", 0.1),
        step("routing", "c1", "FCO", "c2", "FCI", 0.0),
        step("logic", "c2", "FCI", "c2", "F", 0.4),
        step("routing", "c2", "F", "l", "B", 1.0),
        step("logic", "l", "B", "l", "F", 0.2),
        step("routing", "l", "F", "y_TRELLIS_FF_Q", "DI", 0.4),
        step("setup", "y_TRELLIS_FF_Q", "DI", "y_TRELLIS_FF_Q", "DI", 0.0),
    ]
    path = summarize_path(steps)
    assert path["from"] == "x[3]" and path["to"] == "y"
    assert path["stages"] == ["carry x3", "LUT"] and path["levels"] == 2
    assert path["ns"] == 4.0 and path["routing_ns"] == 2.4

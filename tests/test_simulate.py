"""``gateware.simulate.build``'s cache: what it converts and compiles again, and what it skips.

A tiny counter on Icarus (compiles in a second). ``write_verilog`` (the conversion) and the
runner's ``build`` (the compile) are counted by wrapping them.
"""

import shutil
from pathlib import Path

import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from gateware import simulate

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog is not installed")


class Counter(wiring.Component):
    count: Out(4)

    def __init__(self, step: int = 1):
        self._step = step
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.count.eq(self.count + self._step)
        return m


@pytest.fixture
def counted(monkeypatch):
    """``{"convert": n, "compile": n}`` calls from here on."""
    from cocotb_tools.runner import Icarus
    calls = {"convert": 0, "compile": 0}
    convert, compile_ = simulate.write_verilog, Icarus.build

    def counting_convert(*args, **kwargs):
        calls["convert"] += 1
        return convert(*args, **kwargs)

    def counting_compile(self, *args, **kwargs):
        calls["compile"] += 1
        return compile_(self, *args, **kwargs)

    monkeypatch.setattr(simulate, "write_verilog", counting_convert)
    monkeypatch.setattr(Icarus, "build", counting_compile)
    return calls


def test_design_key_skips_the_conversion(tmp_path, counted):
    d = tmp_path / "b"
    simulate.build(Counter(), sim="icarus", build_dir=d, design_key="Counter(step=1)")
    assert counted == {"convert": 1, "compile": 1}
    simulate.build(Counter(), sim="icarus", build_dir=d, design_key="Counter(step=1)")
    assert counted == {"convert": 1, "compile": 1}            # neither again
    # Another key: converted again; the same Verilog: not compiled again.
    simulate.build(Counter(), sim="icarus", build_dir=d, design_key="Counter(step=1) again")
    assert counted == {"convert": 2, "compile": 1}
    # A different design under a new key is compiled.
    simulate.build(Counter(step=3), sim="icarus", build_dir=d, design_key="Counter(step=3)")
    assert counted == {"convert": 3, "compile": 2}
    # Without a key, every build converts (and compiles only what changed).
    simulate.build(Counter(step=3), sim="icarus", build_dir=d)
    assert counted == {"convert": 4, "compile": 2}
    # The key's stamp went with the keyless build: the old key converts again.
    simulate.build(Counter(step=3), sim="icarus", build_dir=d, design_key="Counter(step=3)")
    assert counted == {"convert": 5, "compile": 2}


def test_design_key_follows_the_sources(tmp_path, counted, monkeypatch):
    """A change to any source of ``gateware/`` or ``hw/`` (here: their digest) converts again."""
    d = tmp_path / "b"
    simulate.build(Counter(), sim="icarus", build_dir=d, design_key="Counter(step=1)")
    simulate.build(Counter(), sim="icarus", build_dir=d, design_key="Counter(step=1)")
    assert counted["convert"] == 1
    monkeypatch.setattr(simulate, "source_digest", lambda: "edited")
    simulate.build(Counter(), sim="icarus", build_dir=d, design_key="Counter(step=1)")
    assert counted == {"convert": 2, "compile": 1}
    # Other simulator options are another build.
    simulate.build(Counter(), sim="icarus", build_dir=d, design_key="Counter(step=1)",
                   extra_args=["-g2012"])
    assert counted == {"convert": 3, "compile": 2}


def test_source_digest_covers_gateware_and_hw(tmp_path):
    """A copy of the project's ``gateware/`` and ``hw/`` digests the same; an edit of one of
    their files changes the digest, a file elsewhere does not."""
    from pathlib import Path
    root = Path(simulate.__file__).resolve().parents[1]
    for package in ("gateware", "hw"):
        shutil.copytree(root / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    assert simulate.source_digest(tmp_path) == simulate.source_digest()
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "rtl.py").write_text("# not the engine's source\n")
    (tmp_path / "gateware" / "notes.txt").write_text("not Python\n")
    simulate.source_digest.cache_clear()
    assert simulate.source_digest(tmp_path) == simulate.source_digest()
    cycles = tmp_path / "hw" / "cycles.py"
    cycles.write_text(cycles.read_text() + "\n")
    simulate.source_digest.cache_clear()
    assert simulate.source_digest(tmp_path) != simulate.source_digest()


FAILING_TB = '''
import cocotb
from cocotb.triggers import Timer


@cocotb.test()
async def fails(dut):
    await Timer(10, unit="ns")
    assert False, "fails on purpose"
'''


def test_failure_reruns_with_waveforms(tmp_path):
    """A failing run is run again with waveforms (under the waveform directory's lock), and the
    failure names the dump, which exists."""
    (tmp_path / "failing_tb.py").write_text(FAILING_TB)
    with pytest.raises(simulate.SimulationFailed, match="waveforms: ") as info:
        simulate.build_and_run(Counter(), sim="icarus", build_dir=tmp_path / "b",
                               test_module="failing_tb", test_dir=tmp_path)
    dumps = str(info.value).split("waveforms: ")[1].split(", ")
    assert dumps and all(d.endswith((".fst", ".vcd")) for d in dumps), dumps
    assert all(Path(d).is_file() for d in dumps)
    assert (tmp_path / "b-waves" / ".lock").is_file()

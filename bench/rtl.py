"""Run models through the engine's RTL (Icarus or Verilator) with the cocotb testbench.

Shared by ``sim_tests/`` (bit-exactness) and :mod:`bench.engine` (cycle counts): one simulator
build per array configuration (cached under ``build_dir``), many cases per run; the cases travel
to the testbench (``sim_tests/core_tb.py``) in one ``.npz`` file and the results come back as JSON.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.layout import build_layout
from hw.reference import run_model

__all__ = ["Case", "run_rtl", "SIM_TESTS_DIR", "default_build_dir"]

SIM_TESTS_DIR = Path(__file__).resolve().parents[1] / "sim_tests"


@dataclass
class Case:
    """One frame (or one batch of frames) of one model.

    Members
    -------
    name : str
    qmodel : hw.qmodel.QModel
    frame : numpy.ndarray
        int8 ``qmodel.input_shape`` (a batch: ``[batch, *qmodel.input_shape]``).
    expect : numpy.ndarray or None
        Expected result bytes (default: hw.reference's last layer output, each frame's, in the
        order the engine sends them: ``Layout.encode_output``).
    batch : int
        Frames the engine runs at once (``hw.layout.build_layout``).
    depth_first : int or None
        How many of the first layers the batch runs frame by frame (``build_layout``'s
        ``depth_first``; None: as it picks for the config).
    """

    name: str
    qmodel: object
    frame: np.ndarray
    expect: np.ndarray | None = None
    batch: int = 1
    depth_first: int | None = None


def default_build_dir(config, sim: str) -> Path:
    root = Path(os.environ.get("PSCONV_SIM_BUILD", Path(__file__).resolve().parents[1] / "sim_build"))
    return root / f"core-{sim}-{config.rows}x{config.cols}-{config.config_id:08x}"


def run_rtl(config, cases, *, sim: str, seed: int = 0, valid_p: float = 1.0, ready_p: float = 1.0,
            build_dir=None, strict: bool = True, waves_on_failure: bool = True) -> list:
    """Run ``cases`` on ``sim`` for ``config``; return one result dict per case.

    Each result has ``case``, ``out`` (result bytes), ``counters``, ``bit_exact``, ``layout``,
    ``compute_wall_s``. With ``strict`` a mismatch (bytes, cycles or MACs) raises
    :class:`gateware.simulate.SimulationFailed` naming the case and the seed.
    """
    from gateware.core import Core
    from gateware.simulate import build, run, build_and_run

    build_dir = Path(build_dir or default_build_dir(config, sim))
    build_dir.mkdir(parents=True, exist_ok=True)
    arrays, layouts = {"n_cases": np.array(len(cases))}, []
    for i, c in enumerate(cases):
        layout = build_layout(c.qmodel, config, batch=c.batch, depth_first=c.depth_first)
        if c.expect is not None:
            expect = c.expect
        elif c.batch == 1:
            expect = run_model(c.qmodel, c.frame)[-1]
        else:
            expect = layout.encode_output(np.stack([run_model(c.qmodel, f)[-1] for f in c.frame]))
        arrays[f"name_{i}"] = np.array(c.name)
        arrays[f"words_{i}"] = layout.load_words(c.frame)
        arrays[f"expect_{i}"] = np.asarray(expect, dtype=np.int64).reshape(-1)
        arrays[f"cycles_{i}"] = np.array(layout.expected_cycles)
        arrays[f"macs_{i}"] = np.array(layout.macs)
        layouts.append(layout)
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    cases_path = build_dir / f"cases-{tag}.npz"
    results_path = build_dir / f"results-{tag}.json"
    np.savez(cases_path, **arrays)
    env = {"CORE_CASES": str(cases_path), "CORE_RESULTS": str(results_path), "CORE_SEED": str(seed),
           "CORE_VALID_P": str(valid_p), "CORE_READY_P": str(ready_p),
           "CORE_STRICT": "1" if strict else "0"}
    # pytest-xdist workers share the cached build: one compiles it (exclusive lock) while none
    # runs it, then any number run it (shared lock). Converting the core to Verilog takes
    # seconds: skipped while the build is of this design.
    key = f"gateware.core.Core(config={config!r})"
    lock = open(build_dir / ".run.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        runner = build(Core(config=config), sim=sim, build_dir=build_dir, design_key=key)
        fcntl.flock(lock, fcntl.LOCK_SH)
        if waves_on_failure:
            # Its build finds the stamp just written and returns at once.
            build_and_run(Core(config=config), sim=sim, build_dir=build_dir, test_module="core_tb",
                          test_dir=SIM_TESTS_DIR, seed=seed, extra_env=env, design_key=key)
        else:
            run(runner, build_dir=build_dir, test_module="core_tb", test_dir=SIM_TESTS_DIR,
                seed=seed, extra_env=env)
        results = json.loads(results_path.read_text())
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
        cases_path.unlink(missing_ok=True)
        results_path.unlink(missing_ok=True)
    for r, layout in zip(results, layouts):
        r["layout"] = layout
    return results

"""``python -m host run --port <pty>`` against the cocotb-simulated UART top (issue 5).

The simulated board (host.simboard: gateware.top.UartEngine under Verilator, UART divisor 8)
is reached exactly like a real one: over a pseudo-terminal, by the host CLI in another process.
The model is DigitsNet_PSD2_P8 with random (seeded) weights; every output must be bit-exact
with the PyTorch integer golden and the numpy reference.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.verilator

ROOT = Path(__file__).resolve().parents[1]
SEED = 2
FRAMES = 4


def test_host_run_over_pty_uart(tmp_path):
    pytest.importorskip("gateware.top", reason="gateware.top (UartEngine) not available")
    from host.pack import pack
    from host.simboard import SimBoard
    from host.synthetic import random_qmodel

    model = random_qmodel("DigitsNet_PSD2_P8", seed=SEED)
    path = tmp_path / "digits.q.npz"
    model.save(path)
    config = pack(model).config
    # A shared build directory: the Verilator build is reused across runs while unchanged.
    with SimBoard(config=config, uart=True, divisor=8,
                  build_dir=ROOT / "build" / "sim_tests" / "host_pty") as board:
        proc = subprocess.run(
            [sys.executable, "-m", "host", "run", "--model", str(path), "--port", board.port,
             # Generous: the Verilated UART moves ~30k cycles/s on a loaded 2-core machine, so
             # the 9.7 kB image (80 cycles a byte) takes tens of seconds to cross.
             "--frames", str(FRAMES), "--json", "--no-progress", "--timeout", "300"],
            cwd=ROOT, capture_output=True, text=True, timeout=600,
            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, (f"seed {SEED}, exit {proc.returncode}\n{proc.stdout[-2000:]}\n"
                                  f"{proc.stderr[-4000:]}\nsim log: {board.log_path}")
    result = json.loads(proc.stdout)
    assert result["frames"] == FRAMES
    assert result["mismatches"] == 0, f"seed {SEED}: frames {result['mismatch_frames']}"
    assert result["reference_disagreements"] == 0
    assert result["cycles_per_frame"] > 0
    assert result["accuracy"] == result["golden_accuracy"]


@pytest.mark.slow
def test_host_run_sim_stream(tmp_path):
    """``python -m host run --sim``: the byte-stream top, started and stopped by the host itself."""
    pytest.importorskip("gateware.top", reason="gateware.top (LinkedEngine) not available")
    from host.synthetic import random_qmodel

    model = random_qmodel("DigitsNet_PSD2_P8", seed=SEED + 1)
    path = tmp_path / "digits.q.npz"
    model.save(path)
    proc = subprocess.run(
        [sys.executable, "-m", "host", "run", "--model", str(path), "--sim", "--frames", "20",
         "--json", "--no-progress", "--build-dir", str(ROOT / "build" / "sim_tests" / "host_sim")],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, f"seed {SEED + 1}\n{proc.stderr}"
    result = json.loads(proc.stdout)
    assert result["frames"] == 20 and result["mismatches"] == 0, f"seed {SEED + 1}"

"""The engine's RTL on trained networks: for every checkpoint under runs/ (e.g. FashionNet_PSD2_P8)
its quantized model (``model.q.npz`` beside it, else quantized here with models.quantize) runs a
few real test images through Verilator, bit-exact against models.golden and hw.reference.
On a fresh checkout (no runs/), DigitsNet_PSD2_P8 is trained here for 3 epochs (seconds) so a
trained network always goes through the RTL."""

from pathlib import Path

import numpy as np
import pytest

from bench.rtl import Case, run_rtl
from hw.array import ArrayConfig
from hw.qmodel import QModel
from hw.reference import run_model

from conftest import SIM_CONFIG

RUNS = Path(__file__).resolve().parents[1] / "runs"
CHECKPOINTS = sorted(RUNS.glob("*/checkpoint.pt")) if RUNS.is_dir() else []
IMAGES = 4


FRESH = "fresh:DigitsNet_PSD2_P8"


def _fresh_checkpoint(tmp_path) -> Path:
    from models.train import main as train_main

    out = tmp_path / "DigitsNet_PSD2_P8"
    assert train_main(["--model", "DigitsNet_PSD2_P8", "--dataset", "digits", "--epochs", "3",
                       "--threads", "1", "--no-progress", "--out", str(out)]) == 0
    return out / "checkpoint.pt"


@pytest.mark.verilator
@pytest.mark.parametrize("checkpoint", CHECKPOINTS or [FRESH],
                         ids=[p.parent.name for p in CHECKPOINTS] or [FRESH])
def test_trained_model(checkpoint, tmp_path):
    if checkpoint == FRESH:
        checkpoint = _fresh_checkpoint(tmp_path)
    import torch
    from models.data import load_dataset, prepare_batch
    from models.golden import quantize_input, run_model_int
    from models.quantize import main as quantize_main

    out = checkpoint.parent / "model.q.npz"      # the quantized model the demo uses, if any
    if not out.is_file():
        out = tmp_path / "model.q.npz"
        assert quantize_main(["--checkpoint", str(checkpoint), "--out", str(out),
                              "--calib-batches", "2", "--calib-batch-size", "64"]) == 0
    q = QModel.load(out)
    test = load_dataset(q.dataset, "test")
    x, labels = test.__getitems__(list(range(IMAGES)))
    frames = quantize_input(q, prepare_batch(x, q.dataset, train=False)).numpy().astype(np.int8)
    cases = []
    for i, frame in enumerate(frames):
        g = run_model_int(q, torch.as_tensor(frame.astype(np.int64)))[-1].numpy().reshape(-1)
        r = run_model(q, frame)[-1].reshape(-1)
        assert np.array_equal(g, r), f"{checkpoint.parent.name} image {i}: golden and reference differ"
        cases.append(Case(f"{checkpoint.parent.name} test image {i} (label {int(labels[i])})", q, frame, r))
    # Reuse the shared build when the model fits it.
    config = SIM_CONFIG if SIM_CONFIG.fits(q) else ArrayConfig.for_model(q)
    results = run_rtl(config, cases, sim="verilator", seed=3, valid_p=0.8, ready_p=0.8)
    assert all(r["bit_exact"] for r in results), [r["case"] for r in results if not r["bit_exact"]]

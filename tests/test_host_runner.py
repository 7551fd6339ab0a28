"""host.runner against an in-process FakeBoard that computes with hw.reference."""

import numpy as np
import pytest

from hw import link
from hw.reference import run_model
from host.fakeboard import FakeBoard, Fault
from host.pack import pack
from host.protocol import Client
from host.runner import ConfigMismatch, load_frames, run_frames
from host.synthetic import random_qmodel

SEED = 11


@pytest.fixture(scope="module")
def model():
    return random_qmodel("DigitsNet_PSD2_P8", seed=SEED)


@pytest.fixture(scope="module")
def packed(model):
    return pack(model)


@pytest.fixture(scope="module")
def data(model):
    return load_frames(model, frames=24)


def board_for(model, packed, *, wrong_frame=None, faults=()):
    count = {"n": 0}

    def compute(frame):
        x = np.frombuffer(frame, dtype=np.int8).reshape(model.input_shape)
        out = run_model(model, x)[-1].reshape(-1).astype(np.int8)
        if count["n"] == wrong_frame:
            out[0] ^= 1
        count["n"] += 1
        return out.tobytes()

    return FakeBoard(config_id=packed.config.config_id, compute=compute,
                     input_len=int(np.prod(model.input_shape)), faults=faults,
                     counters=lambda f: {"cycles": 1000 + f[0] % 7, "busy": 900, "stalls": 5,
                                         "macs": 4242})


def test_load_frames_quantizes_like_the_golden(model, data):
    from models.data import load_dataset

    x, y = data
    assert x.dtype == np.int8 and x.shape == (24,) + tuple(model.input_shape)
    ds = load_dataset(model.dataset, "test")
    raw = ds.__getitems__(list(range(24)))[0].numpy().astype(np.float64)
    # Independent: digits are in [0, 1] with identity normalization; round half to even, clamp.
    assert np.array_equal(x, np.clip(np.round(raw / model.input_scale), -128, 127).astype(np.int8))
    assert np.array_equal(y, ds.labels[:24].numpy())


def test_run_is_bit_exact_and_reports(model, packed, data):
    x, y = data
    board = board_for(model, packed)
    result = run_frames(Client(board, timeout=0.05), model, packed.image, packed.config.config_id,
                        x, y, clock_hz=100e6, baud=1_000_000, progress=False)
    assert result.mismatches == 0 and result.frames == 24 and result.reference_disagreements == 0
    expected = run_model(model, x)[-1].reshape(24, -1)
    assert result.accuracy == pytest.approx(100 * np.mean(expected.argmax(1) == y))
    assert result.accuracy == result.golden_accuracy
    cycles = np.mean([1000 + int(f[0]) % 7 for f in x.reshape(24, -1).view(np.uint8)])
    assert result.cycles_per_frame == pytest.approx(cycles)
    assert result.fps_compute == pytest.approx(100e6 / cycles)
    # INFER request 64 + 12 bytes, response 10 + 12 bytes.
    assert result.bytes_per_frame == 64 + 12 + 10 + 12
    assert result.fps_link == pytest.approx(1_000_000 / 10 / 98)
    assert board.image == packed.image
    # PING, LOAD_IMAGE, PING, then INFER + READ_COUNTERS per frame.
    assert [c for c, _ in board.executed[:3]] == [link.Command.PING, link.Command.LOAD_IMAGE,
                                                   link.Command.PING]


def test_mismatch_is_detected(model, packed, data):
    x, y = data
    board = board_for(model, packed, wrong_frame=5)
    result = run_frames(Client(board, timeout=0.05), model, packed.image, packed.config.config_id,
                        x, y, progress=False)
    assert result.mismatches == 1 and result.mismatch_frames == [5]


def test_faulty_link_still_exact(model, packed, data):
    x, y = data
    rng = np.random.default_rng(SEED)
    faults = [Fault.NONE] * 3 + [list(Fault)[i] if i < len(Fault) else Fault.NONE
                                 for i in rng.integers(0, 2 * len(Fault), size=60)]
    board = board_for(model, packed, faults=faults)
    client = Client(board, timeout=0.02, retries=6)
    result = run_frames(client, model, packed.image, packed.config.config_id, x, y, progress=False)
    assert result.mismatches == 0, f"seed {SEED}"
    assert client.stats["retries"] > 0


def test_config_mismatch(model, packed, data):
    x, y = data
    board = FakeBoard(config_id=packed.config.config_id ^ 1, compute=bytes, input_len=64)
    with pytest.raises(ConfigMismatch, match="config_id"):
        run_frames(Client(board, timeout=0.05), model, packed.image, packed.config.config_id, x, y,
                   progress=False)

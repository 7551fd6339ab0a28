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


def test_progress_in_a_log_is_whole_lines(model, packed, data, capsys):
    """Progress to a stream that is not a terminal (a log): complete lines, no carriage
    returns; the last one counts every frame and names the mismatch."""
    x, y = data
    board = board_for(model, packed, wrong_frame=2)
    run_frames(Client(board, timeout=0.05), model, packed.image, packed.config.config_id, x, y,
               progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    last = err.splitlines()[-1]
    assert last.startswith(f"{model.name} on ") and "24/24 frame (100 %)" in last
    assert last.endswith("mismatches=1")


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


# -- batches: B frames a request, a padded last group ----------------------------------------

BATCH = 2


@pytest.fixture(scope="module")
def packed2(model):
    return pack(model, batch=BATCH)


def batch_board_for(model, layout, *, wrong=(), counters=None):
    """A board that runs a batch request: splits the payload into frames (tall input: channel c
    of frame b at c * B * hw + b * hw), runs hw.reference per frame, answers the frames' outputs
    in the engine's order (``Layout.encode_output``: an FC that takes the frames in its columns
    answers value f of frame b at f * B + b). ``wrong``: indices of
    frames (counted over the whole run, padding included) whose output gets a flipped bit."""
    B = layout.batch
    C, H, W = model.input_shape
    seen = {"frames": 0, "payloads": []}

    def compute(payload):
        raw = np.frombuffer(payload, dtype=np.int8)
        seen["payloads"].append(raw.copy())
        frames = (raw.reshape(C, B, H, W).transpose(1, 0, 2, 3) if layout.input_tall
                  else raw.reshape(B, C, H, W))
        outs = []
        for f in frames:
            out = run_model(model, f)[-1].reshape(-1).astype(np.int8)
            if seen["frames"] in wrong:
                out[0] ^= 1
            seen["frames"] += 1
            outs.append(out.reshape(layout.output_shape))
        return layout.encode_output(np.stack(outs)).tobytes()

    board = FakeBoard(config_id=layout.config.config_id, compute=compute,
                      input_len=B * C * H * W, counters=counters or (lambda f: {
                          "cycles": 2632, "busy": 2600, "stalls": 4, "macs": 49664}))
    return board, seen


def test_batch_groups_frames_and_drops_the_padding(model, packed2, data):
    """5 frames at batch 2: 3 INFER requests of 2 frames, the last padded with a zero frame whose
    (here deliberately wrong) result is discarded; 5 results checked against hw.reference."""
    layout = packed2.layout
    assert layout.batch == BATCH and layout.input_len == BATCH * 64 and layout.output_tall
    x, y = data[0][:5], data[1][:5]
    board, seen = batch_board_for(model, layout, wrong={5})
    result = run_frames(Client(board, timeout=0.05), model, packed2.image,
                        packed2.config.config_id, x, y, layout=layout, progress=False)
    infers = [c for c, _ in board.executed if c == link.Command.INFER]
    assert len(infers) == 3 and result.requests == 3
    assert result.frames == 5 and result.batch == BATCH and result.padded_frames == 1
    assert result.mismatches == 0 and result.reference_disagreements == 0
    # Each request carried its frames (the last: frame 4 and a zero frame).
    C, H, W = model.input_shape
    for r, payload in enumerate(seen["payloads"]):
        frames = (payload.reshape(C, BATCH, H, W).transpose(1, 0, 2, 3) if layout.input_tall
                  else payload.reshape(BATCH, C, H, W))
        want = np.concatenate([x, np.zeros((1, C, H, W), np.int8)])[2 * r:2 * r + 2]
        assert np.array_equal(frames, want), r
    # Accuracy over the 5 real frames, from hw.reference run frame by frame.
    expected = np.stack([run_model(model, f)[-1].reshape(-1) for f in x])
    assert result.accuracy == pytest.approx(100 * np.mean(expected.argmax(1) == y))
    assert result.accuracy == result.golden_accuracy
    # Cycles per frame: the engine's counter over a request / B; bytes per frame likewise.
    assert result.cycles_per_frame == pytest.approx(2632 / BATCH)
    assert result.counters["macs"] == pytest.approx(49664 / BATCH)
    assert result.bytes_per_request == (BATCH * 64 + 12) + (BATCH * 10 + 12)
    assert result.bytes_per_frame == result.bytes_per_request / BATCH
    assert "3 requests" in result.summary() and "padded with 1 zero frame" in result.summary()


def test_batch_mismatch_names_the_frame(model, packed2, data):
    """A wrong result in the second frame of the second request is frame 3, not its request."""
    x, y = data[0][:5], data[1][:5]
    board, _ = batch_board_for(model, packed2.layout, wrong={3})
    result = run_frames(Client(board, timeout=0.05), model, packed2.image,
                        packed2.config.config_id, x, y, layout=packed2.layout, progress=False)
    assert result.mismatches == 1 and result.mismatch_frames == [3]


def test_batch_one_layout_sends_the_same_bytes(model, packed, data):
    """With the batch-1 layout the requests are the frames' own bytes, as without a layout."""
    x, y = data[0][:3], data[1][:3]
    board, seen = batch_board_for(model, packed.layout)
    result = run_frames(Client(board, timeout=0.05), model, packed.image, packed.config.config_id,
                        x, y, layout=packed.layout, progress=False)
    assert result.mismatches == 0 and result.requests == 3 and result.padded_frames == 0
    assert [p.tobytes() for p in seen["payloads"]] == [f.tobytes() for f in x]
    assert result.bytes_per_frame == 64 + 12 + 10 + 12 and result.cycles_per_frame == 2632


def test_batch_needs_the_activation_memory(model, packed):
    """Packing a batch for an engine sized for one frame names --batch and the bytes needed."""
    from hw.layout import requirements
    from host.pack import PackError

    cfg = packed.config
    req = requirements(model, rows=cfg.rows, cols=cfg.cols, groups=cfg.groups, batch=2)
    # (The batch's mappings may also take a few more weight entries; give the engine those, so
    # that the activation memory is what does not fit.)
    cfg = cfg.replace(weight_depth=max(cfg.weight_depth, req["weight_depth"][0]))
    need = req["act_depth"][0]
    assert need > cfg.act_depth
    with pytest.raises(PackError, match=rf"'DigitsNet_PSD2_P8' does not fit the engine at --batch 2: "
                                        rf".* needs {need} activation bytes.*act_depth = {cfg.act_depth}"):
        pack(model, config=cfg, batch=2)
    # The config sized for the batch holds it, and then any smaller batch too.
    big = pack(model, batch=3).config
    assert pack(model, config=big, batch=2).layout.batch == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(PackError, match="whole number of frames"):
            pack(model, batch=bad)

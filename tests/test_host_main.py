"""``python -m host run --port <pty>`` end to end against a FakeBoard serving the pty's other side."""

import json
import os
import select
import threading
import tty

import numpy as np
import pytest

from hw.reference import run_model
from host.__main__ import main
from host.fakeboard import FakeBoard
from host.pack import pack
from host.synthetic import random_qmodel

SEED = 4


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    model = random_qmodel("DigitsNet_PSD2_P8", seed=SEED)
    path = tmp_path_factory.mktemp("m") / "digits.q.npz"
    model.save(path)
    return model, path


def serve_pty(board):
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            r, _, _ = select.select([master], [], [], 0.01)
            if r:
                board.write(os.read(master, 65536))
            out = board.read(0)
            if out:
                os.write(master, out)

    th = threading.Thread(target=loop, daemon=True)
    th.start()

    def close():
        stop.set()
        th.join()
        os.close(master)
        os.close(slave)

    return os.ttyname(slave), close


def test_run_over_pty_json(model_file, capsys):
    model, path = model_file
    packed = pack(model)

    def compute(frame):
        x = np.frombuffer(frame, dtype=np.int8).reshape(model.input_shape)
        return run_model(model, x)[-1].astype(np.int8).tobytes()

    board = FakeBoard(config_id=packed.config.config_id, compute=compute, input_len=64,
                      counters=lambda f: {"cycles": 2500, "busy": 2400, "stalls": 0, "macs": 1})
    port, close = serve_pty(board)
    try:
        rc = main(["run", "--model", str(path), "--port", port, "--frames", "12", "--json",
                   "--no-progress", "--baud", "115200"])
    finally:
        close()
    out = json.loads(capsys.readouterr().out)
    assert rc == 0, f"seed {SEED}"
    assert list(out)[:6] == ["frames", "accuracy", "mismatches", "cycles_per_frame", "fps_compute",
                             "fps_link"]
    assert out["frames"] == 12 and out["mismatches"] == 0
    assert out["cycles_per_frame"] == 2500 and out["fps_compute"] == pytest.approx(100e6 / 2500)
    assert out["fps_link"] == pytest.approx(115200 / 10 / (64 + 10 + 24))


@pytest.mark.parametrize("args, message", [
    (["--frames", "0"], "--frames must be a positive integer"),
    (["--uart"], "--uart and --divisor apply to --sim only"),
    (["--array", "3x3"], "power of two"),
])
def test_run_bad_input_exits_2(model_file, capsys, args, message):
    _, path = model_file
    assert main(["run", "--model", str(path), "--port", "/dev/null"] + args) == 2
    assert message in capsys.readouterr().err


def test_run_missing_port_exits_3(model_file, capsys):
    _, path = model_file
    assert main(["run", "--model", str(path), "--port", "/nonexistent/tty", "--frames", "1",
                 "--no-progress"]) == 3
    assert "Cannot open serial port '/nonexistent/tty'" in capsys.readouterr().err


def test_run_batch_over_pty_json(model_file, capsys):
    """--batch 2 --frames 5: three INFER requests of 2 frames (the last padded with a zero frame,
    whose result is dropped), each answered with both frames' hw.reference outputs in the
    engine's order (``Layout.encode_output``)."""
    model, path = model_file
    packed = pack(model, batch=2)
    layout = packed.layout
    C, H, W = model.input_shape
    requests = []

    def compute(payload):
        raw = np.frombuffer(payload, dtype=np.int8)
        requests.append(raw.copy())
        frames = (raw.reshape(C, 2, H, W).transpose(1, 0, 2, 3) if layout.input_tall
                  else raw.reshape(2, C, H, W))
        outs = [run_model(model, f)[-1].reshape(layout.output_shape) for f in frames]
        return layout.encode_output(np.stack(outs)).tobytes()

    board = FakeBoard(config_id=packed.config.config_id, compute=compute, input_len=128,
                      counters=lambda f: {"cycles": 3000, "busy": 2900, "stalls": 0, "macs": 1})
    port, close = serve_pty(board)
    try:
        rc = main(["run", "--model", str(path), "--port", port, "--frames", "5", "--batch", "2",
                   "--json", "--no-progress", "--baud", "115200"])
    finally:
        close()
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert rc == 0, f"seed {SEED}"
    assert out["frames"] == 5 and out["mismatches"] == 0 and out["batch"] == 2
    assert out["requests"] == 3 and len(requests) == 3 and out["padded_frames"] == 1
    last = (requests[-1].reshape(C, 2, H, W).transpose(1, 0, 2, 3) if layout.input_tall
            else requests[-1].reshape(2, C, H, W))
    assert not last[1].any() and last[0].any()  # frame 4, then the zero padding
    assert out["cycles_per_frame"] == 1500 and out["fps_compute"] == pytest.approx(100e6 / 1500)
    assert out["fps_link"] == pytest.approx(115200 / 10 / ((128 + 12 + 20 + 12) / 2))
    assert "padded with 1 zero frame whose results are discarded" in captured.err


@pytest.mark.parametrize("command", ["run", "pack"])
@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_batch_is_an_argparse_error(model_file, capsys, command, value):
    _, path = model_file
    where = ["--port", "/dev/null"] if command == "run" else ["--out", "/dev/null"]
    with pytest.raises(SystemExit) as e:
        main([command, "--model", str(path), *where, "--batch", value])
    assert e.value.code == 2
    assert f"argument --batch: must be a whole number of frames >= 1, not '{value}'" in capsys.readouterr().err


def test_help_explains_batch(capsys):
    for command in ("run", "pack"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--batch B" in text and "activation memory" in text and "must hold all B frames" in text

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

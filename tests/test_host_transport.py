"""host.transport.SerialTransport over a pseudo-terminal (the way the simulated board is reached)."""

import os
import threading
import time
import tty

import pytest

from host.fakeboard import FakeBoard
from host.protocol import Client
from host.transport import SerialTransport, TransportError


@pytest.fixture
def pty_pair():
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    yield master, path
    os.close(master)
    os.close(slave)


def test_bytes_both_ways_are_transparent(pty_pair):
    """Every byte value passes unchanged (no echo, no CR/LF translation, no flow control)."""
    master, path = pty_pair
    data = bytes(range(256)) * 4
    with SerialTransport(path, baud=115200) as t:
        t.write(data)
        got = b""
        while len(got) < len(data):
            got += os.read(master, 4096)
        assert got == data
        os.write(master, data[::-1])
        back = b""
        deadline = time.monotonic() + 5
        while len(back) < len(data) and time.monotonic() < deadline:
            back += t.read(0.5)
        assert back == data[::-1]
        # Nothing pending: read returns empty after the timeout.
        t0 = time.monotonic()
        assert t.read(0.05) == b""
        assert time.monotonic() - t0 >= 0.04


def test_client_over_pty(pty_pair):
    """The protocol client over a pty, with a FakeBoard serving the master side in a thread."""
    master, path = pty_pair
    board = FakeBoard(config_id=7, compute=lambda f: f[::-1], input_len=4)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            import select
            r, _, _ = select.select([master], [], [], 0.02)
            if r:
                board.write(os.read(master, 65536))
            out = board.read(0)
            if out:
                os.write(master, out)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        with SerialTransport(path) as t:
            client = Client(t, timeout=1.0)
            assert client.ping().config_id == 7
            client.load_image(b"\0" * 5000)
            assert client.infer(b"abcd") == b"dcba"
    finally:
        stop.set()
        th.join()


def test_open_error_names_port():
    with pytest.raises(TransportError, match="Cannot open serial port '/nonexistent/tty0'"):
        SerialTransport("/nonexistent/tty0")


@pytest.mark.parametrize("kwargs, message", [
    ({"port": ""}, "Serial port must be a non-empty device path or URL, not ''"),
    ({"port": "loop://", "baud": 0}, "Baud rate must be a positive integer, not 0"),
])
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SerialTransport(**kwargs)


def test_url_port_without_file_descriptor():
    """pyserial's loop:// has no fileno: the timeout path still returns what was written."""
    with SerialTransport("loop://") as t:
        t.write(b"\xA5\x5Aabc")
        got = b""
        while len(got) < 5:
            chunk = t.read(0.5)
            assert chunk, "loop:// lost bytes"
            got += chunk
        assert got == b"\xA5\x5Aabc"
        assert t.read(0.01) == b""

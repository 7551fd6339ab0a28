"""The simulated board's pty bridge (host.simboard + host.sim_bridge) on a stand-in echo design,
and the host client's recovery from a model that never finishes on the real engine.

The stand-in has LinkedEngine's byte-stream ports; it echoes every byte plus one, through a FIFO
whose output is throttled (ready/valid back-pressure both ways), so the test checks the bridge
alone: every byte crosses the pty and the Verilated streams exactly once, in order.
"""

import random
import time

import pytest
from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from gateware.interfaces import ByteStream
from host.simboard import SimBoard
from host.transport import SerialTransport

from conftest import runaway_sections

pytestmark = pytest.mark.verilator


class EchoPlusOne(wiring.Component):
    rx: In(ByteStream)
    tx: Out(ByteStream)

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFO(width=8, depth=4)
        # Accept only on 3 cycles of 4 and send on 2 of 3: back-pressure both ways.
        count = Signal(4)
        m.d.sync += count.eq(count + 1)
        m.d.comb += [
            fifo.w_data.eq(self.rx.payload + 1),
            fifo.w_en.eq(self.rx.valid & (count[:2] != 0)),
            self.rx.ready.eq(fifo.w_rdy & (count[:2] != 0)),
            self.tx.payload.eq(fifo.r_data),
            self.tx.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.tx.ready),
        ]
        return m


def test_stream_bridge_round_trip(tmp_path):
    from hw.array import ArrayConfig

    seed = 5
    rng = random.Random(seed)
    board = SimBoard(config=ArrayConfig(), top=EchoPlusOne(), build_dir=tmp_path)
    try:
        with SerialTransport(board.port) as t:
            for size in (1, 7, 300, 5000):
                data = bytes(rng.randrange(256) for _ in range(size))
                t.write(data)
                got = b""
                deadline = time.monotonic() + 60
                while len(got) < size and time.monotonic() < deadline:
                    got += t.read(1.0)
                assert got == bytes((b + 1) & 0xFF for b in data), f"seed {seed}, size {size}"
            # Idle for a while: no spurious bytes.
            assert t.read(0.3) == b""
    finally:
        board.close()
    assert "FAIL=0" in board.log_path.read_text() or "PASS" in board.log_path.read_text()


def test_client_recovers_from_a_model_that_runs_for_minutes(tmp_path):
    """The host client against the simulated engine (LinkedEngine under Verilator, over a pty):
    a model whose first layer runs for minutes (``runaway_sections``) never answers its INFER; the client times
    out, each retry aborts the run, and LinkTimeout says so. The board stays usable: a PING
    answers with the image still loaded, and a good image then infers bit-exact."""
    import numpy as np

    from bench.layers import random_layer_model
    from hw.array import ArrayConfig
    from hw.image import build_image
    from hw.layout import build_layout
    from hw.reference import run_model
    from host.protocol import Client, LinkTimeout

    seed = 9
    q = random_layer_model(seed=seed, c_in=3, c_out=4, h=5, w=5, k=3, stride=1, relu=True,
                           variant="PSD2_P8")
    # 64 KiB of activations: the runaway layer's ~65,000 passes of ~300 cycles take minutes on
    # Verilator, far past the client's wait (with the model's own sizing it would reach the
    # memory's end, and its ADDRESS_FAULT, within the second).
    config = ArrayConfig(**{**ArrayConfig.for_model(q, rows=2, cols=2).as_dict(), "act_depth": 1 << 16})
    layout = build_layout(q, config)
    runaway = runaway_sections(layout.sections, config)
    frame = np.random.default_rng(seed).integers(-128, 128, q.input_shape).astype(np.int8)
    board = SimBoard(config=config, build_dir=tmp_path)
    try:
        with SerialTransport(board.port) as t:
            client = Client(t, timeout=1.0, retries=1)
            client.load_image(build_image(runaway, config.config_id))
            with pytest.raises(LinkTimeout, match="each new request aborts it"):
                client.infer(frame.tobytes())
            assert client.ping().image_loaded, f"seed {seed}"
            client.load_image(build_image(layout.sections, config.config_id))
            got = client.infer(frame.tobytes(), output_len=layout.output_len)
    finally:
        board.close()
    want = run_model(q, frame)[-1].reshape(-1)
    assert (layout.decode_output(got).reshape(-1) == want).all(), f"seed {seed}"

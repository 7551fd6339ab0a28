# amaranth: UnusedElaboratable=no
"""amaranth.sim tests of gateware.link.Link against hw.link / hw.image as the reference.

The testbench plays the host (random gaps between request bytes, random ready on responses) and the
engine core (random ready on load words; on start, it answers with bytes computed from the INPUT words
it received, or, playing a core whose address guard abandons the frame, raises ``fault``).
Expected responses come from a small request-level model built on hw.link and
hw.image.parse_image, so the hardware and the software definition of the formats are cross-checked.
"""

import random
import struct

import numpy as np
import pytest
from amaranth.sim import Simulator

from gateware.interfaces import MODEL_CHECK_LATENCY
from gateware.link import Link
from hw.image import ImageError, build_image, parse_image
from hw.link import (NAK, MAX_PAYLOAD, Command, ErrorCode, Frame, FrameDecoder, counters_payload,
                     encode_frame, nak_payload, parse_nak, ping_payload, response_cmd)
from hw.memory_map import COUNTERS, Space

TIMEOUT = 48
CAPACITY = {Space.DESCRIPTORS: 8, Space.WEIGHTS: 40}


def mock_result(frame: bytes, n: int) -> bytes:
    # What the mock core answers for an input frame: depends on every input byte and position.
    return bytes((frame[i % len(frame)] ^ (37 * i + sum(frame))) & 0xFF for i in range(n))


class Model:
    """Request-level reference: the response hw.link / hw.image say the engine must give."""

    def __init__(self, *, config_id, input_len, output_len, counters):
        self.config_id, self.input_len, self.output_len = config_id, input_len, output_len
        self.counters = counters
        self.loaded = False
        self.faulting = False    # the core's address guard abandons every frame

    @staticmethod
    def model_runs(sections) -> bool:
        """The mock core's rule for a runnable model: the load wrote DESCRIPTORS word 0, odd."""
        desc = sections.get(Space.DESCRIPTORS)
        return desc is not None and len(desc) > 0 and int(desc[0]) & 1 == 1

    def respond(self, cmd, seq, payload):
        def nak(code):
            return Frame(NAK, seq, nak_payload(code=code, cmd=cmd))
        if cmd == Command.PING:
            if payload:
                return nak(ErrorCode.BAD_LENGTH)
            return Frame(0x81, seq, ping_payload(config_id=self.config_id, loaded=self.loaded))
        if cmd == Command.LOAD_IMAGE:
            self.loaded = False
            try:
                _, sections = parse_image(payload, config_id=self.config_id, capacity=CAPACITY)
            except ImageError as e:
                return nak(e.code)
            if not self.model_runs(sections):
                return nak(ErrorCode.BAD_MODEL)
            self.loaded = True
            return Frame(0x82, seq, b"")
        if cmd == Command.INFER:
            if not self.loaded:
                return nak(ErrorCode.NO_IMAGE)
            if len(payload) != self.input_len:
                return nak(ErrorCode.BAD_FRAME_SIZE)
            if self.faulting:
                return nak(ErrorCode.ADDRESS_FAULT)
            return Frame(0x83, seq, mock_result(payload, self.output_len))
        if cmd == Command.READ_COUNTERS:
            if payload:
                return nak(ErrorCode.BAD_LENGTH)
            if not self.loaded:
                return nak(ErrorCode.NO_IMAGE)
            return Frame(0x84, seq, counters_payload(self.counters))
        return nak(ErrorCode.BAD_COMMAND)


class Bench:
    """A Link in a simulator with a host process and a mock core process."""

    def __init__(self, seed, *, config_id=0x1234ABCD, input_len=13, output_len=10,
                 p_gap=0.2, p_ready=0.6, registered_start=False):
        self.seed = seed
        self.rng = random.Random(seed)
        self.dut = Link(timeout=TIMEOUT, capacity=CAPACITY)
        self.counters = {name: self.rng.getrandbits(32) for name in COUNTERS}
        self.model = Model(config_id=config_id, input_len=input_len, output_len=output_len,
                           counters=self.counters)
        self.p_gap, self.p_ready = p_gap, p_ready
        self.loads = []          # (space, addr, data) words the core received
        self.starts = 0
        self.aborts = 0
        self.hang = False        # the mock core never answers (a model that runs too long)
        self.fault = False       # the mock core abandons each frame: busy a while, then fault
        # Like the real sequencer, the mock takes ``start`` a cycle late (``busy`` covers that
        # cycle, the previous frame's ``fault`` is still up) and ignores an abort until then.
        self.registered_start = registered_start
        self.ticks = 0           # host-side clock cycles

    async def send(self, ctx, data, *, limit=2000):
        rx = self.dut.rx
        for byte in data:
            while self.rng.random() < self.p_gap:
                await ctx.tick()
                self.ticks += 1
            ctx.set(rx.valid, 1)
            ctx.set(rx.payload, byte)
            for _ in range(limit):
                _, _, ready = await ctx.tick().sample(rx.ready)
                self.ticks += 1
                if ready:
                    break
            else:
                raise AssertionError(f"request byte not taken in {limit} cycles (seed {self.seed})")
            ctx.set(rx.valid, 0)

    async def receive(self, ctx, *, limit=20000):
        tx = self.dut.tx
        dec = FrameDecoder()
        for _ in range(limit):
            ready = self.rng.random() < self.p_ready
            ctx.set(tx.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(tx.valid, tx.payload)
            self.ticks += 1
            if valid and ready:
                frames = dec.feed(bytes([payload]))
                if frames:
                    ctx.set(tx.ready, 0)
                    assert len(frames) == 1 and dec.pending == 0, f"seed {self.seed}"
                    return frames[0]
        raise AssertionError(f"no response within {limit} cycles (seed {self.seed})")

    async def idle(self, ctx, cycles):
        for _ in range(cycles):
            _, _, valid = await ctx.tick().sample(self.dut.tx.valid)
            assert not valid, f"unexpected response byte (seed {self.seed})"

    async def core(self, ctx):
        core, m = self.dut.core, self.model
        ctx.set(core.config_id, m.config_id)
        ctx.set(core.input_len, m.input_len)
        ctx.set(core.output_len, m.output_len)
        for name, value in self.counters.items():
            ctx.set(getattr(core.counters, name), value)
        pending, res_valid = [], False
        start_q = False             # a start not yet taken (registered_start)
        fault, fault_left = False, 0  # fault_left: cycles until a faulting frame gives up
        # Descriptor word 0 of the current load (None: not written since the load began), and
        # the model_ok it gives, shown MODEL_CHECK_LATENCY cycles late as the contract allows.
        word0, shown = None, [False] * MODEL_CHECK_LATENCY

        def take_start():
            nonlocal pending, fault, fault_left
            fault = False
            if self.fault:
                fault_left = self.rng.randrange(1, 40)
            else:
                words = [d for s, a, d in self.loads if s == Space.INPUT]
                frame = b"".join(struct.pack("<I", w) for w in words)[:m.input_len]
                pending = list(mock_result(frame, m.output_len))

        while True:
            ctx.set(core.load.ready, self.rng.random() < self.p_ready)
            if pending and not res_valid and not self.hang and self.rng.random() < self.p_ready:
                res_valid = True
                ctx.set(core.result.payload.data, pending[0])
                ctx.set(core.result.payload.last, len(pending) == 1)
            ctx.set(core.result.valid, res_valid)
            ctx.set(core.busy, bool(pending) or start_q or fault_left > 0)
            ctx.set(core.fault, fault)
            ctx.set(core.model_ok, shown[0])
            _, _, lv, lr, lp, start, rr, unload, abort = await ctx.tick().sample(
                core.load.valid, core.load.ready, core.load.payload, core.start, core.result.ready,
                core.unload, core.abort)
            if unload:
                word0 = None
            if lv and lr:
                self.loads.append((lp.space, lp.addr, lp.data))
                if lp.space == Space.DESCRIPTORS and lp.addr == 0:
                    word0 = lp.data
            shown = shown[1:] + [word0 is not None and word0 & 1 == 1]
            if res_valid and rr:
                pending.pop(0)
                res_valid = False
            if fault_left:
                fault_left -= 1
                fault = fault_left == 0
            if abort:
                if pending or fault_left:
                    self.aborts += 1
                    pending, res_valid, fault_left = [], False, 0
                else:
                    # The real core ignores it (lost, if a start is still to be taken).
                    assert self.registered_start, f"abort while idle (seed {self.seed})"
            if start_q:
                start_q = False
                take_start()
            if start:
                busy = pending or start_q or fault_left
                assert not busy, f"start while busy (seed {self.seed})"
                self.starts += 1
                if self.registered_start:
                    start_q = True
                else:
                    take_start()

    def run(self, host, *processes):
        sim = Simulator(self.dut)
        sim.add_clock(1e-6)
        sim.add_process(self.core)
        for process in processes:
            sim.add_process(process)
        sim.add_testbench(host)
        sim.run()

    async def request(self, ctx, cmd, payload=b"", *, seq=None, corrupt=None):
        """Send one request (optionally corrupted) and check the response against the model."""
        seq = self.rng.getrandbits(8) if seq is None else seq
        wire = bytearray(encode_frame(cmd=cmd, seq=seq, payload=payload))
        self.loads.clear()
        if corrupt == "crc":
            bit = self.rng.randrange(8 * 8, 8 * len(wire))   # after the header: the CRC catches it
            wire[bit // 8] ^= 1 << (bit % 8)
            expect = Frame(NAK, seq, nak_payload(code=ErrorCode.BAD_CRC, cmd=cmd))
            if cmd == Command.LOAD_IMAGE:
                self.model.loaded = False
        elif corrupt == "cut":
            cut = self.rng.randrange(3, len(wire))
            wire = wire[:cut]
            expect = Frame(NAK, seq if cut > 3 else 0,
                           nak_payload(code=ErrorCode.TIMEOUT, cmd=cmd))
            if cut >= 8 and cmd == Command.LOAD_IMAGE:
                self.model.loaded = False
        else:
            expect = self.model.respond(cmd, seq, payload)
        starts = self.starts
        await self.send(ctx, wire)
        got = await self.receive(ctx)
        assert got == expect, f"seed {self.seed}: {cmd=} {corrupt=}\n got  {got}\n want {expect}"
        ok = got.cmd == response_cmd(cmd)
        # A frame the core abandoned was started too.
        faulted = got.is_nak and parse_nak(got.payload) == (ErrorCode.ADDRESS_FAULT, cmd)
        started = (ok or faulted) and cmd == Command.INFER
        assert self.starts == starts + started, f"seed {self.seed}"
        assert ctx.get(self.dut.image_loaded) == self.model.loaded, f"seed {self.seed}"
        return ok


def _image(rng, config_id, *, runs=True, **kw):
    """A random image; ``runs``: its model passes the mock core's check (else it fails it)."""
    desc = [rng.getrandbits(32) for _ in range(rng.randrange(1 if runs else 0, 9))]
    if desc:
        desc[0] = desc[0] | 1 if runs else desc[0] & ~1
    sections = {Space.DESCRIPTORS: np.array(desc, dtype=np.int64),
                Space.WEIGHTS: np.array([rng.getrandbits(32) for _ in range(rng.randrange(41))])}
    order = list(sections)
    rng.shuffle(order)
    sections = {s: sections[s] for s in order}
    return build_image(sections, config_id, **kw), sections


def _expected_loads(sections):
    return [(int(s), a, int(w)) for s, words in sections.items() for a, w in enumerate(words)]


def test_constructor_validates():
    with pytest.raises(ValueError, match="Timeout must be a positive integer number of cycles, not 0"):
        Link(timeout=0)
    with pytest.raises(ValueError, match="Capacity of BIAS must be an integer in 0..262144, not -1"):
        Link(timeout=5, capacity={Space.BIAS: -1})
    with pytest.raises(ValueError, match="Capacity key must be a Space, not 9"):
        Link(timeout=5, capacity={9: 1})


@pytest.mark.parametrize("seed", [1, 2])
def test_session(seed):
    """A whole session: errors before an image, a good image, inference, counters, ping."""
    bench = Bench(seed)
    cid = bench.model.config_id

    async def host(ctx):
        rng = bench.rng
        assert await bench.request(ctx, Command.PING)
        for cmd in (Command.INFER, Command.READ_COUNTERS):
            assert not await bench.request(ctx, cmd, bytes(13))          # NO_IMAGE
        assert not await bench.request(ctx, 0x42)                         # BAD_COMMAND
        assert not await bench.request(ctx, Command.PING, b"x")           # BAD_LENGTH
        image, sections = _image(rng, cid)
        assert await bench.request(ctx, Command.LOAD_IMAGE, image)
        assert bench.loads == _expected_loads(sections), f"seed {seed}"
        assert await bench.request(ctx, Command.PING)
        for n in (13, 12, 14, 0):
            frame = bytes(rng.getrandbits(8) for _ in range(n))
            assert await bench.request(ctx, Command.INFER, frame) == (n == 13)
            if n == 13:
                padded = frame + bytes(3)
                assert bench.loads == [(int(Space.INPUT), i, struct.unpack_from("<I", padded, 4 * i)[0])
                                       for i in range(4)], f"seed {seed}"
        assert await bench.request(ctx, Command.READ_COUNTERS)
        # Too long to accept: refused right after the header.
        header = encode_frame(cmd=Command.LOAD_IMAGE, seq=9, payload=b"")[:4]
        await bench.send(ctx, header + struct.pack("<I", MAX_PAYLOAD + 1))
        got = await bench.receive(ctx)
        assert got == Frame(NAK, 9, nak_payload(code=ErrorCode.BAD_LENGTH, cmd=2)), f"seed {seed}"
        assert await bench.request(ctx, Command.PING)

    bench.run(host)


@pytest.mark.parametrize("seed", [21, 22])
def test_counters_are_one_snapshot(seed):
    """READ_COUNTERS answers with the counters of one cycle even when they move while the answer
    goes out (a frame still draining after an abort moves them), and a response byte on offer
    never changes while the host holds ``ready`` low (the rule tests/test_formal.py proves for
    all time). The moving counters change every byte of every field each cycle, so a torn
    answer cannot decode to one cycle's values."""
    bench = Bench(seed, p_gap=0.0, p_ready=0.3)
    dut, mask = bench.dut, 0xFFFF_FFFF
    moving = []

    def at(t):
        return [(t * 0x0101_0101 + i) & mask for i in range(len(COUNTERS))]

    async def counting(ctx):
        t = 0
        while True:
            if moving:
                for name, v in zip(COUNTERS, at(t)):
                    ctx.set(getattr(dut.core.counters, name), v)
            await ctx.tick()
            t += 1

    async def watch(ctx):
        held = None
        async for _, _, valid, ready, payload in ctx.tick().sample(dut.tx.valid, dut.tx.ready,
                                                                   dut.tx.payload):
            if held is not None:
                assert valid and payload == held, f"byte on offer changed while stalled (seed {seed})"
            held = payload if valid and not ready else None

    async def host(ctx):
        image, _ = _image(bench.rng, bench.model.config_id)
        assert await bench.request(ctx, Command.LOAD_IMAGE, image)
        moving.append(True)
        for n in range(3):
            await bench.send(ctx, encode_frame(cmd=Command.READ_COUNTERS, seq=n, payload=b""))
            got = await bench.receive(ctx)
            assert got.cmd == response_cmd(Command.READ_COUNTERS) and got.seq == n, f"seed {seed}"
            values = list(struct.unpack("<4I", got.payload))
            # (Field 0's low byte is the cycle's; the run is far shorter than 2**16 cycles.)
            assert any(values == at(c) for c in range(values[0] & 0xFF, 1 << 16, 256)), \
                f"torn counters {[hex(v) for v in values]} (seed {seed})"

    bench.run(host, counting, watch)


@pytest.mark.parametrize("seed, p_gap, p_ready", [(3, 0.2, 0.6), (4, 0.0, 1.0), (5, 0.5, 0.2),
                                                   (6, 0.05, 0.9)])
def test_random_requests_and_corruption(seed, p_gap, p_ready):
    """Random requests, some with a bit flipped or cut short, with garbage between frames."""
    bench = Bench(seed, p_gap=p_gap, p_ready=p_ready)
    rng = bench.rng
    cid = bench.model.config_id

    async def host(ctx):
        for _ in range(20):
            kind = rng.choice(["image", "badimage", "infer", "infer", "ping", "counters"])
            corrupt = rng.choice([None, None, None, "crc", "cut"])
            if kind == "image":
                cmd, (payload, _) = Command.LOAD_IMAGE, _image(rng, cid, runs=rng.random() < 0.8)
            elif kind == "badimage":
                cmd, payload = Command.LOAD_IMAGE, bytearray(_image(rng, cid)[0])
                i = rng.randrange(len(payload))
                payload[i] ^= 1 << rng.randrange(8)      # any check may fire; the model knows which
                payload = bytes(payload)
            elif kind == "infer":
                cmd = Command.INFER
                payload = bytes(rng.getrandbits(8) for _ in range(rng.choice([13, 13, 7])))
            elif kind == "ping":
                cmd, payload = Command.PING, b""
            else:
                cmd, payload = Command.READ_COUNTERS, b""
            # Garbage that holds no sync: a lone 0xA5 or 0x5A must not start a frame.
            await bench.send(ctx, bytes(rng.choice([0x00, 0x5A, 0xA5, 0x33]) if i == 0 else
                                        rng.choice([0x00, 0x33]) for i in range(rng.randrange(4))))
            await bench.request(ctx, cmd, payload, corrupt=corrupt)

    bench.run(host)


@pytest.mark.parametrize("case", ["magic", "version", "config", "total", "space", "repeat",
                                  "capacity", "overrun", "short", "crc", "tiny"])
def test_image_rejections(case):
    """Each image check, with the frame CRC good: the NAK code is parse_image's."""
    bench = Bench(11)
    cid = bench.model.config_id
    rng = bench.rng

    def reseal(words):
        import zlib
        data = struct.pack(f"<{len(words) - 1}I", *words[:-1])
        return data + struct.pack("<I", zlib.crc32(data))

    base = list(struct.unpack("<16I", build_image(
        {Space.DESCRIPTORS: np.arange(3), Space.WEIGHTS: np.arange(6)}, cid)))
    w = list(base)
    if case == "magic":
        w[0] ^= 1
    elif case == "version":
        w[1] += 1
    elif case == "config":
        w[2] ^= 1 << 31
    elif case == "total":
        w[3] += 1
    elif case == "space":
        w[4] = 7 | 3 << 8
    elif case == "repeat":
        w[8] = 0 | 6 << 8
    elif case == "capacity":
        w = list(struct.unpack("<47I", build_image({Space.WEIGHTS: np.arange(41)}, cid)))  # holds 40
    elif case == "overrun":
        w[8] = 2 | 7 << 8
    elif case == "short":
        w[1] = 1 | 1 << 16
    image = reseal(w)
    if case == "crc":
        image = image[:-1] + bytes([image[-1] ^ 0x80])
    if case == "tiny":
        image = image[:10]
    with pytest.raises(ImageError):
        parse_image(image, config_id=cid, capacity=CAPACITY)

    async def host(ctx):
        assert await bench.request(ctx, Command.LOAD_IMAGE, build_image({Space.DESCRIPTORS: [1]}, cid))
        assert not await bench.request(ctx, Command.LOAD_IMAGE, image)
        assert not ctx.get(bench.dut.image_loaded)

    bench.run(host)


def test_full_rate():
    """Without gaps or back-pressure the link takes a byte every cycle and answers at once."""
    bench = Bench(21, p_gap=0.0, p_ready=1.0)
    cid = bench.model.config_id
    cycles = {}

    async def host(ctx):
        image, _ = _image(bench.rng, cid)
        for name, cmd, payload in [("ping", Command.PING, b""),
                                   ("image", Command.LOAD_IMAGE, image),
                                   ("infer", Command.INFER, bytes(13))]:
            t0 = bench.ticks
            assert await bench.request(ctx, cmd, payload)
            wire = 12 + len(payload) + 12 + {"ping": 5, "image": 0, "infer": 10}[name]
            cycles[name] = (bench.ticks - t0, wire)

    bench.run(host)
    for name, (took, wire) in cycles.items():
        # One cycle per byte each way, plus the CRC check, the commit, the core's start and
        # (INFER) the core's busy registered before the link waits on its result.
        print(f"{name}: {took} cycles for {wire} bytes on the wire")
        assert took <= wire + 4, f"{name}: {took} cycles for {wire} bytes on the wire"


@pytest.mark.parametrize("seed", [31, 32])
def test_bad_model(seed):
    """A good image whose model the core cannot run is refused with BAD_MODEL and leaves no
    image loaded; the core forgets the previous model's header when a load begins, so an image
    without one is refused too."""
    # A slow core, and descriptor word 0 the last load word: model_ok (MODEL_CHECK_LATENCY
    # cycles late in the mock, as the contract allows) must have followed it at the commit.
    bench = Bench(seed, p_ready=0.1)
    cid = bench.model.config_id

    async def host(ctx):
        good = build_image({Space.WEIGHTS: [7], Space.DESCRIPTORS: [3]}, cid)
        for image, ok in [(good, True), (build_image({Space.DESCRIPTORS: [2]}, cid), False),
                          (good, True), (build_image({Space.WEIGHTS: [1, 2]}, cid), False),
                          (build_image({}, cid), False), (good, True)]:
            got = await bench.request(ctx, Command.LOAD_IMAGE, image)
            assert got == ok, f"seed {seed}"
            assert await bench.request(ctx, Command.INFER, bytes(13)) == ok   # else NO_IMAGE

    bench.run(host)


@pytest.mark.parametrize("seed", [41, 42])
def test_new_request_aborts_a_long_inference(seed):
    """The core never answers an INFER (a model that runs too long); the link sends nothing,
    not even the response header, until the core offers a result byte. Once the host gives up
    and sends another request, the link aborts the core and serves the request; the model
    stays loaded and the next INFER is answered."""
    bench = Bench(seed)
    cid = bench.model.config_id

    async def host(ctx):
        assert await bench.request(ctx, Command.LOAD_IMAGE, _image(bench.rng, cid)[0])
        bench.hang = True
        await bench.send(ctx, encode_frame(cmd=Command.INFER, seq=7, payload=bytes(13)))
        ctx.set(bench.dut.tx.ready, 1)
        await bench.idle(ctx, 200)        # nothing: the core has no result
        assert bench.aborts == 0 and ctx.get(bench.dut.core.busy)
        bench.hang = False
        assert await bench.request(ctx, Command.PING)
        assert bench.aborts == 1, f"seed {seed}"
        assert ctx.get(bench.dut.image_loaded)
        assert await bench.request(ctx, Command.INFER, bytes(range(13)))
        assert bench.aborts == 1, f"seed {seed}"

    bench.run(host)


@pytest.mark.parametrize("seed, p_gap, p_ready", [(51, 0.2, 0.6), (52, 0.0, 1.0), (53, 0.5, 0.2)])
def test_address_fault(seed, p_gap, p_ready):
    """A frame the core's address guard abandons (busy a while, then ``fault``, no result) is
    answered with an ADDRESS_FAULT NAK naming INFER; the image stays loaded and the next
    requests are served. The mock takes ``start`` a cycle late with the previous frame's fault
    still up, so a link that read that stale flag would NAK the good INFER after a faulted one."""
    bench = Bench(seed, p_gap=p_gap, p_ready=p_ready, registered_start=True)
    rng = bench.rng
    cid = bench.model.config_id

    def faulting(on):
        bench.fault = bench.model.faulting = on

    async def host(ctx):
        assert await bench.request(ctx, Command.LOAD_IMAGE, _image(rng, cid)[0])
        assert await bench.request(ctx, Command.INFER, bytes(range(13)))
        faulting(True)
        for seq in (5, 6):
            assert not await bench.request(ctx, Command.INFER, bytes(13), seq=seq)
        assert await bench.request(ctx, Command.PING)      # reports the image still loaded
        faulting(False)
        assert await bench.request(ctx, Command.INFER, bytes(range(1, 14)))
        for _ in range(12):
            faulting(rng.random() < 0.5)
            cmd = rng.choice([Command.INFER, Command.INFER, Command.PING, Command.READ_COUNTERS])
            payload = bytes(rng.getrandbits(8) for _ in range(13)) if cmd == Command.INFER else b""
            await bench.request(ctx, cmd, payload)
        assert bench.aborts == 0, f"seed {seed}"

    bench.run(host)
    assert bench.starts >= 5, f"seed {seed}"


@pytest.mark.parametrize("seed, fault, p_gap", [(43, False, 0.2), (44, False, 0.0),
                                                (45, True, 0.2), (46, True, 0.0)])
def test_request_while_waiting_for_the_result(seed, fault, p_gap):
    """A host byte while the link waits for the core's first result byte (the host gave up)
    aborts the core, and the new request is served. The INFER gets no answer at all, or, when
    the core's address guard abandoned the frame before the byte came, its ADDRESS_FAULT NAK.
    The request often follows the INFER at once: the mock, like the real sequencer, ignores an
    abort before it has taken ``start``, so an abort sent too early is lost (the core stays
    busy)."""
    bench = Bench(seed, p_gap=p_gap, registered_start=True)
    rng = bench.rng
    cid = bench.model.config_id
    frames = []
    tx = bench.dut.tx

    async def collect(ctx):
        dec = FrameDecoder()
        while True:
            ready = rng.random() < 0.7
            ctx.set(tx.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(tx.valid, tx.payload)
            if valid and ready:
                frames.extend(dec.feed(bytes([payload])))

    async def until(ctx, want, *, limit=20000):
        for _ in range(limit):
            if any(f.seq == want.seq and f.cmd == want.cmd for f in frames):
                return
            await ctx.tick()
        raise AssertionError(f"no {want} within {limit} cycles (seed {seed})")

    async def host(ctx):
        ok = Frame(response_cmd(Command.LOAD_IMAGE), 1)
        await bench.send(ctx, encode_frame(cmd=Command.LOAD_IMAGE, seq=1,
                                           payload=_image(rng, cid)[0]))
        await until(ctx, ok)
        assert frames == [ok], f"seed {seed}: {frames}"
        for r in range(8):
            frames.clear()
            bench.hang, bench.fault = not fault, fault
            aborts = bench.aborts
            await bench.send(ctx, encode_frame(cmd=Command.INFER, seq=r, payload=bytes(13)))
            for _ in range(rng.choice([0, 0, 0, 1, 2, rng.randrange(60)])):
                await ctx.tick()
            pong = Frame(response_cmd(Command.PING), 100 + r, ping_payload(config_id=cid,
                                                                           loaded=True))
            await bench.send(ctx, encode_frame(cmd=Command.PING, seq=100 + r))
            await until(ctx, pong)
            nak = Frame(NAK, r, nak_payload(code=ErrorCode.ADDRESS_FAULT, cmd=Command.INFER))
            assert frames in ([pong], [nak, pong]), f"seed {seed} round {r}: {frames}"
            assert not ctx.get(bench.dut.core.busy), f"seed {seed} round {r}: still running"
            if not fault:
                assert bench.aborts == aborts + 1, f"seed {seed} round {r}"
            elif frames[0] == nak:
                assert bench.aborts == aborts, f"seed {seed} round {r}: aborted after the NAK"
        assert bench.aborts >= (1 if fault else 8), f"seed {seed}"
        # The core is usable: an INFER is answered in full.
        frames.clear()
        bench.hang = bench.fault = False
        frame = bytes(range(13))
        bench.loads.clear()               # the mock computes on the INPUT words since then
        await bench.send(ctx, encode_frame(cmd=Command.INFER, seq=9, payload=frame))
        want = Frame(response_cmd(Command.INFER), 9, mock_result(frame, 10))
        await until(ctx, want)
        assert frames == [want], f"seed {seed}: {frames}"

    bench.run(host, collect)

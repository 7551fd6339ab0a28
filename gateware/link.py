"""The link layer in hardware: frame parser, image loader and responder in front of the engine core.

:class:`Link` implements :mod:`hw.link` (frames) and :mod:`hw.image` (the image container) byte by
byte, with no frame buffer: words are routed to the core's load port while they stream in, and the
checks that :func:`hw.image.parse_image` makes are made on the fly in the same order, so both report
the same error code for the same bytes. Because nothing is buffered, the verdict on a frame comes
after its CRC: an image is marked loaded, and an inference started, only once the frame CRC (and
for an image every header check and the image CRC) passed. Only a length above
:data:`hw.link.MAX_PAYLOAD` is refused before the payload (BAD_LENGTH), since the frame could not be
consumed; the receiver then hunts for the next sync from the byte after the header.

A good image whose model the core cannot run (``hw.descriptors.check_descriptors``: no layers, more
than it holds, lengths outside its memories, a layer descriptor missing or with a field out of
its range) is refused with BAD_MODEL and left unloaded.

An INFER is answered once the core has decided: the response header (with ``output_len``) goes
out when the core offers its first result byte, and the result streams behind it. A frame the
core's address guard abandoned (``fault``: a layer addressed memory outside its memories) offers
no result and is answered with an ADDRESS_FAULT NAK instead.
An inference whose result has not been sent in full when the host sends another byte is
abandoned: the host has given up waiting (a model that runs far longer than it expected). The
core is aborted (before or between result bytes: a beat on offer is never withdrawn), the
response stops where it is, if it began (the host's decoder drops the cut frame) and the new
request is served. The engine thus stays usable whatever a loaded model does.
"""

from enum import IntEnum

from amaranth import *
from amaranth.lib import crc, wiring
from amaranth.lib.wiring import In, Out

from hw.image import MAGIC, VERSION, HEADER_WORDS, SPACE_WORDS
from hw.link import SYNC, NAK, MAX_PAYLOAD, RESPONSE_FLAG, Command, ErrorCode
from hw.memory_map import ADDR_BITS, COUNTERS, Space
from gateware.interfaces import ByteStream, CoreSignature, MODEL_CHECK_LATENCY

# A core's model_ok is read when a LOAD_IMAGE commits, at least 5 cycles after its last load
# word was taken (the rest of the image CRC word and the frame CRC follow it).
assert MODEL_CHECK_LATENCY <= 5

__all__ = ["Link", "check_timeout"]


class _Kind(IntEnum):
    """Where a response's payload bytes come from."""
    NONE = 0
    NAK = 1
    PING = 2
    COUNTERS = 3
    RESULT = 4


class _Phase(IntEnum):
    """Where the image parser is inside a LOAD_IMAGE payload."""
    HEAD = 0   # the four header words
    SECT = 1   # expecting a section header
    DATA = 2   # inside a section's data words
    CRC = 3    # expecting the image CRC word
    DONE = 4   # image complete and good


def check_timeout(timeout) -> int:
    """Validate a mid-frame timeout (clock cycles) as :class:`Link` does."""
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 1:
        raise ValueError(f"Timeout must be a positive integer number of cycles, not {timeout!r}")
    return timeout


def _crc32():
    # CRC-32/ISO-HDLC is zlib.crc32: the frame and image CRCs of hw.link and hw.image.
    return crc.catalog.CRC32_ISO_HDLC(8).create()


class Link(wiring.Component):
    """Frame parser, image loader and responder of the engine.

    Parameters
    ----------
    timeout : int
        Clock cycles without a received byte, mid-frame, after which the frame is dropped with a
        TIMEOUT NAK and the parser hunts for the next sync. Choose several byte times of the link.
    capacity : dict of Space -> int, optional
        Words each load space holds (default: its whole address range, ``2**ADDR_BITS``); an image
        section with more words is refused (BAD_SECTION) before any of it is loaded.

    An INFER's response begins when the core offers the first result byte, or is an
    ADDRESS_FAULT NAK when the core's ``fault`` says it abandoned the frame; a byte from the
    host before the result is complete aborts the core and serves the new request.

    Members
    -------
    rx : In(ByteStream)
        Request bytes from the host.
    tx : Out(ByteStream)
        Response bytes to the host.
    core : In(CoreSignature())
        The engine core, driven by this component (the flipped side of the core's own signature).
    image_loaded : Out(1)
        A good image with a model the core can run has been loaded (cleared when a LOAD_IMAGE
        frame begins).
    nak : Out(1)
        One-cycle pulse when a NAK response begins (for an error LED).
    """

    def __init__(self, *, timeout: int, capacity=None):
        check_timeout(timeout)
        caps = {space: SPACE_WORDS for space in Space}
        for space, words in (capacity or {}).items():
            if space not in Space._value2member_map_:
                raise ValueError(f"Capacity key must be a Space, not {space!r}")
            if not isinstance(words, int) or not 0 <= words <= SPACE_WORDS:
                raise ValueError(f"Capacity of {Space(space).name} must be an integer in "
                                 f"0..{SPACE_WORDS}, not {words!r}")
            caps[Space(space)] = words
        self._timeout = timeout
        self._capacity = caps
        super().__init__({
            "rx": In(ByteStream),
            "tx": Out(ByteStream),
            "core": In(CoreSignature()),
            "image_loaded": Out(1),
            "nak": Out(1),
        })

    @property
    def timeout(self) -> int:
        return self._timeout

    @property
    def capacity(self) -> dict:
        return dict(self._capacity)

    def elaborate(self, platform):
        m = Module()
        rx, tx, core = self.rx, self.tx, self.core

        # One frame CRC serves both directions: a request is fully checked before its response
        # begins, so the receive and transmit uses never overlap.
        m.submodules.frame_crc = frame_crc = _crc32()
        m.submodules.img_crc = img_crc = _crc32()

        # Request header.
        cmd = Signal(8)
        seq = Signal(8)
        # Lengths above MAX_PAYLOAD are refused before they are stored: narrower counters.
        length = Signal(range(MAX_PAYLOAD + 1))
        remaining = Signal(range(MAX_PAYLOAD + 1))   # payload bytes still to come
        shreg = Signal(32)       # len and CRC arrive little-endian: shift in from the top
        k = Signal(2)            # byte index inside a multi-byte field
        err = Signal(range(max(ErrorCode) + 1))   # first error of this frame, reported after its CRC
        idle = Signal(range(self._timeout + 1))

        # Payload word assembly (little-endian, 4 bytes a word).
        wbuf = Signal(32)
        bidx = Signal(2)
        word = Signal(32)
        for lane in range(4):   # byte lanes, not a shifter: four 2:1 muxes a bit
            m.d.comb += word[8 * lane:8 * lane + 8].eq(
                Mux(bidx == lane, rx.payload, wbuf[8 * lane:8 * lane + 8]))

        # Image parser.
        phase = Signal(_Phase)
        wpos = Signal(range(MAX_PAYLOAD // 4 + 1))     # word position of `word` in the image
        n_sect = Signal(16)                              # sections still to come
        crc_pos = Signal(range(MAX_PAYLOAD // 4 + 1))  # word position of the image CRC
        # Words between the current one and the image CRC, registered: wpos and crc_pos change
        # only with a completed word, at least four bytes (cycles) before the next one is
        # checked, so the section checks compare against a register instead of an adder chain.
        room = Signal(range(-(MAX_PAYLOAD // 4) - 2, MAX_PAYLOAD // 4 + 1))
        m.d.sync += room.eq(crc_pos - wpos - 1)
        # A completed image word is checked and routed the cycle after its last byte (words are
        # at least four cycles apart), from a register: the checks' compares and the decisions
        # they enable do not follow the receive path in the same cycle.
        img_stb = Signal()
        img_word = Signal(32)
        m.d.sync += img_stb.eq(0)
        sec_left = Signal(range(SPACE_WORDS + 1))
        sec_space = Signal(len(core.load.payload.space))
        sec_addr = Signal(ADDR_BITS)
        seen = Signal(len(Space))
        in_addr = Signal(ADDR_BITS)  # INFER input word address
        # The section-header checks, made on the word's last byte and registered with it (the
        # word is `wbuf`'s low three bytes and that byte), and the state compares, registered
        # every cycle (their registers change only with an image word): the checked word's
        # decisions then start from single flags, not from compares of `img_word`.
        sect_space, sect_words = wbuf[:8], Cat(wbuf[8:24], rx.payload)
        sect_known = Signal()
        sect_cap_ok = Signal()
        sect_fits = Signal()
        sect_seen = Signal()
        sect_empty = Signal()
        known_now, cap_ok_now = Signal(), Signal()
        with m.Switch(sect_space):
            for s in Space:
                with m.Case(s):
                    m.d.comb += [known_now.eq(1),
                                 cap_ok_now.eq(sect_words <= self._capacity[s])]
        m.d.sync += [sect_known.eq(known_now), sect_cap_ok.eq(cap_ok_now),
                     sect_fits.eq(sect_words <= room),   # wpos + 1 + n_words <= crc_pos
                     sect_seen.eq((seen >> sect_space[:3])[0]), sect_empty.eq(sect_words == 0)]
        sect_one, sect_none, data_last, room_none = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [sect_one.eq(n_sect == 1), sect_none.eq(n_sect == 0),
                     data_last.eq(sec_left == 1), room_none.eq(room == 0)]

        # Response.
        rsp_cmd = Signal(8)
        rsp_len = Signal(max(len(core.output_len), 8))
        rsp_kind = Signal(_Kind)
        nak_code = Signal(8)
        # A PING's status or READ_COUNTERS' counters, taken when the request is answered: the
        # response is one snapshot (a frame still draining after an abort moves the counters),
        # and a byte on offer does not change while the UART is busy.
        rsp_word = Signal(len(core.counters.as_value()))
        tx_idx = Signal(len(rsp_len))
        armed = Signal()         # WAIT: the core was busy with the INFER's frame
        busy_q = Signal()        # core.busy a cycle ago
        m.d.sync += busy_q.eq(core.busy)

        rx_take = rx.valid & rx.ready
        tx_take = tx.valid & tx.ready
        stall = core.load.valid & ~core.load.ready
        # idle == timeout, registered with idle: the counter's wide compare sat in front of the
        # receive decisions (a ULX3S critical path on one seed at 904388a, 98.5 MHz).
        idle_full = Signal()
        timed_out = ~rx.valid & idle_full

        m.d.sync += self.nak.eq(0)
        # Pulses to the core, from registers: each fans out to many of its registers.
        unload = Signal()
        abort = Signal()
        m.d.sync += [unload.eq(0), abort.eq(0)]
        m.d.comb += [core.unload.eq(unload), core.abort.eq(abort)]
        with m.If(core.load.ready):
            m.d.sync += core.load.valid.eq(0)

        def emit(space, addr, data):
            m.d.sync += [
                core.load.valid.eq(1),
                core.load.payload.space.eq(space),
                core.load.payload.addr.eq(addr),
                core.load.payload.data.eq(data),
            ]

        def fail(code):
            with m.If(err == 0):
                m.d.sync += err.eq(code)

        def respond(command, nbytes, kind):
            m.d.sync += [rsp_cmd.eq(command), rsp_len.eq(nbytes), rsp_kind.eq(kind)]
            m.next = "T_SYNC0"

        def nak(code):
            m.d.sync += [nak_code.eq(code), self.nak.eq(1)]
            respond(NAK, 2, _Kind.NAK)

        def sections_done(at_crc):
            # After the last section the next word must be the image CRC.
            with m.If(~at_crc):
                fail(ErrorCode.BAD_SECTION)
            with m.Else():
                m.d.sync += phase.eq(_Phase.CRC)

        # The frame CRC covers cmd..payload; the image CRC covers the image up to its CRC word.
        in_frame_crc = Signal()
        in_image_crc = Signal()
        crc_start = Signal()
        tx_side = Signal()       # the response is being sent
        tx_crc_valid = Signal()
        # A sent byte enters the frame CRC a cycle late, from a register: the response byte's
        # select (counters, status) and the CRC update do not share a cycle. The CRC state waits
        # for that last update before it sends (one cycle per response).
        tx_crc_byte = Signal(8)
        tx_crc_take = Signal()
        m.d.sync += [tx_crc_byte.eq(tx.payload), tx_crc_take.eq(tx_crc_valid)]
        m.d.comb += [
            frame_crc.start.eq(crc_start),
            frame_crc.data.eq(Mux(tx_side, tx_crc_byte, rx.payload)),
            frame_crc.valid.eq(Mux(tx_side, tx_crc_take, rx_take & in_frame_crc)),
        ]
        # The image CRC takes each byte a cycle late, as the image words are checked: `phase`
        # then reflects every word completed before the byte.
        crc_byte = Signal(8)
        crc_take = Signal()
        m.d.sync += [crc_byte.eq(rx.payload),
                     crc_take.eq(rx_take & in_image_crc & (cmd == Command.LOAD_IMAGE))]
        m.d.comb += [img_crc.data.eq(crc_byte), img_crc.valid.eq(crc_take & (phase < _Phase.CRC))]

        # Mid-frame idle counter: counts only while the host sends nothing, not while we stall.
        mid_frame = Signal()
        with m.If(mid_frame & ~rx.valid):
            with m.If(~idle_full):
                m.d.sync += [idle.eq(idle + 1), idle_full.eq(idle + 1 == self._timeout)]
        with m.Else():
            m.d.sync += [idle.eq(0), idle_full.eq(0)]

        with m.FSM(name="link"):
            with m.State("HUNT"):
                m.d.comb += [rx.ready.eq(1), crc_start.eq(1)]
                with m.If(rx_take & (rx.payload == SYNC[0])):
                    m.next = "SYNC1"

            with m.State("SYNC1"):
                m.d.comb += [rx.ready.eq(1), crc_start.eq(1)]
                with m.If(rx_take):
                    with m.If(rx.payload == SYNC[1]):
                        # A TIMEOUT NAK before these arrive names cmd 0 / seq 0.
                        m.d.sync += [cmd.eq(0), seq.eq(0)]
                        m.next = "CMD"
                    with m.Elif(rx.payload != SYNC[0]):
                        m.next = "HUNT"

            with m.State("CMD"):
                m.d.comb += [rx.ready.eq(1), mid_frame.eq(1), in_frame_crc.eq(1)]
                with m.If(rx_take):
                    m.d.sync += cmd.eq(rx.payload)
                    m.next = "SEQ"
                with m.Elif(timed_out):
                    nak(ErrorCode.TIMEOUT)

            with m.State("SEQ"):
                m.d.comb += [rx.ready.eq(1), mid_frame.eq(1), in_frame_crc.eq(1)]
                with m.If(rx_take):
                    m.d.sync += [seq.eq(rx.payload), k.eq(0)]
                    m.next = "LEN"
                with m.Elif(timed_out):
                    nak(ErrorCode.TIMEOUT)

            with m.State("LEN"):
                m.d.comb += [rx.ready.eq(1), mid_frame.eq(1), in_frame_crc.eq(1),
                             img_crc.start.eq(1)]
                new_len = Cat(shreg[8:], rx.payload)
                with m.If(rx_take):
                    m.d.sync += [shreg.eq(new_len), k.eq(k + 1)]
                    with m.If(k == 3):
                        m.d.sync += [
                            length.eq(new_len), remaining.eq(new_len),
                            wbuf.eq(0), bidx.eq(0), wpos.eq(0), in_addr.eq(0),
                            phase.eq(_Phase.HEAD), seen.eq(0), err.eq(0),
                        ]
                        with m.If(new_len > MAX_PAYLOAD):
                            nak(ErrorCode.BAD_LENGTH)
                        with m.Else():
                            with m.If(new_len == 0):
                                m.next = "CRC"
                            with m.Else():
                                m.next = "PAYLOAD"
                            # Request-level checks; reported only after a good CRC.
                            with m.Switch(cmd):
                                with m.Case(Command.PING):
                                    with m.If(new_len != 0):
                                        m.d.sync += err.eq(ErrorCode.BAD_LENGTH)
                                with m.Case(Command.READ_COUNTERS):
                                    with m.If(new_len != 0):
                                        m.d.sync += err.eq(ErrorCode.BAD_LENGTH)
                                    with m.Elif(~self.image_loaded):
                                        m.d.sync += err.eq(ErrorCode.NO_IMAGE)
                                with m.Case(Command.INFER):
                                    with m.If(~self.image_loaded):
                                        m.d.sync += err.eq(ErrorCode.NO_IMAGE)
                                    with m.Elif(new_len != core.input_len):
                                        m.d.sync += err.eq(ErrorCode.BAD_FRAME_SIZE)
                                with m.Case(Command.LOAD_IMAGE):
                                    # Its words overwrite the engine's memories from now on.
                                    m.d.sync += [self.image_loaded.eq(0), unload.eq(1)]
                                with m.Default():
                                    m.d.sync += err.eq(ErrorCode.BAD_COMMAND)
                with m.Elif(timed_out):
                    nak(ErrorCode.TIMEOUT)

            with m.State("PAYLOAD"):
                m.d.comb += [rx.ready.eq(~stall), mid_frame.eq(1), in_frame_crc.eq(1),
                             in_image_crc.eq(1)]
                with m.If(rx_take):
                    last = remaining == 1
                    m.d.sync += [remaining.eq(remaining - 1), bidx.eq(bidx + 1),
                                 wbuf.eq(Mux(bidx == 3, 0, word))]
                    with m.If(bidx == 3):
                        m.d.sync += wpos.eq(wpos + 1)
                    with m.If(last):
                        m.d.sync += k.eq(0)
                        m.next = "CRC"
                    with m.If(err == 0):
                        with m.Switch(cmd):
                            with m.Case(Command.INFER):
                                # The last word of an odd-length frame goes out zero-padded.
                                with m.If((bidx == 3) | last):
                                    emit(Space.INPUT, in_addr, word)
                                    m.d.sync += in_addr.eq(in_addr + 1)
                            with m.Case(Command.LOAD_IMAGE):
                                with m.If(bidx == 3):
                                    m.d.sync += [img_stb.eq(1), img_word.eq(word)]
                with m.Elif(timed_out):
                    nak(ErrorCode.TIMEOUT)

            with m.State("CRC"):
                m.d.comb += [rx.ready.eq(1), mid_frame.eq(1)]
                with m.If(rx_take):
                    m.d.sync += [shreg.eq(Cat(shreg[8:], rx.payload)), k.eq(k + 1)]
                    with m.If(k == 3):
                        m.next = "CHECK"
                with m.Elif(timed_out):
                    nak(ErrorCode.TIMEOUT)

            with m.State("CHECK"):
                with m.If(shreg != frame_crc.crc):
                    nak(ErrorCode.BAD_CRC)
                with m.Elif(err != 0):
                    nak(err)
                with m.Else():
                    with m.Switch(cmd):
                        with m.Case(Command.PING):
                            respond(RESPONSE_FLAG | Command.PING, 5, _Kind.PING)
                            m.d.sync += rsp_word.eq(Cat(core.config_id, self.image_loaded))
                        with m.Case(Command.READ_COUNTERS):
                            respond(RESPONSE_FLAG | Command.READ_COUNTERS, 4 * len(COUNTERS),
                                    _Kind.COUNTERS)
                            m.d.sync += rsp_word.eq(core.counters.as_value())
                        with m.Case(Command.LOAD_IMAGE):
                            with m.If(phase != _Phase.DONE):
                                # The payload ended inside the image's own header.
                                nak(ErrorCode.BAD_SECTION)
                            with m.Else():
                                m.next = "COMMIT"
                        with m.Case(Command.INFER):
                            m.next = "COMMIT"

            with m.State("COMMIT"):
                # Every loaded word must have reached the core before it is told to use them.
                with m.If(~core.load.valid):
                    with m.If(cmd == Command.LOAD_IMAGE):
                        # The image is good; can its model run? ``model_ok`` lags the last load
                        # word, but the payload stalls until each word is taken, and the image
                        # CRC and the frame CRC follow it: at least 5 cycles.
                        with m.If(core.model_ok):
                            m.d.sync += self.image_loaded.eq(1)
                            respond(RESPONSE_FLAG | Command.LOAD_IMAGE, 0, _Kind.NONE)
                        with m.Else():
                            nak(ErrorCode.BAD_MODEL)
                    with m.Else():
                        m.d.comb += core.start.eq(1)
                        m.d.sync += armed.eq(0)
                        m.next = "WAIT"

            with m.State("WAIT"):
                # The INFER's answer is decided here: the response header goes out only once the
                # core offers its first result byte, or a NAK once its address guard abandoned
                # the frame. The core registers ``start``: ``fault`` of the previous frame may
                # still be high in the cycle after the pulse, covered only by ``busy``. So the
                # fault counts once ``busy`` was seen high in an earlier cycle (``armed``) and
                # has fallen: never the stale flag.
                # (``busy`` registered: the core's FSM state through ``busy`` into this state's
                # decisions and on to the receive FIFO was the ULX3S critical path, 99.0 MHz. A
                # cycle late is harmless: before ``armed`` the core is about to be busy (it took
                # ``start``), and an abort that reaches a core already idle is ignored.)
                with m.If(busy_q):
                    m.d.sync += armed.eq(1)
                with m.If(core.result.valid):
                    respond(RESPONSE_FLAG | Command.INFER, core.output_len, _Kind.RESULT)
                with m.Elif(rx.valid):
                    # The host sent a new request before any result: it gave up waiting. As in
                    # T_PAY: abort the frame, send nothing, serve the request. The pulse is
                    # registered, so it reaches the core at least two cycles after ``start``,
                    # once the core has taken it (an abort with ``start`` still pending would be
                    # lost). Not busy: the frame already ended (faulted); nothing to abort, and
                    # no NAK for a host that no longer waits.
                    with m.If(~armed | busy_q):
                        m.d.sync += abort.eq(1)
                    m.next = "HUNT"
                with m.Elif(armed & ~busy_q & core.fault):
                    nak(ErrorCode.ADDRESS_FAULT)

            # Response frame.
            def send(byte, nxt, crc=True):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(byte), tx_side.eq(1)]
                if crc:
                    m.d.comb += tx_crc_valid.eq(tx_take)
                with m.If(tx_take):
                    m.next = nxt

            with m.State("T_SYNC0"):
                m.d.comb += crc_start.eq(1)
                send(SYNC[0], "T_SYNC1", crc=False)
            with m.State("T_SYNC1"):
                m.d.comb += crc_start.eq(1)
                send(SYNC[1], "T_CMD", crc=False)
            with m.State("T_CMD"):
                send(rsp_cmd, "T_SEQ")
                m.d.sync += k.eq(0)
            with m.State("T_SEQ"):
                send(seq, "T_LEN")
            with m.State("T_LEN"):
                send(rsp_len.word_select(k, 8), "T_LEN")
                with m.If(tx_take):
                    m.d.sync += [k.eq(k + 1), tx_idx.eq(0)]
                    with m.If(k == 3):
                        with m.If(rsp_len == 0):
                            m.next = "T_CRC"
                        with m.Else():
                            m.next = "T_PAY"
            with m.State("T_PAY"):
                byte = Signal(8)
                with m.Switch(rsp_kind):
                    with m.Case(_Kind.NAK):
                        m.d.comb += byte.eq(Cat(nak_code, cmd).word_select(tx_idx[0], 8))
                    with m.Case(_Kind.PING, _Kind.COUNTERS):
                        m.d.comb += byte.eq(rsp_word.word_select(tx_idx[:4], 8))
                with m.If(rsp_kind == _Kind.RESULT):
                    m.d.comb += [tx.valid.eq(core.result.valid),
                                 tx.payload.eq(core.result.payload.data),
                                 core.result.ready.eq(tx.ready)]
                with m.Else():
                    m.d.comb += [tx.valid.eq(1), tx.payload.eq(byte)]
                m.d.comb += [tx_side.eq(1), tx_crc_valid.eq(tx_take)]
                with m.If(tx_take):
                    m.d.sync += tx_idx.eq(tx_idx + 1)
                    with m.If(tx_idx == rsp_len - 1):
                        m.d.sync += k.eq(0)
                        m.next = "T_CRC"
                with m.If((rsp_kind == _Kind.RESULT) & rx.valid & ~tx.valid):
                    # The host sent a new request before the whole result: it gave up waiting.
                    # Abort the frame, leave the response cut short, serve the request. (Not
                    # while a result byte is on offer: a stream withdraws no beat.)
                    m.d.sync += abort.eq(1)
                    m.next = "HUNT"
            with m.State("T_CRC"):
                m.d.comb += [tx.valid.eq(~tx_crc_take),
                             tx.payload.eq(frame_crc.crc.word_select(k, 8)), tx_side.eq(1)]
                with m.If(tx_take):
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == 3):
                        m.next = "HUNT"

        with m.If(img_stb):
            # wpos has moved on to the next word.
            self._image_word(m, word=img_word, wpos=wpos - 1, phase=phase, n_sect=n_sect,
                             crc_pos=crc_pos, sec_left=sec_left, sec_space=sec_space,
                             sec_addr=sec_addr, seen=seen, length=length,
                             img_crc=img_crc.crc, emit=emit, fail=fail,
                             sections_done=sections_done,
                             flags=dict(known=sect_known, cap_ok=sect_cap_ok, fits=sect_fits,
                                        seen=sect_seen, empty=sect_empty, one=sect_one,
                                        none=sect_none, data_last=data_last,
                                        room_none=room_none))

        return m

    def _image_word(self, m, *, word, wpos, phase, n_sect, crc_pos, sec_left, sec_space, sec_addr,
                    seen, length, img_crc, emit, fail, sections_done, flags):
        """One complete image word: the checks of :func:`hw.image.parse_image`, in its order.

        ``flags`` are the registered checks of this word as a section header (``known``,
        ``cap_ok``, ``fits``, ``seen``, ``empty``) and of the parser state (``one``, ``none``:
        one / no section left; ``data_last``: this is the section's last word; ``room_none``: no
        word left before the image CRC)."""
        with m.Switch(phase):
            with m.Case(_Phase.HEAD):
                with m.Switch(wpos[:2]):
                    with m.Case(0):
                        with m.If(word != MAGIC):
                            fail(ErrorCode.BAD_MAGIC)
                    with m.Case(1):
                        m.d.sync += n_sect.eq(word[16:])
                        with m.If(word[:16] != VERSION):
                            fail(ErrorCode.BAD_VERSION)
                    with m.Case(2):
                        with m.If(word != self.core.config_id):
                            fail(ErrorCode.BAD_CONFIG)
                    with m.Case(3):
                        m.d.sync += crc_pos.eq(word - 1)
                        with m.If((word << 2) != length):
                            fail(ErrorCode.BAD_SECTION)
                        with m.Elif(flags["none"]):
                            sections_done(word == HEADER_WORDS + 1)
                        with m.Else():
                            m.d.sync += phase.eq(_Phase.SECT)
            with m.Case(_Phase.SECT):
                space, n_words = word[:8], word[8:]
                with m.If(~flags["known"] | flags["seen"] | ~flags["cap_ok"] | ~flags["fits"]):
                    fail(ErrorCode.BAD_SECTION)
                with m.Else():
                    m.d.sync += [seen.eq(seen | (C(1, 1) << space[:3])),
                                 n_sect.eq(n_sect - 1)]
                    with m.If(flags["empty"]):
                        with m.If(flags["one"]):
                            sections_done(flags["room_none"])
                    with m.Else():
                        m.d.sync += [phase.eq(_Phase.DATA), sec_left.eq(n_words),
                                     sec_space.eq(space), sec_addr.eq(0)]
            with m.Case(_Phase.DATA):
                emit(sec_space, sec_addr, word)
                m.d.sync += [sec_addr.eq(sec_addr + 1), sec_left.eq(sec_left - 1)]
                with m.If(flags["data_last"]):
                    with m.If(flags["none"]):
                        sections_done(flags["room_none"])
                    with m.Else():
                        m.d.sync += phase.eq(_Phase.SECT)
            with m.Case(_Phase.CRC):
                with m.If(word != img_crc):
                    fail(ErrorCode.BAD_IMAGE_CRC)
                with m.Else():
                    m.d.sync += phase.eq(_Phase.DONE)

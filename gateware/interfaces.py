"""Signatures shared by the engine core, the link layer and the board tops."""

from amaranth import Const, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.memory_map import SPACE_BITS, ADDR_BITS, WORD_BITS, LEN_BITS, COUNTERS

__all__ = ["LoadWord", "ResultByte", "Counters", "CoreSignature", "ByteStream", "signal_ports",
           "MODEL_CHECK_LATENCY"]

#: One word written into the engine's memories (see :class:`hw.memory_map.Space`).
LoadWord = data.StructLayout({"space": SPACE_BITS, "addr": ADDR_BITS, "data": WORD_BITS})

#: One int8 output of the last layer; ``last`` marks the final byte of a frame's result.
ResultByte = data.StructLayout({"data": 8, "last": 1})

#: Performance counters of the last frame.
Counters = data.StructLayout({name: 32 for name in COUNTERS})

#: Cycles after the last accepted load word by which a core's ``model_ok`` reflects it (at most:
#: the link layer reads the flag when a LOAD_IMAGE commits, at least 5 cycles after that word).
MODEL_CHECK_LATENCY = 5

#: A byte stream (UART side of the link layer).
ByteStream = stream.Signature(8)


class CoreSignature(wiring.Signature):
    """The engine core as seen by the link layer.

    Members
    -------
    load : In(stream.Signature(LoadWord))
        Words of the model image and of input frames.
    start : In(1)
        One-cycle pulse: run every layer on the loaded input frame.
    abort : In(1)
        One-cycle pulse: abandon the frame in flight (the link layer's answer to a host that
        gave up waiting). ``busy`` falls once the tiles already issued are written back; the
        loaded model stays, the counters keep the abandoned frame's counts so far.
    unload : In(1)
        One-cycle pulse: a new image begins; the loaded model header is cleared, so a load that
        brings none leaves ``model_ok`` low.
    busy : Out(1)
        High from ``start`` until the last result byte has been accepted.
    fault : Out(1)
        The last frame was abandoned by the core's address guard: a layer addressed memory
        outside its memories. Low from ``start``; valid once ``busy`` is low.
    result : Out(stream.Signature(ResultByte))
        The last layer's int8 outputs in C x H x W order.
    counters : Out(Counters)
        Counters of the most recent frame, stable while not busy.
    input_len : Out(LEN_BITS)
        Bytes in one input frame of the loaded model (from its first descriptor); the link layer
        rejects frames of any other length.
    output_len : Out(LEN_BITS)
        Bytes in the result of one frame (the last layer's C x H x W), so the link layer can send
        the response length before the payload.
    model_ok : Out(1)
        The loaded model can run on this core (``hw.descriptors.check_descriptors``); valid
        :data:`MODEL_CHECK_LATENCY` cycles after the last load word is accepted.
    config_id : Out(32)
        Constant fingerprint of the generator parameters (``hw.array.ArrayConfig.config_id``);
        an image carries the id it was packed for and the link layer refuses a mismatch.
    """

    def __init__(self):
        super().__init__({
            "load": In(stream.Signature(LoadWord)),
            "start": In(1),
            "abort": In(1),
            "unload": In(1),
            "busy": Out(1),
            "fault": Out(1),
            "result": Out(stream.Signature(ResultByte)),
            "counters": Out(Counters),
            "input_len": Out(LEN_BITS),
            "output_len": Out(LEN_BITS),
            "model_ok": Out(1),
            "config_id": Out(32),
        })


def signal_ports(component):
    """``(path, flow, value)`` of each member of ``component``'s signature that is a signal: a
    constant member (such as an always-ready stream's ``ready``) is no port, cannot be driven
    and is left out. ``value`` is cast to a :class:`~amaranth.hdl.Value`."""
    for path, member, value in component.signature.flatten(component):
        value = Value.cast(value)
        if not isinstance(value, Const):
            yield path, member.flow, value

"""host.protocol.Client against the in-process FakeBoard with injected faults.

The reference is the board's compute function (a keyed hash of each frame): every request must
come back with exactly the answer to *that* request, in order, however the traffic is damaged.
"""

import hashlib
import random

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from hw import link
from host.fakeboard import FakeBoard, Fault
from host.protocol import Client, ERROR_TEXT, LinkTimeout, NakError, RETRY_CODES

INPUT_LEN = 12
CONFIG_ID = 0x1234ABCD
TIMEOUT = 0.01
RETRIES = 3


def answer(frame: bytes) -> bytes:
    """Independent 'engine': a digest unique to each frame."""
    return hashlib.sha256(frame).digest()[:10]


def make_board(faults=()):
    return FakeBoard(config_id=CONFIG_ID, compute=answer, input_len=INPUT_LEN, faults=faults,
                     counters=lambda f: {"cycles": len(f) * 100 + f[0], "busy": 1, "stalls": 2,
                                         "macs": 3})


def frames(n, seed):
    rng = random.Random(seed)
    return [bytes(rng.randrange(256) for _ in range(INPUT_LEN)) for _ in range(n)]


def test_clean_exchange():
    board = make_board()
    client = Client(board, timeout=TIMEOUT, retries=RETRIES)
    info = client.ping()
    assert (info.config_id, info.image_loaded) == (CONFIG_ID, False)
    client.load_image(b"image")
    assert client.ping().image_loaded
    for f in frames(5, 0):
        assert client.infer(f, output_len=10) == answer(f)
        c = client.read_counters()
        assert c == {"cycles": INPUT_LEN * 100 + f[0], "busy": 1, "stalls": 2, "macs": 3}
    assert client.stats["retries"] == 0


# Faults that leave the exchange recoverable within the retry budget.
FAULTS = [f for f in Fault if f is not Fault.NONE]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1),
       schedule=st.lists(st.lists(st.sampled_from(FAULTS), max_size=RETRIES), min_size=8,
                         max_size=8))
def test_nothing_lost_or_duplicated(seed, schedule):
    """Each request gets at most RETRIES faults in a row, so every one must succeed exactly once."""
    data = frames(len(schedule), seed)
    # A fault list per request, then a clean attempt.
    faults = [Fault.NONE] * 2  # ping and load
    for per_request in schedule:
        faults += per_request + [Fault.NONE]
    board = make_board(faults)
    client = Client(board, timeout=TIMEOUT, retries=RETRIES)
    client.ping()
    client.load_image(b"image")
    got = [client.infer(f, output_len=10) for f in data]
    assert got == [answer(f) for f in data], f"seed {seed}, schedule {schedule}"
    # Every frame was computed at least once, and the client returned one answer per request.
    infer_seqs = [s for c, s in board.executed if c == link.Command.INFER]
    assert len(set(infer_seqs)) == len(data), f"seed {seed}, schedule {schedule}"


def test_delayed_answers_do_not_shift_later_requests():
    """A slow answer arriving after the retry is one extra copy; the next request discards it."""
    data = frames(4, 1)
    board = make_board([Fault.NONE, Fault.NONE] + [Fault.DELAY_RESPONSE, Fault.NONE] * 4)
    client = Client(board, timeout=TIMEOUT, retries=RETRIES)
    client.ping()
    client.load_image(b"x")
    assert [client.infer(f) for f in data] == [answer(f) for f in data]
    assert client.stats["retries"] == 4


def test_truncated_response_does_not_swallow_retry():
    board = make_board([Fault.TRUNCATE_RESPONSE, Fault.TRUNCATE_RESPONSE])
    client = Client(board, timeout=TIMEOUT, retries=RETRIES)
    assert client.ping().config_id == CONFIG_ID
    assert client.stats["retries"] == 2


def test_nak_raises_with_code():
    client = Client(make_board(), timeout=TIMEOUT, retries=RETRIES)
    with pytest.raises(NakError, match=r"refused INFER .*NO_IMAGE \(10\)") as e:
        client.infer(b"\0" * INPUT_LEN)
    assert e.value.code == link.ErrorCode.NO_IMAGE and e.value.request == link.Command.INFER
    client.load_image(b"x")
    with pytest.raises(NakError, match="BAD_FRAME_SIZE") as e:
        client.infer(b"\0" * (INPUT_LEN + 1))
    assert e.value.code not in RETRY_CODES
    # The link stays usable after a NAK.
    assert client.infer(b"\1" * INPUT_LEN) == answer(b"\1" * INPUT_LEN)


def test_every_error_code_has_a_text():
    assert set(ERROR_TEXT) == set(link.ErrorCode)


def test_address_fault_is_reported_not_retried():
    """The engine's address guard abandoned the frame: the user is told why and what to do, the
    request is not re-sent (the same frame would fault again), the link stays usable."""
    class AddressFault(Exception):
        code = link.ErrorCode.ADDRESS_FAULT

    def compute(frame):
        if frame[0] == 0xFF:
            raise AddressFault()
        return answer(frame)

    board = FakeBoard(config_id=1, compute=compute, input_len=INPUT_LEN)
    client = Client(board, timeout=TIMEOUT, retries=RETRIES)
    client.load_image(b"x")
    bad = b"\xff" + bytes(INPUT_LEN - 1)
    with pytest.raises(NakError, match=r"refused INFER \(seq 1\) on fake: ADDRESS_FAULT \(13\): "
                                       r"the engine abandoned the inference: a layer .* addressed "
                                       r"memory past the end .* repack the model") as e:
        client.infer(bad)
    assert e.value.code == link.ErrorCode.ADDRESS_FAULT and e.value.request == link.Command.INFER
    assert e.value.code not in RETRY_CODES and client.stats["retries"] == 0
    assert [c for c, _ in board.executed].count(link.Command.INFER) == 1
    assert client.ping().image_loaded
    assert client.infer(b"\1" * INPUT_LEN) == answer(b"\1" * INPUT_LEN)


def test_image_refusal_is_reported_and_clears_image():
    class Refused(Exception):
        code = link.ErrorCode.BAD_CONFIG

    def accept(image):
        if image != b"good":
            raise Refused()

    board = FakeBoard(config_id=1, compute=answer, input_len=INPUT_LEN, accept_image=accept)
    client = Client(board, timeout=TIMEOUT)
    client.load_image(b"good")
    with pytest.raises(NakError, match="BAD_CONFIG"):
        client.load_image(b"bad")
    assert not client.ping().image_loaded


def test_dead_link_times_out_naming_attempts():
    board = make_board([Fault.DROP_REQUEST] * 10)
    client = Client(board, timeout=TIMEOUT, retries=2)
    with pytest.raises(LinkTimeout, match=r"PING \(seq 0\) got no valid response after 3 attempts"):
        client.ping()


def test_infer_timeout_says_a_long_model_is_aborted():
    board = make_board([Fault.NONE] + [Fault.DROP_RESPONSE] * 2)
    client = Client(board, timeout=TIMEOUT, retries=1)
    client.load_image(b"img")
    with pytest.raises(LinkTimeout, match=r"INFER \(seq 1\) got no valid response after 2 "
                                          r"attempts .* each new request aborts it; raise the timeout"):
        client.infer(bytes(INPUT_LEN))


def test_retry_resends_identical_frame():
    """A retry is the same frame (same seq), not a new request."""
    written = []
    board = make_board([Fault.DROP_RESPONSE, Fault.CORRUPT_REQUEST])
    orig = board.write
    board.write = lambda data: (written.append(bytes(data)), orig(data))[1]
    client = Client(board, timeout=TIMEOUT, retries=RETRIES)
    client.ping()
    assert len(written) == 3 and written[0] == written[1] == written[2]


@pytest.mark.parametrize("kwargs, message", [
    ({"timeout": 0}, "Response timeout must be a positive number of seconds, not 0"),
    ({"retries": -1}, "Retries must be a non-negative integer, not -1"),
])
def test_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Client(make_board(), **kwargs)

"""Stream test frames through a board and check every output bit-exact.

:func:`run_frames` is the whole job for one connected board: PING (the engine's config_id must be
the one the image was packed for), LOAD_IMAGE once, then per frame INFER and READ_COUNTERS,
comparing each output with two independent integer models of the same quantized model:

* :func:`models.golden.run_model_int` (PyTorch, dense weights) and
* :func:`hw.reference.run_model` (numpy, from the CSR_P image).

:func:`load_frames` makes the frames from a dataset's test split exactly as
:func:`models.quantize.evaluate_int8` does (normalize, ``round(x / input_scale)``, clamp).
Throughput is reported two ways at the board's clock: compute-bound ``clock / cycles`` (from
the engine's own cycle counter) and link-bound ``baud / 10 / bytes`` (an 8N1 UART moves one
byte per 10 bit times; bytes are the INFER request and response frames, framing included).

Batches: with a layout of ``batch`` B > 1 (``host.pack.pack(..., batch=B)``) the frames go B at a
time into one INFER request (the engine's input and result bytes of B frames, in the layout's
order) and its counters cover the B frames: cycles per frame are the ``cycles`` counter / B. A
last partial group is padded with zero frames whose results are discarded; accuracy and
mismatches count the real frames only.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, asdict

import numpy as np

from hw import link
from hw.layout import check_batch
from hw.progress import progress_bar
from hw.qmodel import QModel

from .protocol import Client, ProtocolError

__all__ = ["RunResult", "ConfigMismatch", "load_frames", "expected_outputs", "run_frames", "run",
           "DEFAULT_CLOCK_HZ"]

#: The Arty A7's and the ULX3S builds' engine clock.
DEFAULT_CLOCK_HZ = 100_000_000
_FRAMING = link.HEADER_BYTES + link.TRAILER_BYTES


class ConfigMismatch(ProtocolError):
    """The board's engine was built for another configuration than the image."""


@dataclass
class RunResult:
    """Outcome of :func:`run_frames`.

    Members
    -------
    frames : int
        Frames run.
    accuracy : float
        Top-1 accuracy (percent) of the board's outputs against the labels.
    mismatches : int
        Frames whose output differs from either integer model.
    cycles_per_frame : float
        Mean of the engine's ``cycles`` counter per request, divided by ``batch``.
    fps_compute, fps_link : float
        Frames per second at ``clock_hz`` (compute-bound) and at ``baud`` (link-bound).
    golden_accuracy : float
        Accuracy of the PyTorch integer golden on the same frames (must equal ``accuracy``).
    mismatch_frames : list of int
        Indices of the first mismatching frames (at most 20).
    counters : dict
        Mean of every engine counter per frame (a request's counters over ``batch``).
    bytes_per_frame : int or float
        INFER request plus response bytes on the wire, per frame (``bytes_per_request / batch``).
    batch : int
        Frames per INFER request.
    requests : int
        INFER requests sent (``ceil(frames / batch)``).
    padded_frames : int
        Zero frames that filled the last request up to ``batch``; their results were discarded.
    bytes_per_request : int
        INFER request plus response bytes of one request (``batch`` frames), framing included.
    """

    frames: int
    accuracy: float
    mismatches: int
    cycles_per_frame: float
    fps_compute: float
    fps_link: float
    golden_accuracy: float = 0.0
    reference_disagreements: int = 0
    mismatch_frames: list = field(default_factory=list)
    counters: dict = field(default_factory=dict)
    bytes_per_frame: int = 0
    clock_hz: float = DEFAULT_CLOCK_HZ
    baud: int = 0
    config_id: int = 0
    image_bytes: int = 0
    load_seconds: float = 0.0
    run_seconds: float = 0.0
    link_stats: dict = field(default_factory=dict)
    batch: int = 1
    requests: int = 0
    padded_frames: int = 0
    bytes_per_request: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        text = (f"{self.frames} frames: accuracy {self.accuracy:.2f}% (golden {self.golden_accuracy:.2f}%), "
                f"{self.mismatches} mismatches, {self.cycles_per_frame:.0f} cycles/frame, "
                f"{self.fps_compute:.1f} fps compute-bound at {self.clock_hz / 1e6:g} MHz, "
                f"{self.fps_link:.1f} fps link-bound at {self.baud} baud")
        if self.batch > 1:
            text += (f"; batches of {self.batch} frames in {self.requests} requests (cycles/frame = "
                     f"the engine's cycles / {self.batch})")
            if self.padded_frames:
                text += (f", the last padded with {self.padded_frames} zero "
                         f"frame{'s' if self.padded_frames > 1 else ''} whose results were discarded")
        return text


def load_frames(qmodel: QModel, *, dataset: str | None = None, frames: int = 200, offset: int = 0,
                data_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """The first ``frames`` test images of ``dataset`` (default the model's) as int8 frames.

    Returns ``(x int8 [N, C, H, W], labels int64 [N])``. Imports torch and models/ lazily.
    """
    from models.data import load_dataset, prepare_batch
    from models.golden import quantize_input

    dataset = dataset or qmodel.dataset
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be a positive integer, not {frames!r}")
    try:
        ds = load_dataset(dataset, "test", data_dir=data_dir)
    except FileNotFoundError as e:  # models.data.DatasetError names the files it expected
        raise ValueError(str(e)) from None
    if offset + frames > len(ds):
        raise ValueError(f"Dataset {dataset!r} has {len(ds)} test images; cannot take {frames} "
                         f"from offset {offset}")
    x, y = ds.__getitems__(list(range(offset, offset + frames)))
    q = quantize_input(qmodel, prepare_batch(x, dataset, train=False))
    if tuple(q.shape[1:]) != tuple(qmodel.input_shape):
        raise ValueError(f"Dataset {dataset!r} frames are {tuple(q.shape[1:])}; model "
                         f"{qmodel.name!r} takes {tuple(qmodel.input_shape)}")
    return q.numpy().astype(np.int8), y.numpy().astype(np.int64)


def expected_outputs(qmodel: QModel, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Last-layer int8 outputs ``[N, outputs]`` of the golden (torch) and the reference (numpy)."""
    import torch
    from models.golden import run_model_int
    from hw.reference import run_model

    golden = run_model_int(qmodel, torch.as_tensor(x, dtype=torch.int64))[-1].numpy()
    reference = run_model(qmodel, x)[-1]
    n = len(x)
    return golden.reshape(n, -1).astype(np.int8), reference.reshape(n, -1).astype(np.int8)


def _batch_payload(layout, group: np.ndarray) -> bytes:
    """INFER payload of ``group`` (int8 ``[B, C, H, W]``): the engine's INPUT bytes, in ``layout``'s
    order (a batch's input map may be stored tall)."""
    frames = group[0] if layout.batch == 1 else group
    return np.asarray(layout.input_words(frames), dtype="<u4").tobytes()[:layout.input_len]


def run_frames(client: Client, qmodel: QModel, image: bytes, config_id: int, x: np.ndarray,
               labels: np.ndarray | None = None, *, layout=None, clock_hz: float = DEFAULT_CLOCK_HZ,
               baud: int | None = None, progress: bool = True, infer_timeout: float | None = None,
               load_timeout: float | None = None) -> RunResult:
    """Load ``image`` once and run every frame of ``x`` on the board behind ``client``.

    Parameters
    ----------
    client : Client
        Connected protocol client.
    qmodel : QModel
        The model the image was packed from (for the golden outputs).
    image : bytes
        The packed image; ``config_id`` is the engine config it was packed for.
    x : numpy.ndarray
        int8 frames ``[N, C, H, W]``; ``labels`` int ``[N]`` for accuracy (optional).
    layout : hw.layout.Layout, optional
        The image's layout (``PackedModel.layout``). Its ``batch`` B frames go into one INFER
        request, encoded and decoded in the layout's byte order; a last partial group is padded
        with zero frames whose results are discarded. Default: one frame a request, its bytes
        as they are (what a layout of batch 1 gives too).
    clock_hz, baud : float, int
        Board clock and UART rate for the throughput figures (``baud`` defaults to the
        transport's).
    progress : bool
        Show progress on stderr (``hw.progress.progress_bar``: a tqdm bar on a terminal, a
        line every 30 s in a log).
    """
    if not isinstance(client, Client):
        raise TypeError(f"client must be a host.protocol.Client, not {type(client).__name__}")
    x = np.asarray(x)
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(qmodel.input_shape):
        raise ValueError(f"Frames must be [N, C, H, W] with (C, H, W) = {tuple(qmodel.input_shape)}, "
                         f"not {list(x.shape)}")
    if labels is not None and len(labels) != len(x):
        raise ValueError(f"{len(labels)} labels for {len(x)} frames")
    batch = 1
    if layout is not None:
        batch = int(layout.batch)
        if tuple(layout.input_shape) != tuple(qmodel.input_shape):
            raise ValueError(f"The layout takes frames of {tuple(layout.input_shape)}, the model "
                             f"{tuple(qmodel.input_shape)}")
    baud = baud or client.transport.baud or 0
    golden, reference = expected_outputs(qmodel, x)
    out_len = golden.shape[1]
    if layout is not None and int(np.prod(layout.output_shape)) != out_len:
        raise ValueError(f"The layout's result has {int(np.prod(layout.output_shape))} bytes a "
                         f"frame, the model's {out_len}")

    info = client.ping()
    if info.config_id != config_id:
        sized = (f"; with --batch {batch} the engine's activation memory is sized for {batch} "
                 f"frames, so the board must be built for that batch" if batch > 1 else "")
        raise ConfigMismatch(f"The board's engine has config_id {info.config_id:#010x} but the image "
                             f"was packed for {config_id:#010x}: pack for that engine (same --array) "
                             f"or rebuild the board{sized}")
    t0 = time.monotonic()
    client.load_image(image, timeout=load_timeout)
    if not client.ping().image_loaded:
        raise ProtocolError("LOAD_IMAGE succeeded but PING reports no image loaded")
    t1 = time.monotonic()

    n = len(x)
    requests = -(-n // batch)
    padded = requests * batch - n
    outputs = np.zeros_like(golden)
    counters = []
    bar = None
    if progress:
        desc = f"{qmodel.name} on {client.transport.name}"
        if batch > 1:
            desc += f", {batch} frames a request"
        bar = progress_bar(total=n, desc=desc, unit="frame")
    mismatches = []
    try:
        for r in range(requests):
            lo = r * batch
            real = min(batch, n - lo)
            group = x[lo:lo + real].astype(np.int8)
            if layout is None:
                payload = group[0].tobytes()
            else:
                if real < batch:
                    # A last partial group: zero frames fill the request; their results are dropped.
                    group = np.concatenate([group, np.zeros((batch - real,) + group.shape[1:], np.int8)])
                payload = _batch_payload(layout, group)
            out = client.infer(payload, output_len=batch * out_len, timeout=infer_timeout)
            if layout is None:
                results = np.frombuffer(out, dtype=np.int8).reshape(1, -1)
            else:
                results = np.asarray(layout.decode_output(out)).reshape(batch, -1)
            outputs[lo:lo + real] = results[:real]
            counters.append(client.read_counters())
            for i in range(lo, lo + real):
                if not (np.array_equal(outputs[i], golden[i]) and np.array_equal(outputs[i], reference[i])):
                    mismatches.append(i)
            if bar is not None:
                if real < batch:
                    bar.set_postfix(mismatches=len(mismatches),
                                    padded=f"{batch - real} zero frame(s), results discarded")
                elif mismatches:
                    bar.set_postfix(mismatches=len(mismatches))
                bar.update(real)
    finally:
        if bar is not None:
            bar.close()
    t2 = time.monotonic()

    mean = {k: float(np.mean([c[k] for c in counters])) / batch for k in counters[0]}
    cycles = mean["cycles"]
    request_bytes = batch * int(np.prod(qmodel.input_shape)) + _FRAMING
    bytes_per_request = request_bytes + batch * out_len + _FRAMING
    bytes_per_frame = (bytes_per_request // batch if bytes_per_request % batch == 0
                       else bytes_per_request / batch)
    accuracy = golden_accuracy = 0.0
    if labels is not None:
        # argmax takes the lowest index on ties, as models.golden.predict does.
        accuracy = 100.0 * float(np.mean(outputs.argmax(axis=1) == labels))
        golden_accuracy = 100.0 * float(np.mean(golden.argmax(axis=1) == labels))
    return RunResult(
        frames=n, accuracy=accuracy, mismatches=len(mismatches),
        cycles_per_frame=cycles, fps_compute=clock_hz / cycles if cycles else float("inf"),
        fps_link=baud / 10 / bytes_per_frame if baud else float("inf"),
        golden_accuracy=golden_accuracy,
        reference_disagreements=int(np.sum(np.any(golden != reference, axis=1))),
        mismatch_frames=mismatches[:20], counters=mean, bytes_per_frame=bytes_per_frame,
        clock_hz=float(clock_hz), baud=int(baud), config_id=config_id, image_bytes=len(image),
        load_seconds=t1 - t0, run_seconds=t2 - t1, link_stats=client.stats, batch=batch,
        requests=requests, padded_frames=padded, bytes_per_request=bytes_per_request)


def run(*, model, port: str | None = None, sim: bool = False, baud: int | None = None,
        uart: bool = False, divisor: int = 8, array: str = "8x8", dataset: str | None = None,
        data_dir=None, frames: int = 200, offset: int = 0, clock_mhz: float = 100.0,
        timeout: float | None = None, retries: int = 3, build_dir="build/simboard",
        progress: bool = True, log=None, batch: int = 1):
    """Run ``frames`` test frames of ``model`` (a QModel or a path) on a board; a RunResult.

    Exactly one of ``port`` (a real or pseudo-terminal serial device) and ``sim`` (start the
    simulated engine) must be given. ``batch`` frames go into each INFER request (the image is
    packed for runs of ``batch`` frames, and the engine, simulated or not, must be the one sized
    for them: ``host.pack.pack(..., batch=batch).config``); a last partial group is padded with
    zero frames whose results are discarded. Raises ``ValueError`` on bad arguments and
    :class:`host.protocol.ProtocolError` when the link fails.
    """
    from .pack import load_model, pack, parse_array
    from .transport import DEFAULT_BAUD, SerialTransport

    if (port is None) == (not sim):
        raise ValueError("Give exactly one of port (a serial device) and sim=True")
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames must be a positive integer, not {frames!r}")
    check_batch(batch, name="--batch")
    if not clock_mhz > 0:
        raise ValueError(f"clock_mhz must be positive, not {clock_mhz!r}")
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    qmodel = model if isinstance(model, QModel) else load_model(model)
    packed = pack(qmodel, array=parse_array(array) if isinstance(array, str) else tuple(array),
                  batch=batch)
    log(f"{qmodel.name}: image {len(packed.image)} bytes for config_id {packed.config.config_id:#010x}")
    if batch > 1:
        requests = -(-frames // batch)
        padded = requests * batch - frames
        log(f"{qmodel.name}: batches of {batch} frames a request ({requests} requests, "
            f"{packed.layout.expected_cycles} expected cycles each = "
            f"{packed.layout.expected_cycles / batch:.1f} a frame; engine act_depth "
            f"{packed.config.act_depth} bytes)"
            + (f"; the last request is padded with {padded} zero frame{'s' if padded > 1 else ''} "
               f"whose results are discarded" if padded else ""))
    x, labels = load_frames(qmodel, dataset=dataset, frames=frames, offset=offset, data_dir=data_dir)
    board = None
    load_timeout = None
    try:
        if sim:
            from .simboard import SimBoard

            log(f"starting the simulated engine ({'UART' if uart else 'byte-stream'} top) ...")
            board = SimBoard(config=packed.config, uart=uart, divisor=divisor, build_dir=build_dir,
                             log=log)
            port = board.port
            # A request of `batch` frames computes `batch` times as long.
            timeout = 60.0 * batch if timeout is None else timeout
            # The simulator moves a few ten thousand cycles a second: give the image time to
            # cross (UART: 10 bits of `divisor` cycles a byte; streams: one byte a cycle).
            load_timeout = timeout + len(packed.image) * (10 * divisor / 10_000 if uart else 1e-3)
            log(f"simulated board on {port}")
        baud = baud or DEFAULT_BAUD
        with SerialTransport(port, baud=baud) as transport:
            client = Client(transport, timeout=2.0 if timeout is None else timeout, retries=retries)
            return run_frames(client, qmodel, packed.image, packed.config.config_id, x, labels,
                              layout=packed.layout, clock_hz=clock_mhz * 1e6, baud=baud,
                              progress=progress, load_timeout=load_timeout)
    finally:
        if board is not None:
            board.close()

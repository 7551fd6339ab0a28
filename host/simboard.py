"""The simulated board: the engine's Verilog under Verilator (cocotb), reachable over a pty.

:class:`SimBoard` builds ``gateware.top.LinkedEngine`` (byte streams; fast) or
``gateware.top.UartEngine`` (UART pins with a reduced baud divisor; bit-exact serial framing)
for an :class:`hw.array.ArrayConfig`, compiles it once per build directory
(:func:`gateware.simulate.build` skips unchanged builds), and starts a child process that runs
the cocotb module :mod:`host.sim_bridge` against it. The bridge opens a pseudo-terminal and the
board's :attr:`SimBoard.port` is its path: anything that talks to a serial port (``python -m host
run --port``, :class:`host.transport.SerialTransport`, a terminal program) talks to the engine.

Command line (serves until Ctrl-C)::

    python -m host.simboard --model Q [--array RxC] [--batch B] [--uart [--divisor N]]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hw.layout import batch_arg

__all__ = ["SimBoard", "SimBoardError", "build_top", "main"]

#: Seconds to wait for the Verilator build and the pty to appear.
START_TIMEOUT = 900


class SimBoardError(RuntimeError):
    """The simulated board failed to build or start; the message holds the log's tail."""


def build_top(config, *, uart: bool = False, divisor: int = 8):
    """The Amaranth top the simulated board runs (LinkedEngine, or UartEngine when ``uart``)."""
    from gateware.top import LinkedEngine, UartEngine

    if uart:
        return UartEngine(config=config, divisor=divisor)
    return LinkedEngine(config=config)


def _build(simulate, top, sim, build_dir, log_path):
    """Build with the simulator's output in ``log_path``: the host's stdout may carry JSON."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = os.dup(1), os.dup(2)
    try:
        with open(log_path, "w") as log:
            # The compiler runs in child processes: redirect the descriptors, not sys.stdout.
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                return simulate.build(top, sim=sim, build_dir=build_dir)
            except Exception as e:
                raise SimBoardError(f"Building the simulated engine failed ({e}); log {log_path}") from e
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved_fds[0], 1)
                os.dup2(saved_fds[1], 2)
    finally:
        for fd in saved_fds:
            os.close(fd)


class SimBoard:
    """A Verilated engine behind a pseudo-terminal, in a child process.

    Parameters
    ----------
    config : hw.array.ArrayConfig
        The engine to build.
    uart : bool
        Simulate the UART top (bit-level serial) instead of the byte-stream top.
    divisor : int
        Clock cycles per UART bit with ``uart`` (the board's is 100 MHz / baud).
    build_dir : path
        Verilator build directory, reused while the design is unchanged.
    sim : str
        ``"verilator"`` (default) or ``"icarus"``.
    log : callable, optional
        ``log(message)`` for progress lines (default: stderr).
    top : amaranth component, optional
        Run this design instead of :func:`build_top`'s (same ports; for testing the bridge).

    Members
    -------
    port : str
        Path of the pty to open (e.g. ``/dev/pts/5``).
    baud : None
        A pty has no line rate.
    log_path : pathlib.Path
        The simulator's output.
    """

    baud = None

    def __init__(self, *, config, uart: bool = False, divisor: int = 8,
                 build_dir="build/simboard", sim: str = "verilator", log=None, top=None):
        from hw.array import ArrayConfig

        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be a hw.array.ArrayConfig, not {type(config).__name__}")
        if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 4:
            raise ValueError(f"UART divisor must be an integer of at least 4 cycles per bit, "
                             f"not {divisor!r}")
        self._log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        kind = f"uart{divisor}" if uart else "stream"
        self._dir = Path(build_dir).resolve() / f"{kind}-{config.config_id:08x}"
        self._dir.mkdir(parents=True, exist_ok=True)
        self._pty_file = self._dir / "pty"
        self._stop_file = self._dir / "stop"
        for f in (self._pty_file, self._stop_file):
            f.unlink(missing_ok=True)
        self.log_path = self._dir / "sim.log"
        self._proc = None
        from gateware import simulate

        t0 = time.monotonic()
        self._log(f"simulated board: building the {kind} top with {sim} in {self._dir} ...")
        if top is None:
            top = build_top(config, uart=uart, divisor=divisor)
        build_log = self._dir / "build.log"
        try:
            _build(simulate, top, sim, self._dir / "sim_build", build_log)
        except SimBoardError as e:
            tail = "\n".join(build_log.read_text(errors="replace").splitlines()[-30:])
            raise SimBoardError(f"{e}:\n{tail}") from None
        self._log(f"simulated board: built in {time.monotonic() - t0:.1f} s; starting "
                  f"(log: {self.log_path})")
        cmd = [sys.executable, "-m", "host.simboard", "--serve", "--build-dir", str(self._dir),
               "--sim", sim, "--divisor", str(divisor)] + (["--uart"] if uart else [])
        root = Path(__file__).resolve().parents[1]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
        self._logf = open(self.log_path, "w")
        self._proc = subprocess.Popen(cmd, stdout=self._logf, stderr=subprocess.STDOUT, cwd=root,
                                      env=env, start_new_session=True)
        try:
            self.port = self._await_pty()
        except BaseException:
            self.close()
            raise

    def _tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _await_pty(self) -> str:
        t0 = time.monotonic()
        next_note = t0 + 30
        while time.monotonic() - t0 < START_TIMEOUT:
            if self._pty_file.exists():
                return self._pty_file.read_text().strip()
            if self._proc.poll() is not None:
                raise SimBoardError(f"The simulated board exited with {self._proc.returncode} "
                                    f"before opening its pty; log {self.log_path}:\n{self._tail()}")
            if time.monotonic() > next_note:
                self._log(f"  ... still building ({time.monotonic() - t0:.0f} s)")
                next_note += 30
            time.sleep(0.1)
        raise SimBoardError(f"The simulated board did not open its pty within {START_TIMEOUT} s; "
                            f"log {self.log_path}:\n{self._tail()}")

    def close(self) -> None:
        """Stop the simulation (gracefully, then by signal) and release the log."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._stop_file.touch()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGTERM)
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                    self._proc.wait()
        self._logf.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _serve(args) -> int:
    """Child process: run the cocotb bridge on the parent's build until the stop file appears."""
    from cocotb_tools.runner import get_runner
    from gateware import simulate

    build_dir = Path(args.build_dir)
    simulate.simulator_env(args.sim)
    runner = get_runner(args.sim)
    env = {"PSCONV_PTY_FILE": str(build_dir / "pty"), "PSCONV_STOP_FILE": str(build_dir / "stop"),
           "PSCONV_UART": "1" if args.uart else "0", "PSCONV_DIVISOR": str(args.divisor),
           "PSCONV_OWNER_PID": str(os.getppid())}
    simulate.run(runner, test_module="host.sim_bridge", build_dir=build_dir / "sim_build",
                 extra_env=env)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m host.simboard",
        description="Start the simulated engine (Verilator + cocotb) behind a pseudo-terminal and "
                    "print its path; talk to it with python -m host run --port PATH. Ctrl-C stops it.")
    p.add_argument("--model", help="quantized model (.npz): the engine is sized for it")
    p.add_argument("--array", default="8x8", help="MAC array RxC (default 8x8)")
    p.add_argument("--batch", type=batch_arg, default=1, metavar="B",
                   help="size the engine's activation memory for runs of B frames (default 1), "
                        "as python -m host pack/run --batch B packs for")
    p.add_argument("--uart", action="store_true", help="simulate the UART top instead of byte streams")
    p.add_argument("--divisor", type=int, default=8, help="clock cycles per UART bit (default 8)")
    p.add_argument("--build-dir", default="build/simboard", help="Verilator build directory")
    p.add_argument("--sim", default="verilator", choices=("verilator", "icarus"))
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        return _serve(args)
    if not args.model:
        p.error("--model is required")
    from .pack import PackError, load_model, parse_array
    from hw.array import ArrayConfig

    try:
        rows, cols = parse_array(args.array)
        # The config host.pack.pack(..., batch=B) packs for.
        config = ArrayConfig.for_model(load_model(args.model), rows=rows, cols=cols, batch=args.batch)
        board = SimBoard(config=config, uart=args.uart, divisor=args.divisor,
                         build_dir=args.build_dir, sim=args.sim)
    except (PackError, ValueError) as e:
        print(f"python -m host.simboard: error: {e}", file=sys.stderr)
        return 2
    print(board.port, flush=True)
    # Stop cleanly on Ctrl-C and on SIGTERM (a background job may have SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while board._proc.poll() is None:
            time.sleep(0.5)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        board.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

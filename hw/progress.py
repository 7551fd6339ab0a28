"""Progress output for long work: a tqdm bar on a terminal, a plain line now and then in a log.

tqdm redraws its bar with carriage returns ten times a second, which a terminal overwrites but a
log file (CI, ``make demo > log``) keeps: thousands of updates on one line. :func:`progress_bar`
gives a tqdm bar when its stream is a terminal and a :class:`LineProgress` otherwise, which
writes one complete line every ``interval`` seconds and one at the end. Both take the same calls
(``update``, ``set_postfix``, ``close``), so the callers do not care which they got.
"""

from __future__ import annotations

import sys
import time

__all__ = ["progress_bar", "LineProgress"]


class LineProgress:
    """Progress as whole lines: ``desc: done/total unit (pct %), rate unit/s[, postfix]``.

    Parameters (keyword-only)
    -------------------------
    total : int
        Units of work in all (positive).
    desc, unit : str
        What is done and what it is counted in.
    file : text stream
        Where the lines go.
    interval : float
        Least seconds between two lines (the last line is always written).
    clock : callable
        Seconds as a float (``time.monotonic``; a test passes its own).

    Members
    -------
    n : int
        Units done so far (read-only).
    lines : int
        Lines written so far (read-only).
    """

    def __init__(self, *, total: int, desc: str, unit: str, file, interval: float = 30.0,
                 clock=time.monotonic):
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ValueError(f"LineProgress total must be a positive integer, not {total!r}")
        if not interval >= 0:
            raise ValueError(f"LineProgress interval must be >= 0 seconds, not {interval!r}")
        self._total, self._desc, self._unit, self._file = total, desc, unit, file
        self._interval, self._clock = float(interval), clock
        self._start = self._last = clock()
        self._n, self._lines, self._postfix, self._closed = 0, 0, "", False

    @property
    def n(self) -> int:
        return self._n

    @property
    def lines(self) -> int:
        return self._lines

    def _write(self, now: float) -> None:
        rate = self._n / (now - self._start) if now > self._start else 0.0
        pct = 100.0 * self._n / self._total
        tail = f", {self._postfix}" if self._postfix else ""
        print(f"{self._desc}: {self._n}/{self._total} {self._unit} ({pct:.0f} %), "
              f"{rate:.1f} {self._unit}/s{tail}", file=self._file, flush=True)
        self._last, self._lines = now, self._lines + 1

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done; write a line if ``interval`` has passed."""
        self._n += n
        now = self._clock()
        if now - self._last >= self._interval and self._n < self._total:
            self._write(now)

    def set_postfix(self, **values) -> None:
        """Values shown after the rate from the next line on (``key=value, ...``)."""
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        """Write the last line (once)."""
        if not self._closed:
            self._closed = True
            self._write(self._clock())


def progress_bar(*, total: int, desc: str, unit: str, file=None, leave: bool = True,
                 interval: float = 30.0):
    """A tqdm bar on ``file`` (default ``sys.stderr``) if it is a terminal, else a
    :class:`LineProgress` that writes a line every ``interval`` seconds and at :meth:`close`.
    ``leave``: keep the terminal bar after it closes (the log's last line is always kept)."""
    file = sys.stderr if file is None else file
    isatty = getattr(file, "isatty", None)
    if isatty is not None and isatty():
        from tqdm import tqdm
        return tqdm(total=total, desc=desc, unit=unit, leave=leave, file=file)
    return LineProgress(total=total, desc=desc, unit=unit, file=file, interval=interval)

"""hw.progress: a tqdm bar on a terminal, whole lines at an interval in a log."""

import io

import pytest

from hw.progress import LineProgress, progress_bar


class FakeClock:
    """Seconds that the test sets."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lines_at_the_interval_and_at_close():
    clock, out = FakeClock(), io.StringIO()
    bar = LineProgress(total=100, desc="run", unit="frame", file=out, interval=30, clock=clock)
    # Worked by hand: a line at t = 31 (31 s since the start) and t = 61 (30 s since the last),
    # none at 10, 20, 40 or 70; one at close.
    for t in (10, 20, 31, 40, 61, 70):
        clock.now = t
        bar.update(2)
    assert bar.lines == 2 and bar.n == 12
    clock.now = 80
    bar.update(88)                 # done: the line waits for close
    assert bar.lines == 2
    bar.close()
    bar.close()                    # once only
    lines = out.getvalue().splitlines()
    assert lines == ["run: 6/100 frame (6 %), 0.2 frame/s",
                     "run: 10/100 frame (10 %), 0.2 frame/s",
                     "run: 100/100 frame (100 %), 1.2 frame/s"]
    assert "\r" not in out.getvalue()


def test_postfix_is_shown_from_the_next_line():
    clock, out = FakeClock(), io.StringIO()
    bar = LineProgress(total=4, desc="d", unit="batch", file=out, interval=0, clock=clock)
    clock.now = 1
    bar.update()
    bar.set_postfix(loss="0.500", acc="75.0")
    clock.now = 2
    bar.update()
    bar.close()
    assert out.getvalue().splitlines() == ["d: 1/4 batch (25 %), 1.0 batch/s",
                                           "d: 2/4 batch (50 %), 1.0 batch/s, loss=0.500, acc=75.0",
                                           "d: 2/4 batch (50 %), 1.0 batch/s, loss=0.500, acc=75.0"]


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_picks_by_the_stream():
    from tqdm import tqdm
    log = progress_bar(total=3, desc="x", unit="frame", file=io.StringIO())
    assert isinstance(log, LineProgress)
    term = _Terminal()
    bar = progress_bar(total=3, desc="x", unit="frame", file=term)
    assert isinstance(bar, tqdm)
    bar.update(3)
    bar.close()
    assert "\r" in term.getvalue() and "3/3" in term.getvalue()


@pytest.mark.parametrize("kwargs,match", [
    (dict(total=0), "total must be a positive integer"),
    (dict(total=True), "total must be a positive integer"),
    (dict(total=3, interval=-1), "interval must be >= 0"),
])
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LineProgress(desc="x", unit="u", file=io.StringIO(), **kwargs)

"""Progress bars: plain, spaced lines in a log; tqdm's redrawn bar on a terminal; nothing when quiet."""

import io

import pytest

from maskrcnn import progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def clock(monkeypatch):
    """Time as the test sets it (``clock[0]``, seconds), for the bars and for tqdm."""
    now = [1000.0]
    monkeypatch.setattr("tqdm.std.time", lambda: now[0])
    return now


@pytest.fixture(autouse=True)
def not_quiet():
    yield
    progress.set_quiet(False)


def test_a_bar_in_a_log_writes_a_line_every_interval_and_one_at_the_end(clock):
    log = io.StringIO()
    with progress.bar(total=100, desc="epoch 1/2", unit="batch", file=log) as bar:
        for _ in range(100):
            clock[0] += 0.5  # 50 s in all: lines at the start, after 10, 20, 30, 40 s, and at the end
            bar.update(1)
            bar.set_postfix(loss="0.5")  # a redraw request each step: not a line each
    text = log.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 6, lines
    assert lines[0].startswith("epoch 1/2:   0%")
    assert lines[-1].startswith("epoch 1/2: 100%")
    assert "100/100" in lines[-1]
    assert all(line.strip() for line in lines)


def test_a_quick_bar_in_a_log_says_its_start_and_end_only(clock):
    log = io.StringIO()
    for _ in progress.bar(range(1000), total=1000, desc="evaluating", leave=False, file=log):
        clock[0] += 0.001
    lines = log.getvalue().splitlines()
    assert [line.split("|")[0] for line in lines] == ["evaluating:   0%", "evaluating: 100%"]


def test_on_a_terminal_the_bar_is_redrawn_in_place():
    screen = Terminal()
    for _ in progress.bar(range(3), total=3, desc="x", file=screen, mininterval=0):
        pass
    assert "\r" in screen.getvalue()


def test_quiet_turns_off_bars_and_informational_lines(capsys):
    progress.set_quiet(True)
    assert progress.is_quiet()
    log, screen = io.StringIO(), Terminal()
    for stream in (log, screen):
        for _ in progress.bar(range(3), total=3, desc="x", file=stream):
            pass
    progress.inform("training 8 steps")
    assert log.getvalue() == screen.getvalue() == ""
    assert capsys.readouterr().err == ""
    progress.set_quiet(False)
    progress.inform("training 8 steps")
    assert capsys.readouterr().err == "training 8 steps\n"


def test_informational_lines_do_not_repeat_a_log_bar(clock, capsys):
    import sys

    with progress.bar(total=4, desc="epoch 1/1", file=sys.stderr) as bar:
        bar.update(1)
        progress.inform("skipped an unreadable image")
        bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("epoch 1/1:   0%")
    assert lines[1] == "skipped an unreadable image"
    assert lines[2].startswith("epoch 1/1:  50%")
    assert len(lines) == 3

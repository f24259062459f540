"""SerialTransport over real pseudo-terminals and pyserial's `loop://`.

The test holds the pty master and plays the device. Reconnect timings run on a fake clock whose
`sleep` only advances time, so backoff delays are checked exactly; a port that "comes back" is a
new pty behind a symlink the test re-points.
"""

from __future__ import annotations

import contextlib
import os
import re
import tty

import pytest

from gaitforge.hw_drivers.transport import Backoff, SerialTransport, TransportError


class FakeClock:
    def __init__(self):
        self.now_s = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = None  # called with the number of sleeps so far

    def __call__(self) -> float:
        return self.now_s

    def sleep(self, dt: float) -> None:
        self.sleeps.append(dt)
        self.now_s += dt
        if self.on_sleep is not None:
            self.on_sleep(len(self.sleeps))


@pytest.fixture
def ptys():
    """`ptys()` -> (master_fd, slave_path): a fresh raw pty; masters are closed at teardown."""
    masters: list[int] = []

    def make():
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo / line editing before pyserial configures it
        path = os.ttyname(slave)
        os.close(slave)
        masters.append(master)
        return master, path

    yield make
    for fd in masters:
        with contextlib.suppress(OSError):
            os.close(fd)


def open_pty_transport(path, **kw):
    events = []
    t = SerialTransport(
        path,
        1_000_000,
        timeout_s=0.05,
        write_timeout_s=0.05,
        on_event=lambda kind, detail: events.append((kind, detail)),
        **kw,
    )
    return t, events


def test_backoff_doubles_up_to_the_cap():
    b = Backoff(initial_s=0.05, max_s=2.0, factor=2.0)
    assert [b.delay_s(k) for k in range(1, 9)] == pytest.approx(
        [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    )
    with pytest.raises(ValueError, match="max_s"):
        Backoff(initial_s=1.0, max_s=0.5)
    with pytest.raises(ValueError, match="factor"):
        Backoff(factor=0.5)


def test_pty_bytes_flow_both_ways_and_are_counted(ptys):
    master, path = ptys()
    t, events = open_pty_transport(path)
    assert t.connected and events[0][0] == "opened"
    t.write(b"\xff\xff\xfd\x00\x01")
    assert os.read(master, 100) == b"\xff\xff\xfd\x00\x01"
    os.write(master, b"abc")
    assert t.read(3) == b"abc"
    assert (t.counters.bytes_out, t.counters.bytes_in, t.counters.short_reads) == (5, 3, 0)
    t.close()
    t.close()  # idempotent
    assert not t.connected


def test_read_timeout_returns_what_arrived_short(ptys):
    master, path = ptys()
    t, _ = open_pty_transport(path)
    os.write(master, b"\x01\x02")
    assert t.read(10, timeout_s=0.02) == b"\x01\x02"
    assert t.read(4) == b""  # nothing at all: empty, not an error
    assert (t.counters.bytes_in, t.counters.short_reads) == (2, 2)
    os.write(master, b"xyz")
    assert t.read(10, timeout_s=0.0) in (b"", b"x", b"xy", b"xyz")  # zero timeout never blocks
    t.close()


def test_loop_url_read_available_and_reset_input():
    t = SerialTransport("loop://", 115200, timeout_s=0.01)
    assert t.read_available() == b""
    t.write(b"hello")
    assert t.read_available() == b"hello"
    t.write(b"stale")
    t.reset_input()
    assert t.read(5) == b""
    t.write(b"ok")
    assert t.read(2) == b"ok"
    assert t.counters.bytes_out == 12 and t.counters.bytes_in == 7
    t.close()


def test_closed_master_raises_transport_error_on_next_read(ptys):
    master, path = ptys()
    t, events = open_pty_transport(path)
    os.close(master)
    with pytest.raises(TransportError, match=f"{re.escape(path)}.*vanished"):
        t.read(4)
    assert not t.connected
    assert (t.counters.errors, t.counters.disconnects) == (1, 1)
    assert events[-1][0] == "disconnected" and path in events[-1][1]
    with pytest.raises(TransportError, match="disconnected; call reconnect"):
        t.write(b"x")
    with pytest.raises(TransportError, match="disconnected"):
        t.read_available()


def test_closed_master_raises_transport_error_on_write_and_read_available(ptys):
    master, path = ptys()
    t, _ = open_pty_transport(path)
    os.close(master)
    with pytest.raises(TransportError, match="vanished.*write"):
        t.write(b"\x01")
    master2, path2 = ptys()
    t2, _ = open_pty_transport(path2)
    os.close(master2)
    with pytest.raises(TransportError, match="vanished"):
        t2.read_available()


def test_write_timeout_when_nobody_drains_the_pty(ptys):
    _, path = ptys()
    t, events = open_pty_transport(path)
    with pytest.raises(TransportError, match=f"{re.escape(path)}.*timed out after 0.05 s"):
        t.write(b"\x55" * 1_000_000)  # far more than the pty buffer holds
    assert t.connected  # a slow device is not a vanished one
    assert t.counters.write_timeouts == 1 and t.counters.errors == 0
    assert events[-1][0] == "write_timeout"
    t.close()


def test_reconnect_backoff_is_exact_and_the_port_comes_back(ptys, tmp_path):
    master, path = ptys()
    link = tmp_path / "ttyDOG"
    link.symlink_to(path)
    clock = FakeClock()
    t, events = open_pty_transport(str(link), clock=clock, sleep=clock.sleep)
    os.close(master)
    with pytest.raises(TransportError):
        t.read(1)
    link.unlink()  # unplugged: the device path is gone

    def replug(n_sleeps):
        if n_sleeps == 3:  # after the third failed attempt a new device appears at the path
            new_master, new_path = ptys()
            link.symlink_to(new_path)
            replug.master = new_master

    clock.on_sleep = replug
    t.reconnect()
    assert clock.sleeps == pytest.approx([0.05, 0.1, 0.2])
    kinds = [k for k, _ in events]
    assert kinds[-4:] == ["reconnect_failed"] * 3 + ["reconnected"]
    assert "attempt 1 failed" in events[-4][1] and "retrying in 0.05 s" in events[-4][1]
    assert t.generation == 1 and t.connected
    assert (t.counters.reconnects, t.counters.reconnect_attempts) == (1, 4)
    os.write(replug.master, b"\x42")
    assert t.read(1) == b"\x42"
    t.write(b"\x43")
    assert os.read(replug.master, 1) == b"\x43"
    t.close()


def test_reconnect_to_a_repointed_symlink_succeeds_at_once(ptys, tmp_path):
    master, path = ptys()
    link = tmp_path / "ttyDOG"
    link.symlink_to(path)
    clock = FakeClock()
    t, _ = open_pty_transport(str(link), clock=clock, sleep=clock.sleep)
    os.close(master)
    with pytest.raises(TransportError):
        t.write(b"\x00")
    master2, path2 = ptys()
    tmp_link = tmp_path / "ttyDOG.new"
    tmp_link.symlink_to(path2)
    os.replace(tmp_link, link)  # atomic re-point, as udev would
    t.reconnect()
    assert clock.sleeps == [] and t.generation == 1
    os.write(master2, b"ok")
    assert t.read(2) == b"ok"
    t.reconnect()  # re-opening a live port also counts as a new generation
    assert t.generation == 2
    t.close()


def test_reconnect_gives_up_at_the_deadline_naming_the_port(tmp_path):
    clock = FakeClock()
    t = SerialTransport("loop://", 115200, clock=clock, sleep=clock.sleep)
    t.port = str(tmp_path / "gone")  # the device is never coming back
    events = []
    t.on_event = lambda kind, detail: events.append((kind, detail))
    with pytest.raises(TransportError, match=r"gone' did not come back after 6 attempts in 1 s"):
        t.reconnect(deadline_s=1.0)
    # 0.05 + 0.1 + 0.2 + 0.4 = 0.75; the next 0.8 s is cut to the 0.25 s left; then a last try
    assert clock.sleeps == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.25])
    assert [k for k, _ in events] == ["reconnect_failed"] * 5 + ["reconnect_gave_up"]
    assert t.generation == 0 and not t.connected


def test_bad_port_errors_name_the_port(ptys, tmp_path):
    missing = str(tmp_path / "ttyUSB9")
    with pytest.raises(TransportError, match=re.escape(f"cannot open serial port '{missing}'")):
        SerialTransport(missing, 1_000_000)
    with pytest.raises(TransportError, match="cannot open serial port 'bogus://x'"):
        SerialTransport("bogus://x", 1_000_000)
    _, path = ptys()
    first, _ = open_pty_transport(path)
    with pytest.raises(TransportError, match=f"'{re.escape(path)}'.*lock"):  # exclusive by default
        open_pty_transport(path)
    first.close()
    with pytest.raises(ValueError, match="baud"):
        SerialTransport("loop://", 0)
    with pytest.raises(ValueError, match="write_timeout_s"):
        SerialTransport("loop://", 9600, write_timeout_s=-1.0)

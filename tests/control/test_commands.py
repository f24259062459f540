"""Command sources: the schedule on policy time, the operator's limits, the keyboard's decoder and
a real terminal (a pty in a child process: keys in, commands out, the terminal restored on exit
and on SIGTERM), the gamepad through evdev's own event objects (and a kernel virtual device
where /dev/uinput exists). Numbers worked out by hand."""

from __future__ import annotations

import errno
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import time

import numpy as np
import pytest

from gaitforge.control.commands import (
    CommandLimits,
    CommandSchedule,
    FixedCommand,
    Segment,
    StepCommand,
    load_schedule,
)
from gaitforge.control.keyboard import KeyDecoder
from gaitforge.robots.configio import ConfigError


# Fixed and schedule ----------------------------------------------------------------------------
def test_fixed_command_is_the_same_object_every_tick():
    src = FixedCommand((0.3, 0.0, 0.1))
    a, b = src.poll(0.0), src.poll(12.0)
    assert a is b and a.requests == () and a.lost == ""
    np.testing.assert_array_equal(a.command, [0.3, 0.0, 0.1])
    with pytest.raises(ConfigError, match="three finite numbers"):
        FixedCommand((0.3, float("nan"), 0.0))


def test_schedule_follows_policy_time_and_stands_after_the_end(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("segments: [{duration_s: 5, command: [0.3, 0, 0]}, "
                    "{duration_s: 3, command: [0, 0, 0.5]}]\n")
    s = load_schedule(path)
    assert s.total_s == 8.0 and not s.can_rearm
    np.testing.assert_array_equal(s.current, [0.3, 0, 0])  # before the first poll
    # at 50 Hz, policy tick k has policy time 0.02 k: ticks 0..249 are segment 0 (250 ticks
    # = 5 s), 250..399 segment 1 (150 ticks = 3 s), 400 on: zero
    cmds = np.array([s.poll(k * 0.02).command for k in range(420)])
    assert (cmds[:250] == [0.3, 0, 0]).all() and (cmds[250:400] == [0, 0, 0.5]).all()
    assert (cmds[400:] == 0).all()
    np.testing.assert_array_equal(s.current, [0, 0, 0])


@pytest.mark.parametrize(("text", "expected"), [
    ("segments: []\n", "at least one segment"),
    ("[1, 2]\n", "must be a mapping"),
    ("segments: [{duration_s: 0, command: [0, 0, 0]}]\n",
     r"segments\[0\].duration_s: expected a positive number of seconds, got 0"),
    ("segments: [{duration_s: 1, command: [0, 0]}]\n",
     r"segments\[0\].command: expected \[vx, vy, yaw\]"),
    ("segments: [{duration_s: 1, command: [0, 0, 0], speed: 2}]\n",
     "expected exactly duration_s and command"),
    ("segment: []\n", "expected one key, segments"),
])
def test_a_bad_schedule_is_a_sentence_naming_the_file_and_segment(tmp_path, text, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_schedule(path)
    with pytest.raises(ConfigError, match="file not found"):
        load_schedule(tmp_path / "missing.yaml")


def test_schedule_refuses_no_segments():
    with pytest.raises(ConfigError):
        CommandSchedule([])
    assert CommandSchedule([Segment(0.1, (1.0, 0.0, 0.0))]).poll(0.1).command.tolist() == [0] * 3


def test_step_command_steps_and_stays_within_the_limits():
    c = StepCommand(CommandLimits(max_m_s=(0.3, 0.15), max_yaw_rad_s=0.5,
                                  step=(0.1, 0.05, 0.2)))
    for _ in range(5):
        c.step(0, 1)  # 0.1, 0.2, 0.3, then held at 0.3
    c.step(2, -1)
    c.step(2, -1)
    c.step(2, -1)  # -0.2, -0.4, -0.5 (clipped)
    c.step(1, 1)
    np.testing.assert_allclose(c.value, [0.3, 0.05, -0.5])
    c.zero()
    np.testing.assert_array_equal(c.value, [0, 0, 0])


# The keyboard ----------------------------------------------------------------------------------
def test_key_decoder_letters_arrows_split_sequences_and_unknown_keys():
    d = KeyDecoder()
    assert d.feed(b"wW\x1b[A") == [("step", 0, 1)] * 3
    assert d.feed(b"\x1b[") == []  # an arrow cut in two reads waits for its last byte
    assert d.feed(b"Dk ") == [("step", 2, 1), ("request", "damp")]  # k: unknown, dropped
    assert d.feed(b"\x1bOB\x1b[Zr") == [("step", 0, -1), ("request", "rearm")]  # [Z unknown
    assert d.feed(b"\x1b") == [] and d.feed(b"[Cq") == [("step", 2, -1), ("request", "stop")]
    assert d.feed(b"zcx") == [("step", 1, 1), ("step", 1, -1), ("zero",)]


CHILD = """
import sys, time
from gaitforge.control.keyboard import KeyboardTeleop
k = KeyboardTeleop(0)
print("ready", flush=True)
while True:
    given = k.poll(0.0)
    if given.requests or k.current.any():
        print("command", *k.current.round(6), "requests", *given.requests, flush=True)
    if "stop" in given.requests:
        break
    time.sleep(0.005)
k.close()
print("closed", flush=True)
time.sleep(float(sys.argv[1]))
"""


def _child(seconds_after: float):
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(seconds_after)], stdin=slave,
                            stdout=slave, stderr=slave, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    return proc, master, slave, before


def _read_until(master: int, word: bytes, timeout_s: float = 30.0) -> bytes:
    out, deadline = b"", time.monotonic() + timeout_s
    while word not in out:
        left = deadline - time.monotonic()
        assert left > 0, f"no {word!r} from the child: {out!r}"
        if select.select([master], [], [], left)[0]:
            try:
                out += os.read(master, 4096)
            except OSError as err:  # EIO: the child closed the terminal
                assert err.errno == errno.EIO, err
                break
    return out


def _cooked(attrs) -> tuple:
    """What a shell needs back: line mode, echo, and the suspend key."""
    return (bool(attrs[3] & termios.ICANON), bool(attrs[3] & termios.ECHO),
            attrs[6][termios.VSUSP])


def test_keyboard_on_a_real_terminal_and_the_terminal_comes_back():
    proc, master, slave, before = _child(0.0)
    try:
        _read_until(master, b"ready")
        during = termios.tcgetattr(slave)
        assert _cooked(during) == (False, False, b"\x00")  # cbreak, no echo, no Ctrl-Z
        os.write(master, b"w\x1b[A")  # vx +0.05 twice
        out = _read_until(master, b"command 0.1 0.0 0.0")
        os.write(master, b"a ")  # yaw +0.1, damping
        out = _read_until(master, b"requests damp")
        assert b"command 0.1 0.0 0.1 requests damp" in out
        os.write(master, b"rq")
        out = _read_until(master, b"closed")
        assert b"requests rearm stop" in out
        assert proc.wait(timeout=30) == 0
        assert _cooked(termios.tcgetattr(slave)) == _cooked(before) == (True, True, b"\x1a")
        assert termios.tcgetattr(slave) == before
    finally:
        proc.kill()
        os.close(master)
        os.close(slave)


def test_sigterm_restores_the_terminal_then_ends_the_process():
    proc, master, slave, before = _child(60.0)
    try:
        _read_until(master, b"ready")
        assert _cooked(termios.tcgetattr(slave))[:2] == (False, False)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM  # the default action, after restoring
        assert termios.tcgetattr(slave) == before
    finally:
        proc.kill()
        os.close(master)
        os.close(slave)


def test_keyboard_refuses_what_is_not_a_terminal(tmp_path):
    from gaitforge.control.keyboard import TerminalKeys

    with open(tmp_path / "f", "w") as f, pytest.raises(OSError, match="not a terminal"):
        TerminalKeys(f.fileno())

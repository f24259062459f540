"""The keyboard in the terminal as a command source (`gaitforge deploy --teleop keyboard`).

    w / up arrow      vx + step          s / down arrow    vx - step
    a / left arrow    yaw rate + step    d / right arrow   yaw rate - step   (+ is to the left)
    z                 vy + step (left)   c                 vy - step
    x                 zero command       space             damping (latched)
    r                 re-arm             q                 end the episode (shutdown sequence)

`TerminalKeys` puts the terminal in cbreak mode (no line buffering, no echo) with reads that
never block (VMIN = VTIME = 0, so no O_NONBLOCK is left on a file the shell shares), and
turns off the suspend and quit keys (Ctrl-Z would freeze the control loop with the robot
powered; Ctrl-\\ would kill it without its shutdown). Ctrl-C still sends SIGINT, which the
deploy loop turns into its shutdown. The terminal's settings come back on exit, on an
exception, and on SIGTERM or SIGHUP before the episode's own handlers are installed (the
handler restores, then passes the signal on). `KeyDecoder` turns bytes into actions; an arrow
key's escape sequence split across two reads is kept until it is whole.
"""

from __future__ import annotations

import os
import signal
import termios
import threading

from .commands import CommandLimits, OperatorInput, StepCommand

# action: ("step", axis, sign) | ("zero",) | ("request", name)
KEYS: dict[bytes, tuple] = {
    b"w": ("step", 0, 1), b"\x1b[A": ("step", 0, 1), b"\x1bOA": ("step", 0, 1),
    b"s": ("step", 0, -1), b"\x1b[B": ("step", 0, -1), b"\x1bOB": ("step", 0, -1),
    b"a": ("step", 2, 1), b"\x1b[D": ("step", 2, 1), b"\x1bOD": ("step", 2, 1),
    b"d": ("step", 2, -1), b"\x1b[C": ("step", 2, -1), b"\x1bOC": ("step", 2, -1),
    b"z": ("step", 1, 1), b"c": ("step", 1, -1), b"x": ("zero",),
    b" ": ("request", "damp"), b"r": ("request", "rearm"), b"q": ("request", "stop"),
}
HELP = ("w/s or up/down: vx; a/d or left/right: yaw; z/c: vy; x: zero; space: damping; "
        "r: re-arm; q: end")


class KeyDecoder:
    """Bytes from the terminal -> actions (see KEYS); unknown keys are dropped, upper case
    counts as lower case, and an incomplete escape sequence waits for the next bytes."""

    def __init__(self):
        self._pending = b""

    def feed(self, data: bytes) -> list[tuple]:
        buf, out = self._pending + data, []
        i = 0
        while i < len(buf):
            if buf[i:i + 1] == b"\x1b":
                seq = buf[i:i + 3]
                if len(seq) < 3 and (seq in (b"\x1b", b"\x1b[", b"\x1bO")):
                    break  # the rest of the sequence is still on its way
                if seq in KEYS:
                    out.append(KEYS[seq])
                i += 3 if seq[1:2] in (b"[", b"O") else 1
                continue
            action = KEYS.get(buf[i:i + 1].lower())
            if action is not None:
                out.append(action)
            i += 1
        self._pending = buf[i:]
        return out


class TerminalKeys:
    """A terminal file descriptor in cbreak mode with non-blocking reads; see the module
    docstring. Use as a context manager; `read()` returns b"" when no key is waiting."""

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __init__(self, fd: int):
        if not os.isatty(fd):
            raise OSError(f"file descriptor {fd} is not a terminal: --teleop keyboard needs "
                          "one (run it in a terminal, not with input from a pipe or a file)")
        self.fd = fd
        self._saved: list | None = None
        self._handlers: dict = {}

    def __enter__(self) -> TerminalKeys:
        self._saved = termios.tcgetattr(self.fd)
        mode = termios.tcgetattr(self.fd)
        mode[3] &= ~(termios.ICANON | termios.ECHO)  # lflag: keys one by one, not echoed
        mode[0] &= ~(termios.IXON | termios.ICRNL)  # iflag: Ctrl-S/Q are keys; CR stays CR
        cc = mode[6]
        cc[termios.VMIN], cc[termios.VTIME] = 0, 0  # read() returns at once
        disabled = os.fpathconf(self.fd, "PC_VDISABLE")
        for key in (termios.VSUSP, termios.VQUIT):
            cc[key] = bytes([disabled]) if isinstance(cc[key], bytes) else disabled
        if threading.current_thread() is threading.main_thread():  # handlers live there
            for sig in self.SIGNALS:
                self._handlers[sig] = signal.getsignal(sig)
                signal.signal(sig, self._on_signal)
        termios.tcsetattr(self.fd, termios.TCSANOW, mode)
        return self

    def read(self) -> bytes:
        try:
            return os.read(self.fd, 64)
        except BlockingIOError:
            return b""

    def restore(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSANOW, self._saved)
            self._saved = None

    def __exit__(self, *exc) -> None:
        self.restore()
        for sig, old in self._handlers.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, old)
        self._handlers.clear()

    def _on_signal(self, signum, frame) -> None:
        self.restore()
        old = self._handlers.get(signum, signal.SIG_DFL)
        if callable(old):
            old(signum, frame)
            return
        if old != signal.SIG_IGN:  # the default action (end the process), terminal restored
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


class KeyboardTeleop:
    """A command source on a terminal (see the module docstring); `current` is the command
    in force."""

    can_rearm = True

    def __init__(self, fd: int, limits: CommandLimits | None = None):
        self.keys = TerminalKeys(fd).__enter__()
        self.decoder = KeyDecoder()
        self.command = StepCommand(limits or CommandLimits())
        self._input = OperatorInput(self.command.value)

    @property
    def current(self):
        return self.command.value

    def poll(self, policy_time_s: float) -> OperatorInput:
        data = self.keys.read()
        if not data:
            return self._input
        requests = []
        for action in self.decoder.feed(data):
            if action[0] == "step":
                self.command.step(action[1], action[2])
            elif action[0] == "zero":
                self.command.zero()
            else:
                requests.append(action[1])
        self._input = OperatorInput(self.command.value)
        return OperatorInput(self.command.value, tuple(requests))

    def close(self) -> None:
        self.keys.__exit__(None, None, None)

"""SerialTransport: a byte pipe over pyserial with explicit timeouts and reconnect with backoff.

Opened from a device path (`/dev/ttyUSB0`, `/dev/pts/5`) or any pyserial URL (`loop://` in tests),
through `serial.serial_for_url`; a port that does not open raises `TransportError` naming it
and what to check (`open_problem`: no such device, a folder, not a tty, busy, permission).
Every blocking call is bounded:
- `read(n, timeout_s)` returns what arrived by the deadline, possibly short (never raises on a
  timeout; the protocol layer decides what a short read means);
- `write` gives up after `write_timeout_s` and raises `TransportError`;
- `reconnect()` keeps trying to re-open for at most `open_timeout_s`, sleeping with exponential
  backoff between attempts (clock and sleep are injected, so tests are exact).
A port that vanishes (the USB cable pulled, the pty master closed) raises OSError /
SerialException inside pyserial; here it marks the transport disconnected and raises
`TransportError` naming the port. The transport never re-opens by itself: the caller decides,
calls `reconnect()`, and notices a new link by `generation` changing (it must then re-seed its
commands from the measured pose; the transport knows nothing about motion).
"""

from __future__ import annotations

import contextlib
import errno
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import serial

try:  # POSIX: pyserial's reset_input_buffer calls tcflush, which raises termios.error (not an
    from termios import error as _TermiosError  # OSError) on a pty whose master has gone
except ImportError:  # pragma: no cover (Windows)
    _TermiosError = OSError


class TransportError(OSError):
    """The serial link failed: could not open, write failed or timed out, or the port vanished."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: initial_s, initial_s*factor, ... capped at max_s."""

    initial_s: float = 0.05
    max_s: float = 2.0
    factor: float = 2.0

    def __post_init__(self):
        if not self.initial_s > 0:
            raise ValueError("initial_s must be > 0")
        if not self.max_s >= self.initial_s:
            raise ValueError("max_s must be >= initial_s")
        if not self.factor >= 1.0:
            raise ValueError("factor must be >= 1")

    def delay_s(self, attempt: int) -> float:
        """Sleep after failed attempt number `attempt` (1-based)."""
        return min(self.initial_s * self.factor ** (attempt - 1), self.max_s)


@dataclass
class TransportCounters:
    bytes_in: int = 0
    bytes_out: int = 0
    short_reads: int = 0  # read() returned fewer bytes than asked (timeout)
    write_timeouts: int = 0
    errors: int = 0  # reads/writes that failed because the port vanished or broke
    disconnects: int = 0
    reconnects: int = 0  # successful re-opens
    reconnect_attempts: int = 0  # every re-open attempt, failed or not


EventCallback = Callable[[str, str], None]

_OPEN_PROBLEMS = {
    errno.ENOENT: "no such device: is it plugged in and powered, and is the path right? "
                  "(ls /dev/serial/by-id/)",
    errno.EACCES: "permission denied: add your user to the group that owns the device "
                  "(often dialout), or check its mode",
    errno.EPERM: "permission denied: add your user to the group that owns the device "
                 "(often dialout), or check its mode",
    errno.EAGAIN: "busy: another program has it open and locked (another gaitforge, a "
                  "serial monitor)",
    errno.EBUSY: "busy: another program has it open and locked (another gaitforge, a "
                 "serial monitor)",
    errno.EISDIR: "is a folder, not a serial device",
    errno.ENOTTY: "not a serial device (it takes no serial settings): check the path",
}


def open_problem(err: Exception, port: str | None) -> str:
    """Why a port did not open, and what to check, from pyserial's error."""
    if not port:
        return "no port given"
    if isinstance(err, ValueError):
        return f"not a device path or a pyserial URL ({err})"
    code = getattr(err, "errno", None)
    if code is None and "Could not configure port" in str(err):  # pyserial drops the errno
        code = errno.ENOTTY
    if code in _OPEN_PROBLEMS:
        return _OPEN_PROBLEMS[code]
    return f"{err} (check the cable, the path, and that no other program uses it)"


class SerialTransport:
    """One serial port. Not thread-safe: one owner reads and writes.

    `on_event(kind, detail)` is told about: "opened", "disconnected", "write_timeout",
    "reconnect_failed" (one per failed attempt), "reconnected", "reconnect_gave_up".
    """

    def __init__(
        self,
        port: str,
        baud: int,
        *,
        timeout_s: float = 0.01,
        write_timeout_s: float = 0.1,
        open_timeout_s: float = 5.0,
        exclusive: bool = True,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_event: EventCallback | None = None,
    ):
        if not isinstance(baud, int) or isinstance(baud, bool) or baud <= 0:
            raise ValueError(f"baud must be a positive integer, got {baud!r}")
        for name, value in (
            ("timeout_s", timeout_s),
            ("write_timeout_s", write_timeout_s),
            ("open_timeout_s", open_timeout_s),
        ):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        self.port = port
        self.baud = baud
        self.timeout_s = float(timeout_s)
        self.write_timeout_s = float(write_timeout_s)
        self.open_timeout_s = float(open_timeout_s)
        self.exclusive = exclusive
        self.backoff = backoff or Backoff()
        self.clock = clock
        self.sleep = sleep
        self.on_event = on_event
        self.counters = TransportCounters()
        self.generation = 0  # +1 on every successful reconnect
        self._serial: serial.SerialBase | None = None
        self._read_timeout_s = self.timeout_s  # what the pyserial object is set to now
        self._serial = self._open()
        self._emit("opened", f"{port} at {baud} baud")

    # Lifecycle -------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._serial is not None

    def _open(self) -> serial.SerialBase:
        try:
            ser = serial.serial_for_url(
                self.port,
                baudrate=self.baud,
                timeout=self.timeout_s,
                write_timeout=self.write_timeout_s,
                exclusive=self.exclusive,
            )
        except (OSError, ValueError) as err:  # SerialException is an OSError; bad URL: ValueError
            raise TransportError(f"cannot open serial port {self.port!r}: "
                                 f"{open_problem(err, self.port)}") from err
        self._read_timeout_s = self.timeout_s
        return ser

    def close(self) -> None:
        """Close the port (idempotent). A closed transport can be re-opened by `reconnect()`."""
        ser, self._serial = self._serial, None
        if ser is not None:
            with contextlib.suppress(OSError):  # a vanished port may fail to close; it is closed
                ser.close()

    def __enter__(self) -> SerialTransport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def reconnect(self, deadline_s: float | None = None) -> None:
        """Close and re-open the port, retrying with backoff for at most `deadline_s` seconds
        (default `open_timeout_s`). Raises TransportError naming the port if it never comes back.
        On success `generation` increases by one and bytes received before are dropped."""
        self.close()
        budget_s = self.open_timeout_s if deadline_s is None else float(deadline_s)
        give_up_at = self.clock() + budget_s
        attempt, last_try = 0, False
        while True:
            attempt += 1
            self.counters.reconnect_attempts += 1
            try:
                self._serial = self._open()
            except TransportError as err:
                remaining_s = give_up_at - self.clock()
                if last_try or remaining_s <= 0:
                    self._emit(
                        "reconnect_gave_up",
                        f"{self.port}: {attempt} attempts in "
                        f"{budget_s:g} s, last error: {err.__cause__}",
                    )
                    raise TransportError(
                        f"serial port {self.port!r} did not come back after {attempt} attempts "
                        f"in {budget_s:g} s: {err.__cause__}"
                    ) from err
                delay = self.backoff.delay_s(attempt)
                last_try = delay >= remaining_s  # the sleep reaches the deadline: one more try
                delay = min(delay, remaining_s)
                self._emit(
                    "reconnect_failed",
                    f"{self.port}: attempt {attempt} failed "
                    f"({err.__cause__}); retrying in {delay:g} s",
                )
                self.sleep(delay)
                continue
            with contextlib.suppress(OSError):  # bytes from before the drop are stale
                self._serial.reset_input_buffer()
            self.generation += 1
            self.counters.reconnects += 1
            self._emit(
                "reconnected", f"{self.port}: attempt {attempt}, generation {self.generation}"
            )
            return

    # Bytes -----------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Write all of `data` or raise TransportError (timeout or vanished port)."""
        ser = self._require_open()
        try:
            ser.write(data)
        except serial.SerialTimeoutException as err:  # port alive but not draining
            self.counters.write_timeouts += 1
            self._emit("write_timeout", f"{self.port}: {len(data)} bytes")
            raise TransportError(
                f"write to serial port {self.port!r} timed out after {self.write_timeout_s:g} s"
            ) from err
        except OSError as err:
            self._lost(err, "write")
        self.counters.bytes_out += len(data)

    def read(self, n: int, timeout_s: float | None = None) -> bytes:
        """Up to `n` bytes: returns as soon as `n` arrived, or what arrived by the deadline."""
        ser = self._require_open()
        timeout = self.timeout_s if timeout_s is None else float(timeout_s)
        try:
            if timeout != self._read_timeout_s:  # pyserial re-applies termios on every change
                ser.timeout = timeout
                self._read_timeout_s = timeout
            data = ser.read(n)
        except OSError as err:
            self._lost(err, "read")
        self.counters.bytes_in += len(data)
        if len(data) < n:
            self.counters.short_reads += 1
        return data

    def read_available(self) -> bytes:
        """Whatever is already buffered, without waiting."""
        ser = self._require_open()
        try:
            waiting = ser.in_waiting
            data = ser.read(waiting) if waiting else b""
        except OSError as err:
            self._lost(err, "read")
        self.counters.bytes_in += len(data)
        return data

    def reset_input(self) -> None:
        """Drop every byte received and not yet read (stale replies after a timeout)."""
        ser = self._require_open()
        try:
            ser.reset_input_buffer()
        except (OSError, _TermiosError) as err:
            self._lost(err, "reset_input")

    # Internals -------------------------------------------------------------------------------
    def _require_open(self) -> serial.SerialBase:
        if self._serial is None:
            raise TransportError(f"serial port {self.port!r} is disconnected; call reconnect()")
        return self._serial

    def _lost(self, err: Exception, op: str) -> NoReturn:
        self.counters.errors += 1
        self.counters.disconnects += 1
        self.close()
        self._emit("disconnected", f"{self.port}: {op} failed: {err}")
        raise TransportError(f"serial port {self.port!r} vanished ({op} failed: {err})") from err

    def _emit(self, kind: str, detail: str) -> None:
        if self.on_event is not None:
            self.on_event(kind, detail)

"""Virtual serial devices: a device model served on a real pseudo-terminal, in real time, with
the wire time of the baud rate and faults injected on demand.

A device model (the Dynamixel servo chain, the board) turns request bytes into reply bytes:

    model.feed(data, now_s) -> [reply, ...]      model.poll(now_s) -> [unsolicited, ...]

and a `sync(now_s)` callable couples it to a body (goal positions in, measured state out; the
CLI hands in a simulated body that advances its physics to the wall clock when read).

Wire time: a byte takes 10 bit times (8N1). The pty delivers a request at once; the server
pretends it arrived over the wire (starting no earlier than the wire is free), and writes a
reply only when its last byte would have left the device, so a host sees the timing a real
half-duplex bus at that baud would give it.

Byte-level faults (`FaultSpec`, parsed from `--fault`, comma-separated, each with a
probability per reply unless noted):
    corrupt:P        flip one random bit of one random byte of the reply
    bad_crc:P        flip a bit in the reply's last byte (CRC or frame trailer)
    truncate:P       send only a random prefix of the reply
    drop:P           send nothing
    late:P@MS        send the reply MS milliseconds late
    garbage:P        put 1-8 random bytes before the reply
    vanish:S         the port disappears S seconds after start (the pty closes for good)
    unplug:S@D       the port disappears at S seconds and comes back D seconds later, at the
                     same path (a symlink re-pointed to a new pty)
Each fault may appear once in a spec: a repeated one (two unplugs) is refused, not merged.
Protocol-aware faults (one silent servo, the Alert bit) are options of the device models.
"""

from __future__ import annotations

import math
import os
import select
import tempfile
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BITS_PER_BYTE = 10  # start + 8 data + stop


def wire_time_s(n_bytes: int, baud: int) -> float:
    return n_bytes * BITS_PER_BYTE / baud


@dataclass(frozen=True)
class FaultSpec:
    corrupt: float = 0.0
    bad_crc: float = 0.0
    truncate: float = 0.0
    drop: float = 0.0
    late: float = 0.0
    late_ms: float = 20.0
    garbage: float = 0.0
    vanish_s: float | None = None
    unplug_s: float | None = None
    replug_after_s: float | None = None
    extra: dict = field(default_factory=dict)  # protocol-aware faults for the device model

    @property
    def any_byte_fault(self) -> bool:
        return any((self.corrupt, self.bad_crc, self.truncate, self.drop, self.late,
                    self.garbage))


PROTOCOL_FAULTS = ("silent", "alert")  # handled by the device models (silent:ID, alert:ID@BITS)
BYTE_FAULTS = ("corrupt", "bad_crc", "truncate", "drop", "late", "garbage")
PORT_FAULTS = ("vanish", "unplug")


def parse_faults(text: str | None) -> FaultSpec:
    """`corrupt:0.01,late:0.05@10,unplug:3@1,silent:4` -> FaultSpec (ValueError names the item).

    Each fault at most once: a spec that names one twice (two unplugs, two silent servos, two
    drop rates) is refused, naming both items; a FaultSpec holds one of each, so keeping only
    the last would silently drop the first. Probabilities lie in [0, 1]; times are finite and
    0 or more."""
    if not text:
        return FaultSpec()
    values: dict = {}
    extra: dict = {}
    seen: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        name, _, arg = item.partition(":")
        try:
            if name in seen:
                raise ValueError(f"{name} is already given ('{seen[name]}'); each fault may "
                                 "appear once")
            _parse_fault(name, arg, values, extra)
            seen[name] = item
        except ValueError as err:
            raise ValueError(f"--fault '{item}': {err}") from None
    return FaultSpec(**values, extra=extra)


def _parse_fault(name: str, arg: str, values: dict, extra: dict) -> None:
    """One `name:arg` into FaultSpec fields (`values`) or the device models' faults (`extra`)."""
    main, _, sub = arg.partition("@")
    if name in PROTOCOL_FAULTS:
        dxl_id, bits = int(main, 0), int(sub, 0) if sub else None
        if not 0 <= dxl_id <= 252:
            raise ValueError(f"servo id {dxl_id} outside 0..252")
        if bits is not None and not 0 < bits <= 0xFF:
            raise ValueError(f"Hardware Error Status bits 0x{bits:X} outside 0x01..0xFF")
        extra[name] = (dxl_id, bits)
    elif name in BYTE_FAULTS:
        p = float(main)
        if not 0.0 <= p <= 1.0:
            raise ValueError("probability outside [0, 1]")
        values[name] = p
        if name == "late" and sub:
            values["late_ms"] = _time(sub, "the delay (ms)")
    elif name == "vanish":
        values["vanish_s"] = _time(main, "the time (s)")
    elif name == "unplug":
        values["unplug_s"] = _time(main, "the time (s)")
        values["replug_after_s"] = _time(sub or "1.0", "the time unplugged (s)")
    else:
        raise ValueError(f"unknown fault (known: "
                         f"{', '.join(BYTE_FAULTS + PORT_FAULTS + PROTOCOL_FAULTS)})")


def _time(text: str, what: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{what} must be a finite number, 0 or more, got {text!r}")
    return value


def apply_byte_faults(reply: bytes, faults: FaultSpec, rng: np.random.Generator,
                      counts: dict[str, int]) -> tuple[bytes, float]:
    """(bytes to send, extra delay s) for one reply under `faults`; counts what was injected."""
    def hit(name: str) -> bool:
        p = getattr(faults, name)
        if p and rng.random() < p:
            counts[name] = counts.get(name, 0) + 1
            return True
        return False

    if not reply:
        return reply, 0.0
    if hit("drop"):
        return b"", 0.0
    out = bytearray(reply)
    if hit("corrupt"):
        out[rng.integers(len(out))] ^= 1 << int(rng.integers(8))
    if hit("bad_crc"):
        out[-1] ^= 1 << int(rng.integers(8))
    if hit("truncate") and len(out) > 1:
        out = out[: int(rng.integers(1, len(out)))]
    if hit("garbage"):
        out = bytearray(rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8)) + out
    delay = faults.late_ms / 1e3 if hit("late") else 0.0
    return bytes(out), delay


class PtyPort:
    """The device end of a pseudo-terminal, published at a stable symlink path so an unplugged
    port can come back at the same name."""

    def __init__(self, link: str | None = None):
        self.folder = None
        if link is None:
            self.folder = tempfile.mkdtemp(prefix="gaitforge-vr-")
            link = os.path.join(self.folder, "tty0")
        self.path = link
        self.master: int | None = None
        self._slave: int | None = None
        self.open()

    def open(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: bytes pass as they are
        tmp = f"{self.path}.new"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)
        self.master, self._slave = master, slave

    def unplug(self) -> None:
        """Close both ends: the host's reads and writes fail as with a pulled USB cable."""
        for fd in (self.master, self._slave):
            if fd is not None:
                os.close(fd)
        self.master = self._slave = None
        if os.path.lexists(self.path):
            os.unlink(self.path)

    def close(self) -> None:
        self.unplug()
        if self.folder:
            for p in Path(self.folder).iterdir():
                p.unlink()
            os.rmdir(self.folder)


class VirtualDeviceServer:
    """Serves one device model on a PtyPort until `stop` is set (or forever)."""

    def __init__(self, model, port: PtyPort, *, baud: int, faults: FaultSpec = FaultSpec(),
                 sync: Callable[[float], None] | None = None, seed: int = 0,
                 clock: Callable[[], float] = time.monotonic):
        self.model, self.port, self.baud, self.faults = model, port, baud, faults
        self.sync = sync or (lambda now_s: None)
        self.rng = np.random.default_rng(seed)
        self.clock = clock
        self.counts: dict[str, int] = {}
        self.received = bytearray()  # every byte the host sent (tests check the wire)
        self._wire_free = 0.0
        self._outbox: list[tuple[float, bytes]] = []  # (send at, bytes)

    def serve(self, stop=None, duration_s: float | None = None) -> None:
        t0 = self.clock()
        unplugged_at = None
        while not (stop is not None and stop.is_set()):
            now = self.clock()
            elapsed = now - t0
            if duration_s is not None and elapsed >= duration_s:
                break
            if self.port.master is None:
                if unplugged_at is not None and self.faults.replug_after_s is not None and \
                        now - unplugged_at >= self.faults.replug_after_s:
                    self.port.open()
                    self._count("replug")
                    unplugged_at = None
                else:
                    time.sleep(0.001)
                    self.sync(now)
                    continue
            if self.faults.vanish_s is not None and elapsed >= self.faults.vanish_s:
                self.port.unplug()
                self._count("vanish")
                return
            if self.faults.unplug_s is not None and unplugged_at is None and \
                    elapsed >= self.faults.unplug_s and "unplug" not in self.counts:
                self.port.unplug()
                self._outbox.clear()
                self._count("unplug")
                unplugged_at = now
                continue
            self._step(now)

    def _step(self, now: float) -> None:
        timeout = 0.001
        if self._outbox:
            timeout = max(0.0, min(timeout, self._outbox[0][0] - now))
        ready, _, _ = select.select([self.port.master], [], [], timeout)
        now = self.clock()
        if ready:
            try:
                data = os.read(self.port.master, 4096)
            except OSError:  # the host side closed: keep serving, it may reopen
                data = b""
            if data:
                self.received += data
                arrived = max(now, self._wire_free) + wire_time_s(len(data), self.baud)
                self._wire_free = arrived
                self.sync(now)
                for reply in self.model.feed(data, arrived):
                    self._queue(reply, arrived)
        self.sync(now)
        for msg in self.model.poll(now):
            self._queue(msg, now)
        self._flush(self.clock())

    def _queue(self, reply: bytes, ready_s: float) -> None:
        out, delay = apply_byte_faults(reply, self.faults, self.rng, self.counts)
        if not out:
            return
        start = max(ready_s, self._wire_free)
        done = start + wire_time_s(len(out), self.baud)
        self._wire_free = done
        self._outbox.append((done + delay, out))
        self._outbox.sort(key=lambda item: item[0])

    def _flush(self, now: float) -> None:
        while self._outbox and self._outbox[0][0] <= now:
            _, out = self._outbox.pop(0)
            try:
                os.write(self.port.master, out)
            except OSError:
                self._count("write_failed")

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

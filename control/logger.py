"""Crash-safe episode log of the deploy loop: one record per tick, replayable into training.

File = 8-byte magic (``GFLOG\\0<version>\\n``), then TFRecord-style frames: u32 LE payload length,
u32 CRC-32 of those 4 bytes, payload, u32 CRC-32 of the payload. Payload = kind byte + body:
``M`` metadata (JSON, first), ``T`` tick (little-endian float64 vector, layout in the metadata),
``E`` event (JSON), ``Z`` clean end (JSON summary). No ``Z`` means the episode was interrupted.
A torn tail (file ends inside the last frame, or the last frame fails its CRC) is reported and
skipped; a bad frame followed by more data is corruption and raises ``LogFormatError``.

The control tick only packs a copy of its arrays into one vector and puts it on a SimpleQueue;
a daemon thread frames, writes, flushes to the OS every ``flush_every_s`` and fsyncs on close.
A writer error is kept and raised by the next ``log_tick``/``log_event``/``close``.
Logged: the hardware-measurable ``RobotState`` fields; with ``n_feet`` (the deploy runtime
passes the spec's), also the velocity estimator's output every tick (``est_*``, see
control/estimator.py) and, next to it, the simulator's truth (``true_*`` = TRUTH_FIELDS, from
``RobotState.privileged``; NaN on hardware, where there is none). The truth is there to
measure the estimator and the rewards recomputed from logs against; it is never an input of
a policy. A log's metadata lists its tick fields, so logs without these fields still read.
Suggested caller metadata keys (shown by ``summarize``): ``robot``, ``body``, ``bundle_hash``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from gaitforge.robots.types import CommandMode, JointCommand, RobotState

from .log_summary import summarize  # noqa: F401 - `gaitforge logs inspect`'s, re-exported

FORMAT_VERSION = 1
MAGIC = b"GFLOG\x00" + bytes([FORMAT_VERSION]) + b"\n"
TIMING_FIELDS = ("deadline_s", "lateness_s", "work_s", "skipped")
TERMINAL_EVENT_KINDS = ("tilt_estop", "non_finite")  # latched: the episode ends there
STATE_FIELDS = ("time_s", "joint_pos_rad", "joint_vel_rad_s", "joint_torque_nm",
                "imu_quat_wxyz", "gyro_rad_s", "accel_m_s2")
ESTIMATE_FIELDS = ("est_lin_vel_m_s", "est_foot_contact")  # body m/s; 1: a stance foot used
TRUTH_FIELDS = ("true_lin_vel_m_s", "true_ang_vel_rad_s", "true_foot_contact",  # body frame
                "true_base_height_m", "true_collisions")  # above the local ground; link count
MODE_CODES = {CommandMode.POSITION: 0, CommandMode.DAMPING: 1, CommandMode.OFF: 2}
_U32 = struct.Struct("<I")
_STOP = object()
_log = logging.getLogger(__name__)


class LogFormatError(ValueError):
    """The file is not an episode log, or a record in the middle of it is corrupt."""


class LogWriteError(RuntimeError):
    """The background writer failed (disk full, I/O error...); the cause is chained. What is on
    disk was cut back to the last whole record, so it reads as a log that stops there."""


class LogSpaceError(ValueError):
    """The log folder cannot hold the episode; the message names the folder and the sizes."""


FRAME_OVERHEAD = 13  # length, its CRC, kind byte, payload CRC


def check_free_space(folder: str | Path, n_ticks: int, n_joints: int, obs_dim: int,
                     margin: float = 2.0, *, n_feet: int = 0) -> None:
    """Refuse (LogSpaceError) a folder without room for `n_ticks` ticks (x `margin`, plus
    64 KiB for metadata and events)."""
    width = sum(size for _, size, _ in tick_fields(n_joints, obs_dim, n_feet))
    need = int(margin * n_ticks * (8 * width + FRAME_OVERHEAD)) + 65536
    free = shutil.disk_usage(folder).free
    if free < need:
        raise LogSpaceError(f"{folder}: {free / 1e6:.2f} MB free, but an episode of {n_ticks} "
                            f"ticks needs about {need / 1e6:.2f} MB of log: free some space or "
                            "choose another --log-dir")


def tick_fields(n_joints: int, obs_dim: int, n_feet: int = 0) -> list[tuple[str, int, str]]:
    """(name, size, dtype) of each slice of a tick vector, in order. Actions have n_joints;
    `velocity_command` is the command in force (vx m/s, vy m/s, yaw rad/s); with n_feet > 0,
    the estimate and the truth follow (contacts and counts as 0/1 floats)."""
    n, f = n_joints, n_feet
    feet = [("est_lin_vel_m_s", 3, "float64"), ("est_foot_contact", f, "float64"),
            ("true_lin_vel_m_s", 3, "float64"), ("true_ang_vel_rad_s", 3, "float64"),
            ("true_foot_contact", f, "float64"), ("true_base_height_m", 1, "float64"),
            ("true_collisions", 1, "float64")] if f > 0 else []
    return [("tick", 1, "int64"), ("deadline_s", 1, "float64"), ("lateness_s", 1, "float64"),
            ("work_s", 1, "float64"), ("skipped", 1, "int64"), ("state_valid", 1, "bool"),
            ("time_s", 1, "float64"), ("joint_pos_rad", n, "float64"),
            ("joint_vel_rad_s", n, "float64"), ("joint_torque_nm", n, "float64"),
            ("imu_quat_wxyz", 4, "float64"), ("gyro_rad_s", 3, "float64"),
            ("accel_m_s2", 3, "float64"), ("observation", obs_dim, "float64"),
            ("action", n, "float64"), ("command_position_rad", n, "float64"),
            ("command_mode", 1, "int64"), ("command_kp_nm_per_rad", n, "float64"),
            ("command_kd_nm_s_per_rad", n, "float64"), ("command_torque_ff_nm", n, "float64"),
            ("velocity_command", 3, "float64"), *feet]


def _json(obj) -> bytes:
    def default(o):
        if isinstance(o, np.ndarray | np.generic):
            return o.tolist()
        if isinstance(o, Path):
            return str(o)
        raise TypeError(f"{type(o).__name__} is not JSON serialisable")
    return json.dumps(obj, default=default).encode()


def _frame(kind: bytes, body: bytes) -> bytes:
    head = _U32.pack(1 + len(body))
    payload = kind + body
    return b"".join((head, _U32.pack(zlib.crc32(head)), payload, _U32.pack(zlib.crc32(payload))))


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


class EpisodeLogger:
    """Writes one episode log. ``log_tick`` never touches the disk; see the module docstring."""

    def __init__(self, path: str | Path, metadata: dict, *, n_joints: int, obs_dim: int,
                 n_feet: int = 0, flush_every_s: float = 0.2):
        """n_feet: the robot's (its spec's feet), to log the velocity estimate and the truth;
        0 logs neither."""
        if n_joints < 1:
            raise ValueError(f"n_joints must be >= 1, got {n_joints}")
        if n_feet < 0:
            raise ValueError(f"n_feet must be >= 0, got {n_feet}")
        if obs_dim < 1:
            raise ValueError(f"obs_dim must be >= 1, got {obs_dim}")
        if not flush_every_s > 0:
            raise ValueError(f"flush_every_s must be > 0, got {flush_every_s}")
        fields = tick_fields(n_joints, obs_dim, n_feet)
        added = {"format_version": FORMAT_VERSION, "start_time": _now_iso(),
                 "n_joints": n_joints, "obs_dim": obs_dim, "n_feet": n_feet,
                 "tick_fields": [{"name": f, "size": s, "dtype": d} for f, s, d in fields]}
        clash = sorted(set(metadata) & set(added))
        if clash:
            raise ValueError(f"metadata keys {clash} are reserved for the logger")
        self.path = Path(path)
        self.n_joints, self.obs_dim, self.n_feet = n_joints, obs_dim, n_feet
        self._slices, start = {}, 0
        for name, size, _ in fields:
            self._slices[name] = slice(start, start + size)
            start += size
        self._width = start
        self._n_ticks = 0
        self._closed = False
        self._error: BaseException | None = None
        self._flush_every_s = flush_every_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        meta = _json({**metadata, **added})  # before opening: a bad metadata leaves no file
        # Unbuffered: the writer thread batches frames itself, so after a failed write it knows
        # exactly which whole frames reached the file and cuts the rest (see _drain).
        self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115 - the writer's
        self._pending, self._ends, self._offset = bytearray(), [], 0
        self._append(MAGIC + _frame(b"M", meta))  # the writer's first drain writes it
        self._thread = threading.Thread(target=self._run, name=f"EpisodeLogger({self.path.name})",
                                        daemon=True)
        self._thread.start()

    # ---- caller side (the control tick) -------------------------------------------------
    def _raise_writer_error(self) -> None:
        if self._error is not None:
            msg = f"episode log writer for {self.path} failed: {self._error!r}"
            raise LogWriteError(msg) from self._error

    def _check(self) -> None:
        self._raise_writer_error()
        if self._closed:
            raise ValueError(f"episode log {self.path} is closed")

    def _put(self, buf: np.ndarray, name: str, value) -> None:
        sl = self._slices[name]
        if value is None:
            return  # stays NaN
        arr = np.asarray(value, dtype=np.float64)
        if arr.shape != (sl.stop - sl.start,):
            raise ValueError(f"{name} has shape {arr.shape}, expected ({sl.stop - sl.start},)")
        buf[sl] = arr

    def log_tick(self, tick: int, state: RobotState | None, observation: np.ndarray | None,
                 action: np.ndarray | None, command: JointCommand,
                 timing: dict[str, float], estimate=None, velocity_command=None) -> None:
        """Copy one tick into a vector and queue it. ``None`` parts are logged as NaN.
        estimate: the tick's `control.estimator.VelocityEstimate` (needs n_feet);
        velocity_command: the command in force this tick (vx, vy, yaw rate)."""
        self._check()
        buf = np.full(self._width, np.nan)
        s = self._slices
        buf[s["tick"]] = tick
        for key in TIMING_FIELDS:
            try:
                buf[s[key]] = timing[key]
            except KeyError:
                raise ValueError(f"timing lacks {key!r}; expected keys {TIMING_FIELDS}") from None
        buf[s["state_valid"]] = state is not None
        if state is not None:
            buf[s["time_s"]] = state.time_s
            for name in STATE_FIELDS[1:]:
                self._put(buf, name, getattr(state, name))
        self._put(buf, "observation", observation)
        self._put(buf, "action", action)
        self._put(buf, "command_position_rad", command.position_rad)
        buf[s["command_mode"]] = MODE_CODES[command.mode]
        self._put(buf, "command_kp_nm_per_rad", command.kp_nm_per_rad)
        self._put(buf, "command_kd_nm_s_per_rad", command.kd_nm_s_per_rad)
        self._put(buf, "command_torque_ff_nm", command.torque_ff_nm)
        self._put(buf, "velocity_command", velocity_command)
        if self.n_feet:
            self._put_feet(buf, state, estimate)
        elif estimate is not None:
            raise ValueError("an estimate was given, but this log has no estimate fields "
                             "(EpisodeLogger(..., n_feet=0))")
        self._n_ticks += 1
        self._queue.put((b"T", buf))

    def _put_feet(self, buf: np.ndarray, state: RobotState | None, estimate) -> None:
        if estimate is not None:
            self._put(buf, "est_lin_vel_m_s", estimate.lin_vel_m_s)
            self._put(buf, "est_foot_contact", estimate.foot_contact)
        truth = None if state is None else state.privileged
        if truth is not None:  # simulation only
            for name, value in zip(TRUTH_FIELDS, (
                    truth.base_lin_vel_m_s, truth.base_ang_vel_rad_s, truth.foot_contact,
                    [truth.base_height_m], [truth.collisions]), strict=True):
                self._put(buf, name, value)

    def log_event(self, tick: int, kind: str, detail: str, time_s: float) -> None:
        """Queue a safety (or other) event that happened at ``tick``."""
        self._check()
        self._queue.put((b"E", {"tick": int(tick), "kind": str(kind), "detail": str(detail),
                                "time_s": float(time_s)}))

    def close(self, summary: dict | None = None) -> None:
        """Write the clean-end record, flush, fsync, join the writer. Idempotent."""
        self._finish({} if summary is None else summary)

    def abort(self) -> None:
        """Stop logging after a failure: write what is queued, no clean-end record (the log
        reads as cut off), never raise."""
        with contextlib.suppress(Exception):
            self._finish(None)

    def _finish(self, summary: dict | None) -> None:
        if self._closed:
            return
        if summary is not None:
            added = {"end_time": _now_iso(), "n_ticks": self._n_ticks}
            clash = sorted(set(summary) & set(added))
            if clash:
                raise ValueError(f"summary keys {clash} are reserved for the logger")
            self._queue.put((b"Z", {**summary, **added}))
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
        self._raise_writer_error()

    def __enter__(self) -> EpisodeLogger:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # an exception in the loop is not a clean end: flush and fsync, but write no Z record
        self._finish(None if exc_type is not None else {})

    # ---- writer thread --------------------------------------------------------------------
    def _run(self) -> None:
        f, q, every = self._file, self._queue, self._flush_every_s
        try:
            self._drain()  # magic + metadata reach the OS at once
            last_flush = time.monotonic()
            while True:
                timeout = max(0.0, last_flush + every - time.monotonic()) if self._ends else None
                try:
                    item = q.get(timeout=timeout)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    break
                if item is not None:
                    kind, body = item
                    self._append(_frame(kind, body.tobytes() if kind == b"T" else _json(body)))
                now = time.monotonic()
                if self._ends and now - last_flush >= every:
                    self._drain()
                    last_flush = now
            self._drain()
            os.fsync(f.fileno())
        except BaseException as exc:  # kept for the caller, never lost
            self._error = exc
        finally:
            try:
                f.close()
            except OSError as exc:
                self._error = self._error or exc

    def _append(self, frame: bytes) -> None:
        self._pending += frame
        self._ends.append(self._offset + len(self._pending))

    def _drain(self) -> None:
        """Write the pending frames. If the OS refuses part of them (disk full, I/O error), cut
        the file back to the last whole frame that reached it, fsync, and raise."""
        done = 0
        with memoryview(self._pending) as view:
            try:
                while done < len(view):
                    n = self._file.write(view[done:])
                    if not n:
                        raise OSError(f"write to {self.path} returned {n!r}")
                    done += n
            except OSError:
                good = max([self._offset] + [e for e in self._ends if e <= self._offset + done])
                with contextlib.suppress(OSError):
                    os.ftruncate(self._file.fileno(), good)
                    os.fsync(self._file.fileno())
                raise
        self._offset += len(self._pending)
        self._pending.clear()
        self._ends.clear()


# ---- reading ------------------------------------------------------------------------------
class RecordIterator:
    """Iterates (kind, body) over a log; after exhaustion ``torn_tail`` holds the report."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.torn_tail: dict | None = None
        self._data = self.path.read_bytes()
        if self._data[: len(MAGIC)] != MAGIC:
            raise LogFormatError(f"{self.path} is not a gaitforge episode log (format "
                                 f"{FORMAT_VERSION}): magic {self._data[:8]!r} != {MAGIC!r}")
        self._gen = self._records()

    def __iter__(self) -> RecordIterator:
        return self

    def __next__(self) -> tuple[str, bytes]:
        return next(self._gen)

    def _torn(self, offset: int, why: str) -> None:
        self.torn_tail = {"offset": offset, "bytes_skipped": len(self._data) - offset}
        _log.warning("%s: torn tail at byte %d (%s), %d bytes skipped", self.path, offset, why,
                     self.torn_tail["bytes_skipped"])

    def _records(self) -> Iterator[tuple[str, bytes]]:
        data, o, end = self._data, len(MAGIC), len(self._data)
        while o < end:
            if end - o < 8:
                return self._torn(o, "incomplete header")
            head = data[o: o + 4]
            if zlib.crc32(head) != _U32.unpack_from(data, o + 4)[0]:
                if not data[o:].strip(b"\0"):  # zero-filled tail of a crashed write
                    return self._torn(o, "zero-filled header")
                raise LogFormatError(f"{self.path}: corrupt record header at byte offset {o}")
            n = _U32.unpack(head)[0]
            stop = o + 8 + n + 4
            if stop > end:
                return self._torn(o, "file ends inside the record")
            payload = data[o + 8: o + 8 + n]
            if zlib.crc32(payload) != _U32.unpack_from(data, o + 8 + n)[0]:
                if not data[stop:].strip(b"\0"):
                    return self._torn(o, "last record fails its CRC")
                raise LogFormatError(f"{self.path}: corrupt record (payload CRC) at byte offset "
                                     f"{o}, followed by {end - stop} more bytes")
            if n == 0:
                raise LogFormatError(f"{self.path}: empty record at byte offset {o}")
            yield chr(payload[0]), payload[1:]
            o = stop


def iter_records(path: str | Path) -> RecordIterator:
    """Low level: (kind, body) of every complete record; torn tail skipped (see ``.torn_tail``)."""
    return RecordIterator(path)


@dataclass
class EpisodeLog:
    path: Path
    metadata: dict
    ticks: dict[str, np.ndarray]  # field -> (T, size), or (T,) for size-1 fields
    events: list[dict]
    summary: dict | None  # the Z record; None if the episode was interrupted
    torn_tail: dict | None  # {"offset": int, "bytes_skipped": int} or None

    @property
    def complete(self) -> bool:
        return self.summary is not None

    def __len__(self) -> int:
        return len(self.ticks["tick"])


def read_log(path: str | Path) -> EpisodeLog:
    """Read a whole log. Interrupted logs and torn tails read; corruption raises LogFormatError."""
    records = iter_records(path)
    metadata, summary, events, rows = None, None, [], []
    for kind, body in records:
        if metadata is None:
            if kind != "M":
                raise LogFormatError(f"{records.path}: first record is {kind!r}, not metadata")
            metadata = json.loads(body)
            fields = [(f["name"], f["size"], f["dtype"]) for f in metadata["tick_fields"]]
            width = sum(f[1] for f in fields)
        elif kind == "T":
            if len(body) != 8 * width:
                raise LogFormatError(f"{records.path}: tick record of {len(body)} bytes, "
                                     f"expected {8 * width}")
            rows.append(body)
        elif kind == "E":
            events.append(json.loads(body))
        elif kind == "Z":
            summary = json.loads(body)
        else:
            raise LogFormatError(f"{records.path}: unknown record kind {kind!r}")
    if metadata is None:
        raise LogFormatError(f"{records.path}: no metadata record")
    table = np.frombuffer(b"".join(rows), dtype="<f8").reshape(len(rows), width)
    ticks, start = {}, 0
    for name, size, dtype in fields:
        col = table[:, start: start + size]
        col = col[:, 0] if size == 1 else col
        ticks[name] = (col != 0) if dtype == "bool" else col.astype(dtype)
        start += size
    return EpisodeLog(records.path, metadata, ticks, events, summary, records.torn_tail)


def transitions(log: EpisodeLog) -> dict[str, np.ndarray]:
    """Replay-ready pairs (tick row t, row t+1): the policy ran at t, an observation exists at t+1.

    Rows are consecutive logged ticks (the tick index jumps over skipped grid points).
    done: a latched e-stop/fault event (TERMINAL_EVENT_KINDS) at tick t+1. truncated: not done
    and the policy did not run at t+1 (a gap, or the end of its last stretch). A tick that has
    a terminal event starts no pair: the safety layer overrode its action. Raw state arrays
    are those of tick t (the state the observation was built from).
    """
    t = log.ticks
    ran = np.isfinite(t["action"]).all(axis=1)
    has_obs = np.isfinite(t["observation"]).all(axis=1)
    terminal = {e["tick"] for e in log.events if e["kind"] in TERMINAL_EVENT_KINDS}
    ends = np.isin(t["tick"], np.array(sorted(terminal), dtype=np.int64))
    i = np.flatnonzero(ran[:-1] & has_obs[:-1] & has_obs[1:] & ~ends[:-1])
    done = ends[i + 1]
    out = {"obs": t["observation"][i].astype(np.float32),
           "action": t["action"][i].astype(np.float32),
           "next_obs": t["observation"][i + 1].astype(np.float32),
           "done": done, "truncated": ~done & ~ran[i + 1], "tick": t["tick"][i]}
    out.update({name: t[name][i] for name in STATE_FIELDS})
    return out

"""Board protocol messages: layouts, checks, encode and decode (the spec is docs/board_protocol.md).

Body = version u8 | type u8 | seq u16 | payload | crc u16, little-endian; the framing around it
(COBS, CRC-16/CCITT-FALSE, delimiters) is `board_framing`. Floats are IEEE float32 and must be
finite. Messages are frozen dataclasses holding floats as tuples (so they compare and hash);
`encode(msg)` builds a frame and `FrameDecoder.feed(data)` turns a byte stream into messages,
dropping and counting whatever fails. The checks a board answers with an ERROR raise
`ProtocolError` carrying that ERROR's fields, so host and board share one set of checks.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass

from gaitforge.robots.types import CommandMode

from .board_framing import CrcError, FrameError, FrameSplitter, frame, seal, unframe

VERSION = 1
MAX_JOINTS = 32
WATCHDOG_MS_RANGE = (10, 10_000)
STREAM_HZ_MAX = 1000

_HEADER = struct.Struct("<BBH")
_STATE = struct.Struct("<QHHHBBIHH4f3f3f")  # 64 bytes, then pos, vel, torque (n float32 each)
_COMMAND = struct.Struct("<BBBB")  # mode, fields, n, reserved; then n float32 per field
_CONFIG = struct.Struct("<BBHHH")  # n, reserved, watchdog_ms, stream_hz, reserved; then n kd
_CONFIG_ACK = struct.Struct("<HBBHH")  # config_seq, n, reserved, watchdog_ms, stream_hz
_ERROR = struct.Struct("<BBHH")  # code, offending_type, offending_seq, detail


class MsgType(enum.IntEnum):
    HEARTBEAT = 0x01  # host -> board
    COMMAND = 0x02
    CONFIG = 0x03
    STATE = 0x81  # board -> host (high bit set)
    CONFIG_ACK = 0x82
    ERROR = 0x83


class ErrorCode(enum.IntEnum):
    UNSUPPORTED_VERSION = 1  # detail: the version the board speaks
    UNKNOWN_TYPE = 2  # detail: the type received
    BAD_LENGTH = 3  # detail: the expected payload length (or its type's fixed part)
    BAD_VALUE = 4  # detail: payload offset of the first bad field
    NOT_CONFIGURED = 5  # COMMAND before any CONFIG; not applied
    WATCHDOG_LATCHED = 6  # COMMAND while the watchdog is tripped; not applied
    JOINT_COUNT = 7  # n differs from the board's joints; detail: the board's n


class Status(enum.IntFlag):
    CONFIGURED = 1 << 0
    WATCHDOG_TRIPPED = 1 << 1  # latched: damping (or off) until a CONFIG
    WATCHDOG_OFF = 1 << 2  # second stage: torque off
    IMU_FAULT = 1 << 3
    SERVO_FAULT = 1 << 4  # some bit of servo_fault_mask is set
    TORQUE_MEASURED = 1 << 5  # joint_torque_nm is a measurement (else zeros)
    COMMAND_APPLIED = 1 << 6  # last_command_seq is valid (a COMMAND applied since CONFIG)


STATUS_ALL = (1 << 7) - 1
WIRE_MODE = {CommandMode.OFF: 0, CommandMode.POSITION: 1, CommandMode.DAMPING: 2}
MODE_FROM_WIRE = {v: k for k, v in WIRE_MODE.items()}
FIELD_KP, FIELD_KD, FIELD_TAU = 0x01, 0x02, 0x04


class ProtocolError(ValueError):
    """A frame with a good CRC that breaks the protocol: a board answers with this ERROR."""

    def __init__(self, code: ErrorCode, msg_type: int, seq: int, detail: int = 0):
        super().__init__(f"{code.name}: type 0x{msg_type:02x} seq {seq} detail {detail}")
        self.code, self.msg_type, self.seq, self.detail = code, msg_type, seq, detail


# Messages ----------------------------------------------------------------------------------------
def _floats(name: str, values, n: int | None = None, *, nonneg: bool = False) -> tuple:
    """Validated and rounded to float32, so a message holds exactly what goes on the wire."""
    out = tuple(float(v) for v in values)
    if n is not None and len(out) != n:
        raise ValueError(f"{name}: expected {n} values, got {len(out)}")
    fmt = f"<{len(out)}f"
    try:
        out = struct.unpack(fmt, struct.pack(fmt, *out))
    except OverflowError:
        out = (math.inf,)
    if not all(map(math.isfinite, out)) or (nonneg and min(out, default=0.0) < 0.0):
        raise ValueError(f"{name}: values must be finite float32{' >= 0' if nonneg else ''}")
    return out


def _check_int(name: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{name}: {value} outside [{lo}, {hi}]")


@dataclass(frozen=True)
class Heartbeat:
    seq: int

    def __post_init__(self):
        _check_int("seq", self.seq, 0, 0xFFFF)


@dataclass(frozen=True)
class Command:
    """Joint targets (rad), optional gains (N·m/rad, N·m·s/rad, >= 0) and torque (N·m)."""

    seq: int
    mode: CommandMode
    position_rad: tuple[float, ...]
    kp_nm_per_rad: tuple[float, ...] | None = None
    kd_nm_s_per_rad: tuple[float, ...] | None = None
    torque_ff_nm: tuple[float, ...] | None = None

    def __post_init__(self):
        _check_int("seq", self.seq, 0, 0xFFFF)
        if self.mode not in WIRE_MODE:
            raise ValueError(f"mode: {self.mode!r} is not a CommandMode")
        pos = _floats("position_rad", self.position_rad)
        _check_int("len(position_rad)", len(pos), 1, MAX_JOINTS)
        object.__setattr__(self, "position_rad", pos)
        for name in ("kp_nm_per_rad", "kd_nm_s_per_rad", "torque_ff_nm"):
            if getattr(self, name) is not None:
                vals = _floats(name, getattr(self, name), len(pos), nonneg=name != "torque_ff_nm")
                object.__setattr__(self, name, vals)


@dataclass(frozen=True)
class Config:
    """n_joints must equal the board's; damping kd (N·m·s/rad) is what the watchdog uses."""

    seq: int
    n_joints: int
    watchdog_ms: int
    stream_hz: int
    damping_kd_nm_s_per_rad: tuple[float, ...]

    def __post_init__(self):
        _check_int("seq", self.seq, 0, 0xFFFF)
        _check_int("n_joints", self.n_joints, 1, MAX_JOINTS)
        _check_int("watchdog_ms", self.watchdog_ms, *WATCHDOG_MS_RANGE)
        _check_int("stream_hz", self.stream_hz, 0, STREAM_HZ_MAX)
        kd = _floats("damping_kd_nm_s_per_rad", self.damping_kd_nm_s_per_rad, self.n_joints,
                     nonneg=True)
        object.__setattr__(self, "damping_kd_nm_s_per_rad", kd)


@dataclass(frozen=True)
class ConfigAck:
    seq: int
    config_seq: int
    n_joints: int
    watchdog_ms: int
    stream_hz: int

    def __post_init__(self):
        for name in ("seq", "config_seq"):
            _check_int(name, getattr(self, name), 0, 0xFFFF)
        _check_int("n_joints", self.n_joints, 1, MAX_JOINTS)
        _check_int("watchdog_ms", self.watchdog_ms, *WATCHDOG_MS_RANGE)
        _check_int("stream_hz", self.stream_hz, 0, STREAM_HZ_MAX)


@dataclass(frozen=True)
class Error:
    seq: int
    code: ErrorCode
    offending_type: int
    offending_seq: int
    detail: int = 0

    def __post_init__(self):
        object.__setattr__(self, "code", ErrorCode(self.code))
        _check_int("offending_type", self.offending_type, 0, 0xFF)
        for name in ("seq", "offending_seq", "detail"):
            _check_int(name, getattr(self, name), 0, 0xFFFF)


@dataclass(frozen=True)
class State:
    """One sample: board time (µs), counters, IMU (wxyz, rad/s, m/s²), joints (rad, rad/s, N·m)."""

    seq: int
    time_us: int
    last_command_seq: int
    ack_seq: int
    status: Status
    output_mode: CommandMode
    servo_fault_mask: int
    rx_crc_errors: int
    rx_dropped: int
    imu_quat_wxyz: tuple[float, ...]
    gyro_rad_s: tuple[float, ...]
    accel_m_s2: tuple[float, ...]
    joint_pos_rad: tuple[float, ...]
    joint_vel_rad_s: tuple[float, ...]
    joint_torque_nm: tuple[float, ...]

    def __post_init__(self):
        for name in ("seq", "last_command_seq", "ack_seq", "rx_crc_errors", "rx_dropped"):
            _check_int(name, getattr(self, name), 0, 0xFFFF)
        _check_int("time_us", self.time_us, 0, 2**64 - 1)
        _check_int("servo_fault_mask", self.servo_fault_mask, 0, 2**32 - 1)
        _check_int("status", int(self.status), 0, STATUS_ALL)
        object.__setattr__(self, "status", Status(self.status))
        if self.output_mode not in WIRE_MODE:
            raise ValueError(f"output_mode: {self.output_mode!r} is not a CommandMode")
        for name, n in (("imu_quat_wxyz", 4), ("gyro_rad_s", 3), ("accel_m_s2", 3)):
            object.__setattr__(self, name, _floats(name, getattr(self, name), n))
        pos = _floats("joint_pos_rad", self.joint_pos_rad)
        _check_int("len(joint_pos_rad)", len(pos), 1, MAX_JOINTS)
        object.__setattr__(self, "joint_pos_rad", pos)
        for name in ("joint_vel_rad_s", "joint_torque_nm"):
            object.__setattr__(self, name, _floats(name, getattr(self, name), len(pos)))


Message = Heartbeat | Command | Config | ConfigAck | Error | State
MSG_TYPE = {Heartbeat: MsgType.HEARTBEAT, Command: MsgType.COMMAND, Config: MsgType.CONFIG,
            ConfigAck: MsgType.CONFIG_ACK, Error: MsgType.ERROR, State: MsgType.STATE}


# Encoding ----------------------------------------------------------------------------------------
def _payload(msg: Message) -> tuple[MsgType, bytes]:
    if isinstance(msg, Heartbeat):
        return MsgType.HEARTBEAT, b""
    if isinstance(msg, Command):
        extra = [(FIELD_KP, msg.kp_nm_per_rad), (FIELD_KD, msg.kd_nm_s_per_rad),
                 (FIELD_TAU, msg.torque_ff_nm)]
        values = list(msg.position_rad)
        fields = 0
        for bit, vals in extra:
            if vals is not None:
                fields |= bit
                values += vals
        head = _COMMAND.pack(WIRE_MODE[msg.mode], fields, len(msg.position_rad), 0)
        return MsgType.COMMAND, head + struct.pack(f"<{len(values)}f", *values)
    if isinstance(msg, Config):
        kd = msg.damping_kd_nm_s_per_rad
        head = _CONFIG.pack(msg.n_joints, 0, msg.watchdog_ms, msg.stream_hz, 0)
        return MsgType.CONFIG, head + struct.pack(f"<{len(kd)}f", *kd)
    if isinstance(msg, ConfigAck):
        return MsgType.CONFIG_ACK, _CONFIG_ACK.pack(msg.config_seq, msg.n_joints, 0,
                                                    msg.watchdog_ms, msg.stream_hz)
    if isinstance(msg, Error):
        return MsgType.ERROR, _ERROR.pack(msg.code, msg.offending_type, msg.offending_seq,
                                          msg.detail)
    if isinstance(msg, State):
        n = len(msg.joint_pos_rad)
        head = _STATE.pack(msg.time_us, msg.last_command_seq, msg.ack_seq, msg.status,
                           WIRE_MODE[msg.output_mode], n, msg.servo_fault_mask,
                           msg.rx_crc_errors, msg.rx_dropped, *msg.imu_quat_wxyz,
                           *msg.gyro_rad_s, *msg.accel_m_s2)
        joints = msg.joint_pos_rad + msg.joint_vel_rad_s + msg.joint_torque_nm
        return MsgType.STATE, head + struct.pack(f"<{3 * n}f", *joints)
    raise TypeError(f"not a board message: {msg!r}")


def encode_body(msg: Message) -> bytes:
    """version..payload followed by the CRC: the bytes that COBS encodes."""
    mtype, payload = _payload(msg)
    return seal(_HEADER.pack(VERSION, mtype, msg.seq) + payload)


def encode(msg: Message) -> bytes:
    return frame(encode_body(msg))


# Decoding ----------------------------------------------------------------------------------------
def _unpack_floats(mtype: int, seq: int, p: bytes, offset: int, count: int,
                   nonneg_from: int | None = None) -> tuple[float, ...]:
    vals = struct.unpack_from(f"<{count}f", p, offset)
    for i, v in enumerate(vals):
        if not math.isfinite(v) or (nonneg_from is not None and i >= nonneg_from and v < 0.0):
            raise ProtocolError(ErrorCode.BAD_VALUE, mtype, seq, offset + 4 * i)
    return vals


def _need(mtype: int, seq: int, p: bytes, expected: int) -> None:
    if len(p) != expected:
        raise ProtocolError(ErrorCode.BAD_LENGTH, mtype, seq, expected)


def _bad(mtype: int, seq: int, offset: int) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_VALUE, mtype, seq, offset)


def _joint_count(mtype: int, seq: int, p: bytes, offset: int, min_len: int) -> int:
    if len(p) < min_len:
        raise ProtocolError(ErrorCode.BAD_LENGTH, mtype, seq, min_len)
    if not 1 <= p[offset] <= MAX_JOINTS:
        raise _bad(mtype, seq, offset)
    return p[offset]


def _parse_heartbeat(seq: int, p: bytes) -> Heartbeat:
    _need(MsgType.HEARTBEAT, seq, p, 0)
    return Heartbeat(seq)


def _parse_command(seq: int, p: bytes) -> Command:
    t = MsgType.COMMAND
    n = _joint_count(t, seq, p, 2, _COMMAND.size)
    mode, fields, _, reserved = _COMMAND.unpack_from(p)
    if fields & ~(FIELD_KP | FIELD_KD | FIELD_TAU):
        raise _bad(t, seq, 1)
    present = [bit for bit in (FIELD_KP, FIELD_KD, FIELD_TAU) if fields & bit]
    _need(t, seq, p, 4 + 4 * n * (1 + len(present)))
    if mode not in MODE_FROM_WIRE:
        raise _bad(t, seq, 0)
    if reserved:
        raise _bad(t, seq, 3)
    # after the positions come the gains (kp, kd: >= 0), then the feed-forward torque (any sign)
    n_gains = sum(1 for bit in present if bit != FIELD_TAU)
    vals = _unpack_floats(t, seq, p, 4, n * (1 + n_gains), nonneg_from=n)
    if fields & FIELD_TAU:
        vals += _unpack_floats(t, seq, p, 4 + 4 * n * (1 + n_gains), n)
    arrays = {FIELD_KP: None, FIELD_KD: None, FIELD_TAU: None}
    for k, bit in enumerate(present, start=1):
        arrays[bit] = vals[k * n : (k + 1) * n]
    return Command(seq, MODE_FROM_WIRE[mode], vals[:n], arrays[FIELD_KP], arrays[FIELD_KD],
                   arrays[FIELD_TAU])


def _parse_config(seq: int, p: bytes) -> Config:
    t = MsgType.CONFIG
    n = _joint_count(t, seq, p, 0, _CONFIG.size)
    _need(t, seq, p, _CONFIG.size + 4 * n)
    _, reserved, watchdog_ms, stream_hz, reserved2 = _CONFIG.unpack_from(p)
    lo, hi = WATCHDOG_MS_RANGE
    for ok, offset in ((reserved == 0, 1), (lo <= watchdog_ms <= hi, 2),
                       (stream_hz <= STREAM_HZ_MAX, 4), (reserved2 == 0, 6)):
        if not ok:
            raise _bad(t, seq, offset)
    kd = _unpack_floats(t, seq, p, _CONFIG.size, n, nonneg_from=0)
    return Config(seq, n, watchdog_ms, stream_hz, kd)


def _parse_config_ack(seq: int, p: bytes) -> ConfigAck:
    t = MsgType.CONFIG_ACK
    n = _joint_count(t, seq, p, 2, _CONFIG_ACK.size)
    _need(t, seq, p, _CONFIG_ACK.size)
    config_seq, _, reserved, watchdog_ms, stream_hz = _CONFIG_ACK.unpack_from(p)
    lo, hi = WATCHDOG_MS_RANGE
    for ok, offset in ((reserved == 0, 3), (lo <= watchdog_ms <= hi, 4),
                       (stream_hz <= STREAM_HZ_MAX, 6)):
        if not ok:
            raise _bad(t, seq, offset)
    return ConfigAck(seq, config_seq, n, watchdog_ms, stream_hz)


def _parse_error(seq: int, p: bytes) -> Error:
    t = MsgType.ERROR
    _need(t, seq, p, _ERROR.size)
    code, offending_type, offending_seq, detail = _ERROR.unpack_from(p)
    if code not in ErrorCode._value2member_map_:
        raise _bad(t, seq, 0)
    return Error(seq, ErrorCode(code), offending_type, offending_seq, detail)


def _parse_state(seq: int, p: bytes) -> State:
    t = MsgType.STATE
    n = _joint_count(t, seq, p, 15, _STATE.size)
    _need(t, seq, p, _STATE.size + 12 * n)
    head = _STATE.unpack_from(p)
    time_us, last_cmd, ack, status, mode, _, faults, crc_errors, dropped = head[:9]
    if status & ~STATUS_ALL:
        raise _bad(t, seq, 12)
    if mode not in MODE_FROM_WIRE:
        raise _bad(t, seq, 14)
    imu = _unpack_floats(t, seq, p, 24, 10)
    joints = _unpack_floats(t, seq, p, _STATE.size, 3 * n)
    return State(seq, time_us, last_cmd, ack, Status(status), MODE_FROM_WIRE[mode], faults,
                 crc_errors, dropped, imu[:4], imu[4:7], imu[7:], joints[:n], joints[n : 2 * n],
                 joints[2 * n :])


_PARSERS = {
    MsgType.HEARTBEAT: _parse_heartbeat,
    MsgType.COMMAND: _parse_command,
    MsgType.CONFIG: _parse_config,
    MsgType.CONFIG_ACK: _parse_config_ack,
    MsgType.ERROR: _parse_error,
    MsgType.STATE: _parse_state,
}


HOST_TYPES = frozenset({MsgType.HEARTBEAT, MsgType.COMMAND, MsgType.CONFIG})  # a board accepts
BOARD_TYPES = frozenset({MsgType.STATE, MsgType.CONFIG_ACK, MsgType.ERROR})  # a host accepts


def parse_body(data: bytes, accept: frozenset[int] = frozenset(_PARSERS)) -> Message:
    """version..payload (CRC already checked) -> a message of a type in `accept`, or
    ProtocolError."""
    version, mtype, seq = _HEADER.unpack_from(data)
    if version != VERSION:
        raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION, mtype, seq, VERSION)
    if mtype not in accept:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, mtype, seq, mtype)
    return _PARSERS[mtype](seq, data[_HEADER.size :])


def decode_frame(segment: bytes, accept: frozenset[int] = frozenset(_PARSERS)) -> Message:
    """The bytes between two delimiters -> a message; FrameError, CrcError or ProtocolError."""
    return parse_body(unframe(segment), accept)


class FrameDecoder:
    """Stream -> messages. Resyncs at every 0x00; empty frames (stray zeros) are ignored.

    Counters: `frames_ok`, `crc_errors` (CRC mismatch), `bad_frames` (everything else
    dropped: COBS, size, and ProtocolError). Never buffers more than MAX_COBS_BYTES.
    `accept`: the message types this end takes (HOST_TYPES on a board, BOARD_TYPES on a host);
    any other type is an UNKNOWN_TYPE ProtocolError.
    """

    def __init__(self, accept: frozenset[int] = frozenset(_PARSERS)):
        self.accept = frozenset(accept)
        self._splitter = FrameSplitter()
        self.frames_ok = 0
        self.crc_errors = 0
        self.bad_frames = 0

    def feed(self, data: bytes) -> list[Message]:
        return [m for m in self.feed_detailed(data) if not isinstance(m, ProtocolError)]

    def feed_detailed(self, data: bytes) -> list[Message | ProtocolError]:
        """Like feed, but frames with a good CRC that break the protocol come back as errors."""
        out: list[Message | ProtocolError] = []
        for segment in self._splitter.feed(data):
            if segment is None:  # overflowed MAX_COBS_BYTES
                self.bad_frames += 1
                continue
            if not segment:
                continue
            try:
                msg = decode_frame(segment, self.accept)
            except CrcError:
                self.crc_errors += 1
            except FrameError:
                self.bad_frames += 1
            except ProtocolError as err:
                self.bad_frames += 1
                out.append(err)
            else:
                self.frames_ok += 1
                out.append(msg)
        return out

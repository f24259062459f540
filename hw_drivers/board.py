"""Board protocol, both ends: `BoardLink` (host, over a transport) and `VirtualBoard` (device).

The wire format and every rule are in docs/board_protocol.md; the codec is `board_codec` (its
framing, COBS and CRC, `board_framing`).
`BoardLink` writes HEARTBEAT / COMMAND / CONFIG frames and reads STATE, CONFIG_ACK and ERROR
frames with explicit timeouts (the transport does the blocking: `read(n, timeout_s)`,
`read_available()`, `write(data)`). `VirtualBoard` is a pure state machine on an injected
clock: `feed(data, now_s)` returns the frames it answers with, `poll(now_s)` those it sends on
its own (streamed STATE), `applied_command(now_s)` what its servos do now (the board
watchdog's damping and torque-off included), and `set_measurement(state)` is how the server
that owns the physics body tells it what the sensors read. Time inside the board is integer
microseconds, so the watchdog deadlines are exact.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np

from gaitforge.hw_drivers.board_codec import (
    BOARD_TYPES,
    HOST_TYPES,
    MSG_TYPE,
    Command,
    Config,
    ConfigAck,
    Error,
    ErrorCode,
    FrameDecoder,
    Heartbeat,
    Message,
    ProtocolError,
    State,
    Status,
    encode_body,
)
from gaitforge.hw_drivers.board_framing import frame
from gaitforge.robots.types import CommandMode, JointCommand, RobotState

__all__ = ["BoardError", "BoardLink", "BoardTimeout", "VirtualBoard", "to_robot_state"]


class BoardError(RuntimeError):
    """The board answered with an ERROR frame (kept in `.error`)."""

    def __init__(self, error: Error):
        super().__init__(f"board refused type 0x{error.offending_type:02x} seq "
                         f"{error.offending_seq}: {error.code.name} (detail {error.detail})")
        self.error = error


class BoardTimeout(TimeoutError):
    """No matching frame arrived before the deadline."""


def _optional(values, n: int) -> tuple[float, ...] | None:
    return None if values is None else tuple(np.broadcast_to(np.asarray(values, float), (n,)))


class BoardLink:
    """Host side. Every frame it sends takes the next sequence number (u16, wrapping)."""

    def __init__(self, transport, n_joints: int, *, clock: Callable[[], float] = time.monotonic):
        if not 1 <= n_joints <= 32:
            raise ValueError(f"n_joints: {n_joints} outside [1, 32]")
        self.transport = transport
        self.n_joints = n_joints
        self.clock = clock
        self.decoder = FrameDecoder(BOARD_TYPES)
        self.seq = 0  # the last sequence number sent
        self.last_state: State | None = None
        self.last_config_ack: ConfigAck | None = None
        self.errors: deque[Error] = deque(maxlen=64)  # most recent ERROR frames, oldest first
        self.frames_sent = self.states_received = self.errors_received = self.timeouts = 0

    # Sending ---------------------------------------------------------------------------------
    def _send(self, make: Callable[[int], Message]) -> int:
        seq = (self.seq + 1) & 0xFFFF
        data = frame(encode_body(make(seq)))  # build first: a bad message raises, sends nothing
        self.transport.write(data)
        self.seq = seq
        self.frames_sent += 1
        return seq

    def heartbeat(self) -> int:
        """Send a HEARTBEAT (the board answers with STATE); returns its sequence number."""
        return self._send(Heartbeat)

    def send_command(self, command: JointCommand) -> int:
        """Send a COMMAND; ValueError (nothing sent) on a wrong length or a non-finite value."""
        pos = np.asarray(command.position_rad, dtype=float)
        if pos.shape != (self.n_joints,):
            raise ValueError(f"position_rad: shape {pos.shape}, expected ({self.n_joints},)")
        n = self.n_joints
        return self._send(lambda seq: Command(
            seq, command.mode, tuple(pos), _optional(command.kp_nm_per_rad, n),
            _optional(command.kd_nm_s_per_rad, n), _optional(command.torque_ff_nm, n)))

    def configure(self, watchdog_ms: int, damping_kd_nm_s_per_rad: float | Sequence[float], *,
                  stream_hz: int = 0, timeout_s: float = 0.1) -> ConfigAck:
        """Send CONFIG and wait for its CONFIG_ACK; BoardError on ERROR, BoardTimeout on none.

        This arms (or re-arms, after a trip) the board watchdog; the board then holds damping
        until the first COMMAND.
        """
        kd = _optional(damping_kd_nm_s_per_rad, self.n_joints)
        seq = self._send(lambda s: Config(s, self.n_joints, watchdog_ms, stream_hz, kd))
        reply = self._await(lambda m: (isinstance(m, ConfigAck) and m.config_seq == seq)
                            or (isinstance(m, Error) and m.offending_seq == seq), timeout_s,
                            f"CONFIG_ACK for seq {seq}")
        if isinstance(reply, Error):
            raise BoardError(reply)
        return reply

    # Receiving -------------------------------------------------------------------------------
    def read_state(self, timeout_s: float, *, ack_seq: int | None = None) -> State:
        """The newest STATE received (answering `ack_seq` if given), waiting up to timeout_s.

        Frames already buffered are all decoded first, so a late reader gets the newest sample.
        ERROR frames met on the way are appended to `errors`; BoardTimeout if no STATE came.
        """
        return self._await(lambda m: isinstance(m, State)
                           and (ack_seq is None or m.ack_seq == ack_seq), timeout_s,
                           "STATE" if ack_seq is None else f"STATE answering seq {ack_seq}")

    def _await(self, match: Callable[[Message], bool], timeout_s: float, what: str) -> Message:
        deadline = self.clock() + timeout_s
        found = self._ingest(self.transport.read_available(), match)
        while found is None:
            remaining = deadline - self.clock()
            if remaining <= 0:
                break
            first = self.transport.read(1, timeout_s=remaining)
            if not first:  # the transport waited the whole remaining time
                break
            found = self._ingest(first + self.transport.read_available(), match)
        if found is None:
            self.timeouts += 1
            raise BoardTimeout(f"no {what} within {timeout_s:g} s")
        return found

    def _ingest(self, data: bytes, match: Callable[[Message], bool]) -> Message | None:
        found = None
        for msg in self.decoder.feed(data):
            if isinstance(msg, State):
                self.states_received += 1
                self.last_state = msg
            elif isinstance(msg, Error):
                self.errors_received += 1
                self.errors.append(msg)
            elif isinstance(msg, ConfigAck):
                self.last_config_ack = msg
            if match(msg):
                found = msg
        return found

    @property
    def crc_errors(self) -> int:
        return self.decoder.crc_errors

    @property
    def bad_frames(self) -> int:
        return self.decoder.bad_frames


def to_robot_state(state: State) -> RobotState:
    """A STATE as the RobotState a body returns (time from the board clock, in seconds)."""
    torque = (np.array(state.joint_torque_nm) if state.status & Status.TORQUE_MEASURED else None)
    return RobotState(time_s=state.time_us * 1e-6, joint_pos_rad=np.array(state.joint_pos_rad),
                      joint_vel_rad_s=np.array(state.joint_vel_rad_s),
                      imu_quat_wxyz=np.array(state.imu_quat_wxyz),
                      gyro_rad_s=np.array(state.gyro_rad_s), accel_m_s2=np.array(state.accel_m_s2),
                      joint_torque_nm=torque)


class VirtualBoard:
    """Device side on an injected clock: the firmware's behaviour, as specified, in Python.

    Watchdog (armed by CONFIG): `silence` = now - last valid COMMAND or HEARTBEAT (or the
    CONFIG). silence >= watchdog_ms -> tripped: damping; silence >= 2 x watchdog_ms -> torque
    off. The stage only rises until the next valid CONFIG. Fault hooks: `bad_crc_next(n)`,
    `servo_fault_mask`, `imu_fault`, `power_cycle()`.
    """

    def __init__(self, n_joints: int):
        if not 1 <= n_joints <= 32:
            raise ValueError(f"n_joints: {n_joints} outside [1, 32]")
        self.n_joints = n_joints
        zeros = (0.0,) * n_joints
        self._pos, self._vel, self._torque = zeros, zeros, None
        self._imu = ((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))
        self.servo_fault_mask = 0  # bit i: joint i reports a hardware fault
        self.imu_fault = False
        self._bad_crc_left = 0
        self._now_us = 0
        self.power_cycle()

    def power_cycle(self, now_s: float = 0.0) -> None:
        """Power-up at now_s: unconfigured, torque off, board time, counters and seq from 0."""
        self._decoder = FrameDecoder(HOST_TYPES)
        self._now_us = self._boot_us = max(self._now_us, round(now_s * 1e6))
        self._seq = 0
        self._config: Config | None = None
        self._stage = 0  # 0: not tripped, 1: damping, 2: off (latched until CONFIG)
        self._fed_us = 0  # when the watchdog was last fed
        self.last_command: Command | None = None  # applied since the last CONFIG
        self._ack_seq = 0
        self._next_stream_us = 0
        self._rejected = 0  # valid-looking frames refused for their joint count
        self.commands_applied = self.commands_refused = self.watchdog_trips = 0

    # Inputs from the server --------------------------------------------------------------------
    def set_measurement(self, state: RobotState) -> None:
        """What the sensors read now (joint order as the board's; torque None if unmeasured)."""
        pos = tuple(float(v) for v in state.joint_pos_rad)
        if len(pos) != self.n_joints:
            raise ValueError(f"joint_pos_rad: {len(pos)} values, expected {self.n_joints}")
        self._pos, self._vel = pos, tuple(float(v) for v in state.joint_vel_rad_s)
        self._torque = (None if state.joint_torque_nm is None
                        else tuple(float(v) for v in state.joint_torque_nm))
        self._imu = tuple(tuple(float(v) for v in a)
                          for a in (state.imu_quat_wxyz, state.gyro_rad_s, state.accel_m_s2))

    def bad_crc_next(self, n: int = 1) -> None:
        """The next n frames the board sends carry a wrong CRC."""
        self._bad_crc_left += n

    @property
    def configured(self) -> bool:
        return self._config is not None

    @property
    def watchdog_stage(self) -> int:
        """0 not tripped, 1 damping, 2 torque off (as of the last call's now_s)."""
        return self._stage

    @property
    def fed_at_s(self) -> float:
        """When the watchdog was last fed (a valid COMMAND, HEARTBEAT or CONFIG), board clock."""
        return self._fed_us / 1e6

    @property
    def rx_crc_errors(self) -> int:
        return self._decoder.crc_errors

    @property
    def rx_dropped(self) -> int:
        return self._decoder.bad_frames + self._rejected

    # The protocol ----------------------------------------------------------------------------
    def feed(self, data: bytes, now_s: float) -> list[bytes]:
        """Bytes from the host, received at now_s -> the frames the board answers with."""
        self._advance(now_s)
        out: list[bytes] = []
        for item in self._decoder.feed_detailed(data):
            if isinstance(item, ProtocolError):
                out.append(self._error(item.code, item.msg_type, item.seq, item.detail))
            else:
                out += self._handle(item)
        return out

    def poll(self, now_s: float) -> list[bytes]:
        """Frames the board sends on its own by now_s: a STATE per stream period."""
        self._advance(now_s)
        cfg = self._config
        if cfg is None or cfg.stream_hz == 0 or self._now_us < self._next_stream_us:
            return []
        period = round(1e6 / cfg.stream_hz)
        self._next_stream_us += period
        if self._next_stream_us <= self._now_us:  # fell behind: no burst, restart the grid
            self._next_stream_us = self._now_us + period
        return [self._state()]

    def applied_command(self, now_s: float) -> JointCommand:
        """What the servos do at now_s, the watchdog's damping and torque-off included."""
        self._advance(now_s)
        return self._output()

    # Internals -------------------------------------------------------------------------------
    def _output(self) -> JointCommand:
        cfg, cmd = self._config, self.last_command
        pos = np.array(self._pos if cmd is None else cmd.position_rad)
        if cfg is None or self._stage == 2 or (cmd is not None and cmd.mode is CommandMode.OFF):
            return JointCommand(position_rad=pos, mode=CommandMode.OFF)
        damping_kd = np.array(cfg.damping_kd_nm_s_per_rad)
        if self._stage == 1 or cmd is None:
            return JointCommand(position_rad=pos, mode=CommandMode.DAMPING,
                                kd_nm_s_per_rad=damping_kd)
        kd = None if cmd.kd_nm_s_per_rad is None else np.array(cmd.kd_nm_s_per_rad)
        if cmd.mode is CommandMode.DAMPING:
            return JointCommand(position_rad=pos, mode=CommandMode.DAMPING,
                                kd_nm_s_per_rad=damping_kd if kd is None else kd)
        return JointCommand(
            position_rad=pos, mode=CommandMode.POSITION,
            kp_nm_per_rad=None if cmd.kp_nm_per_rad is None else np.array(cmd.kp_nm_per_rad),
            kd_nm_s_per_rad=kd,
            torque_ff_nm=None if cmd.torque_ff_nm is None else np.array(cmd.torque_ff_nm))

    def _advance(self, now_s: float) -> None:
        """Move the board clock to now_s (rounded to the µs) and raise the watchdog stage."""
        now = max(self._now_us, round(now_s * 1e6))  # the board clock never runs backwards
        self._now_us = now
        if self._config is None or self._stage == 2:
            return
        silence, w = now - self._fed_us, self._config.watchdog_ms * 1000
        stage = 2 if silence >= 2 * w else 1 if silence >= w else 0
        if stage > self._stage:
            self.watchdog_trips += self._stage == 0
            self._stage = stage

    def _handle(self, msg: Message) -> list[bytes]:
        mtype = MSG_TYPE[type(msg)]
        if isinstance(msg, Heartbeat):
            self._valid(msg.seq)
            return [self._state()]
        assert isinstance(msg, Command | Config)  # the decoder accepts HOST_TYPES only
        n = len(msg.position_rad) if isinstance(msg, Command) else msg.n_joints
        if n != self.n_joints:
            self._rejected += 1
            return [self._error(ErrorCode.JOINT_COUNT, mtype, msg.seq, self.n_joints)]
        if isinstance(msg, Config):
            self._config, self._stage, self.last_command = msg, 0, None
            self._fed_us = self._now_us
            self._ack_seq = msg.seq
            self._next_stream_us = self._now_us + (round(1e6 / msg.stream_hz)
                                                   if msg.stream_hz else 0)
            return [self._send(ConfigAck(self._seq, msg.seq, msg.n_joints, msg.watchdog_ms,
                                         msg.stream_hz))]
        self._valid(msg.seq)
        if self._config is None or self._stage:
            self.commands_refused += 1
            code = ErrorCode.NOT_CONFIGURED if self._config is None else ErrorCode.WATCHDOG_LATCHED
            return [self._error(code, mtype, msg.seq, 0), self._state()]
        self.last_command = msg
        self.commands_applied += 1
        return [self._state()]

    def _valid(self, seq: int) -> None:
        """A valid COMMAND or HEARTBEAT: remember its seq and feed the watchdog."""
        self._ack_seq = seq
        self._fed_us = self._now_us

    def _state(self) -> bytes:
        cmd = self.last_command
        flags = Status(0)
        for on, flag in ((self._config is not None, Status.CONFIGURED),
                         (self._stage >= 1, Status.WATCHDOG_TRIPPED),
                         (self._stage == 2, Status.WATCHDOG_OFF),
                         (self.imu_fault, Status.IMU_FAULT),
                         (self.servo_fault_mask != 0, Status.SERVO_FAULT),
                         (self._torque is not None, Status.TORQUE_MEASURED),
                         (cmd is not None, Status.COMMAND_APPLIED)):
            if on:
                flags |= flag
        quat, gyro, accel = self._imu
        mode = self._output().mode
        return self._send(State(
            self._seq, self._now_us - self._boot_us, 0 if cmd is None else cmd.seq,
            self._ack_seq, flags, mode, self.servo_fault_mask, min(self.rx_crc_errors, 0xFFFF),
            min(self.rx_dropped, 0xFFFF), quat, gyro, accel, self._pos, self._vel,
            (0.0,) * self.n_joints if self._torque is None else self._torque))

    def _error(self, code: ErrorCode, mtype: int, seq: int, detail: int) -> bytes:
        return self._send(Error(self._seq, code, mtype, seq, detail))

    def _send(self, msg: Message) -> bytes:
        body = encode_body(msg)
        self._seq = (self._seq + 1) & 0xFFFF
        if self._bad_crc_left > 0:
            self._bad_crc_left -= 1
            body = body[:-2] + bytes([body[-2] ^ 0xFF, body[-1] ^ 0xFF])
        return frame(body)

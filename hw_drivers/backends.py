"""Joint backends: the devices behind a `HardwareBody`, one class per way a robot is wired.

A backend turns joint-space commands into bytes on its serial links and their replies into a
`RobotState`. `HardwareBody` keeps the lifecycle and the fault policy and never asks which
backend it has; `make_backend(config, ...)` picks one from the hardware YAML's protocol.

    JointBackend          what the body needs (a Protocol):
        links             the serial links it talks on (the body watches them and reconnects)
        configure()       devices ready, torque off, watchdogs armed
        read(state_timeout_s=None)
                          one RobotState in joint convention, SI units; raises on a failed read
        send(command)     one JointCommand in joint convention; raises on a failed write
        fault_cause(err)  a device's own account of a failed read, read back from it, or None

    DynamixelBackend      servos on a Dynamixel Protocol 2.0 bus (`DynamixelJoints`), plus the
                          IMU from a board on a second port: a pure Dynamixel bus has none, so
                          the hardware YAML names a port where a board (same protocol, same
                          firmware) serves it; the host only sends that board HEARTBEATs.
        configure()       ping / configure every servo (return delay 0, position mode, bus
                          watchdog armed), torque off; CONFIG to the IMU board (its watchdog)
        read()            HEARTBEAT to the IMU board, one sync read of present current,
                          velocity and position for all joints, then the board's STATE
        send(command)     POSITION = one sync write of goal positions; DAMPING = position P
                          gain 0 (the servo's D term then only resists motion); OFF = torque off

    BoardBackend          our board (docs/board_protocol.md): joints and IMU over one link
        configure()       CONFIG (board watchdog armed, the spec's kd for its damping)
        read()            HEARTBEAT -> STATE
        send(command)     one COMMAND frame (the board applies modes and gains itself)

Units: every conversion between a servo's numbers and a joint's (direction, zero offset,
ticks, velocity and current counts; the board's servo radians) is `JointCalibration`'s, the
same the virtual devices use.

Retry policy, the only one on the host side (REPLY_RETRIES): a Dynamixel request whose reply
is lost or damaged is sent again, re-asking only the servos that did not answer, up to
REPLY_RETRIES (3) times within the same request, each attempt waiting REPLY_TIMEOUT_S (5 ms)
for a reply. Nothing else is retried: a board STATE (the board's joints, or the IMU beside a
Dynamixel bus) that is lost or damaged is one failed read, at start-up as in a tick; the board
protocol has sequence numbers and no retries, and the safety layer's watchdog decides what
failed reads mean. A STATE is waited for STATE_TIMEOUT_S in a tick; the body's start-up read
passes a longer `state_timeout_s`, so that a STATE that is only late still starts the robot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from gaitforge.robots.types import CommandMode, JointCommand, RobotState

from .board import BoardLink, to_robot_state
from .dynamixel import ControlTable as CT
from .dynamixel import HardwareError, decode_block, encode_value
from .dynamixel_bus import DxlError, DxlStatusError, DynamixelBus
from .hwconfig import HwConfig, JointCalibration
from .transport import TransportError

PRESENT_START, PRESENT_BYTES = CT.PRESENT_CURRENT, 10  # current(2) velocity(4) position(4)
POSITION_MODE = 3
DEFAULT_POSITION_P_GAIN = 640  # X series factory value; HwConfig.position_p_gain sets it
# A lost or mangled reply costs the bus one reply timeout: keep it short (a status packet
# takes 0.2 ms at 1 Mbps) and retry more, so a tick survives a few damaged replies.
REPLY_TIMEOUT_S, REPLY_RETRIES = 0.005, 3
# A board STATE is 217 bytes (2.2 ms at 1 Mbps) and may queue behind the one answering the last
# COMMAND: give it longer.
STATE_TIMEOUT_S = 0.02


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


class Link(Protocol):
    """A serial link as the body sees it (`SerialTransport`); in-memory ones may omit both."""

    connected: bool

    def reconnect(self, deadline_s: float | None = None) -> None: ...


@runtime_checkable
class JointBackend(Protocol):
    """The devices that move the joints and measure the trunk, as `HardwareBody` uses them."""

    links: tuple[Link, ...]

    def configure(self) -> None:
        """Make every device ready with torque off and its watchdog armed (also after a
        reconnect: the devices may have lost power)."""

    def read(self, state_timeout_s: float | None = None) -> RobotState:
        """One state in the spec's joint order and convention; raises the link's errors
        (DxlError, TransportError, TimeoutError, ValueError) when no valid state came.
        `state_timeout_s`: how long to wait for a board's STATE (default: the backend's
        tick value); the Dynamixel bus keeps its own reply timeout and retries."""

    def send(self, command: JointCommand) -> None:
        """Apply one command in joint convention; raises the link's errors when it fails."""

    def fault_cause(self, err: Exception) -> str | None:
        """If `err` is a device reporting a fault of its own, its cause read back from that
        device (e.g. a servo's Hardware Error Status after an Alert); else None."""


class DynamixelJoints:
    """The joints' servos on one bus, in spec order: configure, read, goals, torque, damping."""

    def __init__(self, bus: DynamixelBus, cal: JointCalibration, *, watchdog_ms: int,
                 p_gain: int = DEFAULT_POSITION_P_GAIN):
        self.bus, self.cal, self.watchdog_ms = bus, cal, watchdog_ms
        self.ids = cal.ids  # spec order
        self.p_gain = p_gain  # written at configure, never read back: a servo left damped
        # (P gain 0) by the last episode would otherwise hand its 0 on as the normal gain

    def configure(self) -> None:
        for i in self.ids:
            self.bus.ping(i)
            self.bus.write_item(i, CT.TORQUE_ENABLE, 0)
            self.bus.write_item(i, CT.BUS_WATCHDOG, 0)  # clears a previous trip
            self.bus.write_item(i, CT.RETURN_DELAY_TIME, 0)
            self.bus.write_item(i, CT.OPERATING_MODE, POSITION_MODE)
            self.bus.write_item(i, CT.POSITION_P_GAIN, self.p_gain)
            self.bus.write_item(i, CT.BUS_WATCHDOG, max(1, round(self.watchdog_ms / 20)))

    def read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(q rad, dq rad/s, tau N*m) in joint convention, from one sync read."""
        raw = self.bus.sync_read(PRESENT_START, PRESENT_BYTES, self.ids)
        items = [decode_block(PRESENT_START, raw[i]) for i in self.ids]
        cal = self.cal
        q = cal.ticks_to_rad([it[CT.PRESENT_POSITION] for it in items])
        dq = cal.velocity_units_to_rad_s([it[CT.PRESENT_VELOCITY] for it in items])
        tau = cal.current_units_to_nm([it[CT.PRESENT_CURRENT] for it in items])
        return q, dq, tau

    def _all(self, item: CT, values) -> None:
        self.bus.sync_write(item, item.size, {i: encode_value(item, int(v))
                                              for i, v in zip(self.ids, values, strict=True)})

    def goal(self, q_rad: np.ndarray) -> None:
        self._all(CT.GOAL_POSITION, self.cal.rad_to_ticks(q_rad))

    def torque(self, on: bool) -> None:
        self._all(CT.TORQUE_ENABLE, [int(on)] * len(self.ids))

    def damping(self, on: bool) -> None:
        self._all(CT.POSITION_P_GAIN, [0 if on else self.p_gain] * len(self.ids))


class DynamixelBackend:
    """Servos on a Dynamixel bus, the IMU from a board on its own port (see the module)."""

    def __init__(self, transport, imu_transport, cal: JointCalibration, *, watchdog_ms: int,
                 timeout_s: float, state_timeout_s: float, clock: Callable[[], float],
                 p_gain: int = DEFAULT_POSITION_P_GAIN):
        self.bus = DynamixelBus(transport, timeout_s=timeout_s, retries=REPLY_RETRIES)
        self.joints = DynamixelJoints(self.bus, cal, watchdog_ms=watchdog_ms, p_gain=p_gain)
        self.imu = BoardLink(imu_transport, cal.spec.n_joints)
        self.links = (transport, imu_transport)
        self.watchdog_ms, self.state_timeout_s, self.clock = watchdog_ms, state_timeout_s, clock
        self.torque_on = self.damped = False  # what the servos were last told, to write less

    def configure(self) -> None:
        self.torque_on = self.damped = False  # every servo's torque goes off here
        self.joints.configure()
        self.imu.configure(self.watchdog_ms, 0.0)

    def read(self, state_timeout_s: float | None = None) -> RobotState:
        seq = self.imu.heartbeat()  # the board answers while the bus is read
        q, dq, tau = self.joints.read()
        imu = self.imu.read_state(_or(state_timeout_s, self.state_timeout_s), ack_seq=seq)
        return RobotState(time_s=self.clock(), joint_pos_rad=q, joint_vel_rad_s=dq,
                          imu_quat_wxyz=np.array(imu.imu_quat_wxyz),
                          gyro_rad_s=np.array(imu.gyro_rad_s),
                          accel_m_s2=np.array(imu.accel_m_s2), joint_torque_nm=tau)

    def send(self, command: JointCommand) -> None:
        j = self.joints
        if command.mode is CommandMode.OFF:
            j.torque(False)
            self.torque_on = False
            return
        if command.mode is CommandMode.DAMPING:
            if not self.damped:
                j.damping(True)
                self.damped = True
        else:
            j.goal(np.asarray(command.position_rad, np.float64))
            if self.damped:
                j.damping(False)
                self.damped = False
        if not self.torque_on:
            j.torque(True)
            self.torque_on = True

    def fault_cause(self, err: Exception) -> str | None:
        if not (isinstance(err, DxlStatusError) and err.alert):
            return None
        try:
            bits = self.bus.hardware_error_status(err.dxl_id)
        except (DxlError, TransportError) as e2:
            return f"Hardware Error Status unreadable ({e2})"
        return f"Hardware Error Status 0x{bits:02X} ({hardware_error_names(bits)})"


def hardware_error_names(bits: int) -> str:
    """Hardware Error Status bits in words: `overheating, overload`; `none` for 0."""
    names = [flag.name.lower().replace("_", " ") for flag in HardwareError if bits & flag]
    unknown = bits & ~sum(HardwareError)
    if unknown:
        names.append(f"unknown bits 0x{unknown:02X}")
    return ", ".join(names) or "none"


class BoardBackend:
    """Our board: joints (in servo radians on the wire) and IMU over one link."""

    def __init__(self, transport, cal: JointCalibration, *, watchdog_ms: int,
                 state_timeout_s: float):
        self.link = BoardLink(transport, cal.spec.n_joints)
        self.links = (transport,)
        self.cal, self.watchdog_ms, self.state_timeout_s = cal, watchdog_ms, state_timeout_s

    def configure(self) -> None:
        self.link.configure(self.watchdog_ms, self.cal.spec.kd.tolist())

    def read(self, state_timeout_s: float | None = None) -> RobotState:
        seq = self.link.heartbeat()
        state = self.link.read_state(_or(state_timeout_s, self.state_timeout_s), ack_seq=seq)
        state = to_robot_state(state)
        return self.cal.servo_to_joint_state(state)

    def send(self, command: JointCommand) -> None:
        self.link.send_command(self.cal.joint_to_servo_command(command))

    def fault_cause(self, err: Exception) -> str | None:
        return None  # the board reports servo faults in STATE (status, servo_fault_mask)


def make_backend(config: HwConfig, cal: JointCalibration, transport, imu_transport=None, *,
                 watchdog_ms: int = 100, timeout_s: float = REPLY_TIMEOUT_S,
                 state_timeout_s: float = STATE_TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> JointBackend:
    """The backend for `config.protocol`. A Dynamixel bus needs `imu_transport` (the board on
    imu.port); the board protocol ignores it. `timeout_s` is the bus's reply timeout."""
    if config.protocol == "dynamixel":
        if imu_transport is None:
            raise ValueError("a Dynamixel bus needs imu_transport (the board on imu.port)")
        return DynamixelBackend(transport, imu_transport, cal, watchdog_ms=watchdog_ms,
                                timeout_s=timeout_s, state_timeout_s=state_timeout_s,
                                clock=clock, p_gain=config.position_p_gain)
    return BoardBackend(transport, cal, watchdog_ms=watchdog_ms, state_timeout_s=state_timeout_s)

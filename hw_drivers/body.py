"""HardwareBody: the `Robot` protocol over a serial link, for a Dynamixel bus or our board.

    configure()   ping / configure every servo (return delay 0, position mode, bus watchdog
                  armed) or send the board its CONFIG (board watchdog armed); torque stays off
    activate()    goal := measured pose, then torque on: the robot does not move
    read()        Dynamixel: one sync read of present current, velocity and position for all
                  joints, plus the IMU from the board on its own port. Board: HEARTBEAT -> STATE.
    write(cmd)    Dynamixel: POSITION = one sync write of goal positions; DAMPING = position
                  P gain 0 (the servo's D term then only resists motion); OFF = torque off.
                  Board: one COMMAND frame (the board applies modes and gains itself).
    deactivate()  torque off

Where the IMU comes from: the board protocol carries it in every STATE. A pure Dynamixel bus
has none, so the hardware YAML names a second serial port where a board (same protocol,
same firmware) streams it; the host only sends it HEARTBEATs.

Faults: a read that fails (timeout, CRC, status error, a vanished port) raises
`HardwareReadError`; the deploy loop counts it and the safety layer's watchdog decides
(damping, then torque off). A servo's Alert bit makes the body read that servo's Hardware
Error Status and name it in the error and an event. A write never raises; failed writes are
counted (one event per run of failures). Lost replies are retried by the bus (3 times, 5 ms
reply timeout); start-up reads are retried 3 times. When a port vanishes, each later read
tries one reconnect, spaced by exponential backoff. After a reconnect the body re-configures
with torque OFF, refuses motion, and its reads keep failing until `rearm()` re-seeds the goals
from the measured pose: the safety layer therefore latches too, and motion never resumes by
itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from gaitforge.robots.spec import RobotSpec
from gaitforge.robots.types import CommandMode, JointCommand, LifecycleError, RobotState

from .board import BoardLink, to_robot_state
from .dynamixel import ControlTable as CT
from .dynamixel import HardwareError, decode_block, encode_value
from .dynamixel_bus import DxlError, DxlStatusError, DynamixelBus
from .hwconfig import HwConfig, JointCalibration
from .transport import Backoff, TransportError

PRESENT_START, PRESENT_BYTES = CT.PRESENT_CURRENT, 10  # current(2) velocity(4) position(4)
POSITION_MODE = 3
# A lost or mangled reply costs the bus one reply timeout: keep it short (a status packet
# takes 0.2 ms at 1 Mbps) and retry more, so a tick survives a few damaged replies.
REPLY_TIMEOUT_S, BUS_RETRIES = 0.005, 3
# A board STATE is 217 bytes (2.2 ms at 1 Mbps) and may queue behind the one answering the last
# COMMAND: give it longer.
STATE_TIMEOUT_S = 0.02
STARTUP_READ_TRIES = 3


class HardwareReadError(RuntimeError):
    """No valid state this tick; the message says why (the watchdog decides what follows)."""


class DynamixelJoints:
    def __init__(self, bus: DynamixelBus, cal: JointCalibration, *, watchdog_ms: int):
        self.bus, self.cal, self.watchdog_ms = bus, cal, watchdog_ms
        self.ids = cal.ids  # spec order
        self.p_gain = {}

    def configure(self) -> None:
        for i in self.ids:
            self.bus.ping(i)
            self.bus.write_item(i, CT.TORQUE_ENABLE, 0)
            self.bus.write_item(i, CT.BUS_WATCHDOG, 0)  # clears a previous trip
            self.bus.write_item(i, CT.RETURN_DELAY_TIME, 0)
            self.bus.write_item(i, CT.OPERATING_MODE, POSITION_MODE)
            self.p_gain[i] = self.bus.read_item(i, CT.POSITION_P_GAIN)
            self.bus.write_item(i, CT.BUS_WATCHDOG, max(1, round(self.watchdog_ms / 20)))

    def read(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        self._all(CT.POSITION_P_GAIN, [0 if on else self.p_gain[i] for i in self.ids])


class HardwareBody:
    def __init__(self, spec: RobotSpec, config: HwConfig, transport, *, imu_transport=None,
                 watchdog_ms: int = 100, timeout_s: float = REPLY_TIMEOUT_S,
                 state_timeout_s: float = STATE_TIMEOUT_S, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.spec, self.config, self.clock = spec, config, clock
        self.cal = config.calibration(spec)
        self.transport, self.imu_transport = transport, imu_transport
        self.timeout_s, self.state_timeout_s = timeout_s, state_timeout_s
        self.watchdog_ms = watchdog_ms
        self.backoff = backoff or Backoff()
        n = spec.n_joints
        if config.protocol == "dynamixel":
            if imu_transport is None:
                raise ValueError("a Dynamixel bus needs imu_transport (the board on imu.port)")
            bus = DynamixelBus(transport, timeout_s=timeout_s, retries=BUS_RETRIES)
            self.joints = DynamixelJoints(bus, self.cal, watchdog_ms=watchdog_ms)
            self.link = BoardLink(imu_transport, n)
        else:
            self.joints = None
            self.link = BoardLink(transport, n)
        self.configured = self.active = self.rearm_required = False
        self.torque_on = self.damped = False
        self.counters = {"read_errors": 0, "write_errors": 0, "reconnects": 0,
                         "refused_until_rearm": 0}
        self.events: list[tuple[float, str, str]] = []
        self._next_reconnect, self._attempt = 0.0, 0
        self._last_q: np.ndarray | None = None
        self._link_down = self._write_failing = False

    # Robot protocol ------------------------------------------------------------------------
    def configure(self) -> None:
        if self.joints is not None:
            self.joints.configure()
            self.link.configure(self.watchdog_ms, 0.0)
        else:
            self.link.configure(self.watchdog_ms, self.spec.kd.tolist())
        self.configured = True

    def activate(self) -> None:
        if not self.configured:
            raise LifecycleError("HardwareBody: activate() before configure()")
        self._hold_measured_pose()
        self.active, self.rearm_required = True, False

    def deactivate(self) -> None:
        self.active = False
        try:
            self._send(JointCommand(self._last_q if self._last_q is not None
                                    else self.spec.default_pose_rad, mode=CommandMode.OFF))
        except (DxlError, TransportError, ValueError):
            self.counters["write_errors"] += 1

    def read(self) -> RobotState:
        """One state, or HardwareReadError: the link is down (a reconnect is tried, spaced by
        backoff), a reply failed, a servo raised Alert (its Hardware Error Status is read and
        named), or the link came back and the body waits for `rearm()`."""
        links = [self.transport] + ([self.imu_transport] if self.joints is not None else [])
        if not all(getattr(t, "connected", True) for t in links):
            self.counters["read_errors"] += 1
            if not self._link_down:
                self._link_down = True
                self._event("disconnected", "serial link down; reconnecting with backoff")
            self._try_reconnect()
            raise HardwareReadError("serial link down (reconnecting)")
        self._link_down = False
        if self.rearm_required:
            self.counters["read_errors"] += 1
            raise HardwareReadError("link re-established: torque off until rearm()")
        try:
            state = self._read_once()
        except DxlStatusError as err:
            self.counters["read_errors"] += 1
            raise HardwareReadError(self._describe_alert(err)) from err
        except (DxlError, TransportError, TimeoutError, ValueError) as err:
            self.counters["read_errors"] += 1
            raise HardwareReadError(f"{type(err).__name__}: {err}") from err
        self._last_q = state.joint_pos_rad
        return state

    def write(self, command: JointCommand) -> None:
        if not self.active:
            raise LifecycleError("HardwareBody: write() while not active")
        if self.rearm_required and command.mode is not CommandMode.OFF:
            self.counters["refused_until_rearm"] += 1
            return
        try:
            self._send(command)
            self._write_failing = False
        except (DxlError, TransportError, ValueError) as err:
            self.counters["write_errors"] += 1
            if not self._write_failing:  # one event per run of failures, not one per tick
                self._event("write_error", f"{type(err).__name__}: {err}")
            self._write_failing = True

    def rearm(self) -> None:
        """After a reconnect: goals := measured pose, torque on; motion may resume."""
        self._hold_measured_pose()
        self.rearm_required = False
        self._event("rearm", "goals re-seeded from the measured pose")

    # Internals -----------------------------------------------------------------------------
    def _read_once(self) -> RobotState:
        seq = self.link.heartbeat()
        if self.joints is None:  # the board reports servo radians: back to joint angles
            state = to_robot_state(self.link.read_state(self.state_timeout_s, ack_seq=seq))
            d = self.cal.direction
            state.joint_pos_rad = self.cal.servo_to_joint_rad(state.joint_pos_rad)
            state.joint_vel_rad_s = d * state.joint_vel_rad_s
            if state.joint_torque_nm is not None:
                state.joint_torque_nm = d * state.joint_torque_nm
            return state
        q, dq, tau = self.joints.read()
        imu = self.link.read_state(self.state_timeout_s, ack_seq=seq)
        return RobotState(time_s=self.clock(), joint_pos_rad=q, joint_vel_rad_s=dq,
                          imu_quat_wxyz=np.array(imu.imu_quat_wxyz),
                          gyro_rad_s=np.array(imu.gyro_rad_s),
                          accel_m_s2=np.array(imu.accel_m_s2), joint_torque_nm=tau)

    def _send(self, command: JointCommand) -> None:
        mode = command.mode
        if self.joints is None:
            servo = self.cal.joint_to_servo_rad(command.position_rad)
            self.link.send_command(JointCommand(servo, mode, command.kp_nm_per_rad,
                                                command.kd_nm_s_per_rad, command.torque_ff_nm))
            return
        j = self.joints
        if mode is CommandMode.OFF:
            j.torque(False)
            self.torque_on = False
            return
        if mode is CommandMode.DAMPING:
            if not self.damped:
                j.damping(True)
                self.damped = True
            if not self.torque_on:
                j.torque(True)
                self.torque_on = True
            return
        j.goal(np.asarray(command.position_rad, np.float64))
        if self.damped:
            j.damping(False)
            self.damped = False
        if not self.torque_on:
            j.torque(True)
            self.torque_on = True

    def _describe_alert(self, err: DxlStatusError) -> str:
        text = f"servo {err.dxl_id}: {err}"
        if err.alert and self.joints is not None:
            try:
                bits = self.joints.bus.hardware_error_status(err.dxl_id)
                text += f"; Hardware Error Status 0x{bits:02X} ({HardwareError(bits)!r})"
            except (DxlError, TransportError) as e2:
                text += f"; Hardware Error Status unreadable ({e2})"
            self._event("hardware_error", text)
        return text

    def _hold_measured_pose(self) -> None:
        for attempt in range(STARTUP_READ_TRIES):  # one lost reply must not abort a start
            try:
                state = self._read_once()
                break
            except (DxlError, TransportError, TimeoutError) as err:
                self._event("startup_read_retry", f"attempt {attempt + 1}: {err}")
                if attempt == STARTUP_READ_TRIES - 1:
                    raise
        q = np.clip(state.joint_pos_rad, self.spec.lower_rad, self.spec.upper_rad)
        self._last_q = q
        self._send(JointCommand(q, mode=CommandMode.POSITION))

    def _try_reconnect(self) -> None:
        now = self.clock()
        if now < self._next_reconnect:
            return
        self._attempt += 1
        self._next_reconnect = now + self.backoff.delay_s(self._attempt)
        try:
            for t in (self.transport, self.imu_transport):
                if t is not None and not t.connected:
                    t.reconnect(deadline_s=0.0)
        except TransportError as err:
            self._event("reconnect_failed", f"attempt {self._attempt}: {err}")
            return
        self._attempt = 0
        self.counters["reconnects"] += 1
        self.rearm_required, self.torque_on, self.damped = True, False, False
        self._event("reconnected", "torque off; motion refused until rearm()")
        try:
            self.configure()
        except (DxlError, TransportError, TimeoutError, ValueError) as err:
            self._event("reconfigure_failed", str(err))

    def _event(self, kind: str, detail: str) -> None:
        self.events.append((self.clock(), kind, detail))

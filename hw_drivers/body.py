"""HardwareBody: the `Robot` protocol over serial links, for any joint backend.

What travels on the wire, and how servo numbers become joint angles, is the backend's
(`backends.py`: a Dynamixel bus with an IMU board beside it, or our board). The body keeps the
lifecycle and the fault policy:

    configure()   the backend configures its devices: torque off, watchdogs armed
    activate()    goal := measured pose, then torque on: the robot does not move
    read()        one state from the backend (see the faults below)
    write(cmd)    one command to the backend, only while active
    deactivate()  torque off
    rearm()       after a reconnect: goal := measured pose, torque on; motion may resume

Faults: a read that fails (timeout, CRC, status error, a vanished port) raises
`HardwareReadError`; the deploy loop counts it and the safety layer's watchdog decides
(damping, then torque off). When a device reports a fault of its own (a servo's Alert bit),
the backend reads its cause (the servo's Hardware Error Status) and the body names it in the
error and an event. A write never raises; failed writes are counted (one event per run of
failures). When a link vanishes, each later read tries one reconnect, spaced by exponential
backoff. After a reconnect the body re-configures with torque OFF, refuses motion, and its
reads keep failing until `rearm()` re-seeds the goals from the measured pose: the safety layer
therefore latches too, and motion never resumes by itself.

Retries: the body retries nothing. The one retry policy is the backend's: a lost Dynamixel
reply is re-asked within its request, up to `backends.REPLY_RETRIES` times (see backends.py);
a board's STATE is never asked again. Start-up (activate(), rearm()) reads once, and waits
STARTUP_STATE_TIMEOUT_S (or a tick's wait, if longer) for the STATE: a start is not
time-critical, and a STATE that is only late (a loaded host, a board busy after CONFIG) then
still starts the robot. A start-up read that fails raises, and nothing moves.

A start that fails (configure(), activate(), rearm()) raises the link's own error, with a note
(PEP 678, `err.__notes__`) that says in one sentence which device failed and what to check:
a servo that does not answer (its id, the port; its power, its id, the baud rate), a servo in
Alert (its Hardware Error Status, read back and named bit by bit), a board that does not
answer or refuses CONFIG, a port that vanished. The CLI prints that sentence.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import numpy as np

from gaitforge.robots.spec import RobotSpec
from gaitforge.robots.types import CommandMode, JointCommand, LifecycleError, RobotState

from .backends import REPLY_TIMEOUT_S, STATE_TIMEOUT_S, JointBackend, make_backend
from .board import BoardError, BoardTimeout
from .dynamixel import instruction_name
from .dynamixel_bus import DxlError, DxlStatusError, DxlTimeout
from .hwconfig import HwConfig
from .transport import Backoff, TransportError

# What a failed exchange raises: a bus error (no reply, a status error), a vanished or broken
# port, a board reply that never came, or a value the codec refused.
LINK_ERRORS = (DxlError, TransportError, TimeoutError, ValueError)
WRITE_ERRORS = (DxlError, TransportError, ValueError)  # a write waits for no reply
START_ERRORS = (*LINK_ERRORS, BoardError)  # a start may also meet a board refusing CONFIG
# Start-up reads wait this long for a board's STATE (a tick waits STATE_TIMEOUT_S): as long as
# BoardLink.configure() waits for its CONFIG_ACK.
STARTUP_STATE_TIMEOUT_S = 0.1


class HardwareReadError(RuntimeError):
    """No valid state this tick; the message says why (the watchdog decides what follows)."""


class HardwareBody:
    def __init__(self, spec: RobotSpec, config: HwConfig, transport, *, imu_transport=None,
                 watchdog_ms: int = 100, timeout_s: float = REPLY_TIMEOUT_S,
                 state_timeout_s: float = STATE_TIMEOUT_S, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.spec, self.config, self.clock = spec, config, clock
        self.cal = config.calibration(spec)
        self.backend: JointBackend = make_backend(
            config, self.cal, transport, imu_transport, watchdog_ms=watchdog_ms,
            timeout_s=timeout_s, state_timeout_s=state_timeout_s, clock=clock)
        self.backoff = backoff or Backoff()
        self._startup_timeout_s = max(STARTUP_STATE_TIMEOUT_S, state_timeout_s)
        self.configured = self.active = self.rearm_required = False
        self.counters = {"read_errors": 0, "write_errors": 0, "reconnects": 0,
                         "refused_until_rearm": 0}
        self.events: list[tuple[float, str, str]] = []
        self._next_reconnect, self._attempt = 0.0, 0
        self._last_q: np.ndarray | None = None
        self._link_down = self._write_failing = False

    # Robot protocol ------------------------------------------------------------------------
    def configure(self) -> None:
        with self._starting():
            self.backend.configure()
        self.configured = True

    def activate(self) -> None:
        if not self.configured:
            raise LifecycleError("HardwareBody: activate() before configure()")
        with self._starting():
            self._hold_measured_pose()
        self.active, self.rearm_required = True, False

    def deactivate(self) -> None:
        self.active = False
        q = self._last_q if self._last_q is not None else self.spec.default_pose_rad
        try:
            self.backend.send(JointCommand(q, mode=CommandMode.OFF))
        except WRITE_ERRORS:
            self.counters["write_errors"] += 1

    def read(self) -> RobotState:
        """One state, or HardwareReadError: the link is down (a reconnect is tried, spaced by
        backoff), a reply failed, a device reported a fault (its cause is read and named), or
        the link came back and the body waits for `rearm()`."""
        if not all(getattr(t, "connected", True) for t in self.backend.links):
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
            state = self.backend.read()
        except LINK_ERRORS as err:
            self.counters["read_errors"] += 1
            raise HardwareReadError(self._describe(err)) from err
        self._last_q = state.joint_pos_rad
        return state

    def write(self, command: JointCommand) -> None:
        if not self.active:
            raise LifecycleError("HardwareBody: write() while not active")
        if self.rearm_required and command.mode is not CommandMode.OFF:
            self.counters["refused_until_rearm"] += 1
            return
        try:
            self.backend.send(command)
            self._write_failing = False
        except WRITE_ERRORS as err:
            self.counters["write_errors"] += 1
            if not self._write_failing:  # one event per run of failures, not one per tick
                self._event("write_error", f"{type(err).__name__}: {err}")
            self._write_failing = True

    def rearm(self) -> None:
        """After a reconnect: goals := measured pose, torque on; motion may resume."""
        with self._starting():
            self._hold_measured_pose()
        self.rearm_required = False
        self._event("rearm", "goals re-seeded from the measured pose")

    # Internals -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _starting(self) -> Iterator[None]:
        """A start-up step: a failure keeps its type and gets a note saying what to check."""
        try:
            yield
        except START_ERRORS as err:
            why = start_failure(err, self.backend, self.config)
            err.add_note(f"the robot did not start: {why}")
            raise

    def _describe(self, err: Exception) -> str:
        """The read error's text; a device's own fault report also gets its cause and an
        event."""
        if isinstance(err, DxlStatusError):
            text = f"servo {err.dxl_id}: {err}"
        else:
            text = f"{type(err).__name__}: {err}"
        cause = self.backend.fault_cause(err)
        if cause is not None:
            text += f"; {cause}"
            self._event("hardware_error", text)
        return text

    def _hold_measured_pose(self) -> None:
        """Goal := the measured pose (clipped to the limits), then torque on. One read (a
        patient one): a failure propagates and the robot stays as it is."""
        state = self.backend.read(self._startup_timeout_s)
        q = np.clip(state.joint_pos_rad, self.spec.lower_rad, self.spec.upper_rad)
        self._last_q = q
        self.backend.send(JointCommand(q, mode=CommandMode.POSITION))

    def _try_reconnect(self) -> None:
        now = self.clock()
        if now < self._next_reconnect:
            return
        self._attempt += 1
        self._next_reconnect = now + self.backoff.delay_s(self._attempt)
        try:
            for t in self.backend.links:
                if not getattr(t, "connected", True):
                    t.reconnect(deadline_s=0.0)
        except TransportError as err:
            self._event("reconnect_failed", f"attempt {self._attempt}: {err}")
            return
        self._attempt = 0
        self.counters["reconnects"] += 1
        self.rearm_required = True
        self._event("reconnected", "torque off; motion refused until rearm()")
        try:
            self.backend.configure()
        except START_ERRORS as err:
            self._event("reconfigure_failed", str(err))

    def _event(self, kind: str, detail: str) -> None:
        self.events.append((self.clock(), kind, detail))


def _link(backend: JointBackend, index: int, port: str | None, baud: int) -> tuple[str, int]:
    """(port, baud) of the backend's link `index` (0: the bus or the board; 1: the IMU board
    beside a Dynamixel bus), as opened; the hardware YAML's values for an in-memory link."""
    link = backend.links[index] if index < len(backend.links) else None
    return getattr(link, "port", port), getattr(link, "baud", baud)


def start_failure(err: Exception, backend: JointBackend, config: HwConfig) -> str:
    """One sentence for a failed start: the device at fault (servo id, board, port) and what
    to check. A servo in Alert is asked for its Hardware Error Status, which is named."""
    port, baud = _link(backend, 0, config.port, config.baud)
    if isinstance(err, DxlTimeout):
        ids = ", ".join(str(i) for i in err.dxl_ids)
        servo, its = ("servos", "their ids are") if len(err.dxl_ids) > 1 else ("servo", "its id is")
        return (f"no reply from {servo} {ids} on {port} ({instruction_name(err.instruction)}, "
                f"{err.attempts} attempts): check the power and the cable, that {its} {ids}, and "
                f"that the bus runs at {baud} baud (the hardware YAML's ids and baud)")
    if isinstance(err, DxlStatusError) and err.alert:
        cause = backend.fault_cause(err) or "Hardware Error Status unread"
        return (f"servo {err.dxl_id} on {port} is in Alert: {cause}; remove the cause (supply "
                "voltage, heat, load), then power-cycle the servo to clear it")
    if isinstance(err, DxlStatusError):
        return (f"servo {err.dxl_id} on {port} answered {instruction_name(err.instruction)} with "
                f"{err.name} (error byte 0x{err.error:02X}): check that it is an X-series servo "
                "speaking Protocol 2.0, as the hardware YAML says")
    if isinstance(err, BoardTimeout | BoardError):
        imu = config.protocol == "dynamixel"
        board = "the IMU board" if imu else "the board"
        port, baud = _link(backend, 1, config.imu.port, config.imu.baud) if imu else (port, baud)
        if isinstance(err, BoardError):
            return f"{board} on {port} refused the start: {err}"
        return (f"{board} on {port} did not answer ({err}): check its power and cable, the port, "
                f"and that it runs at {baud} baud")
    if isinstance(err, TransportError):
        return str(err)
    return f"{type(err).__name__}: {err}"

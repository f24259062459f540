"""One deployed episode: the control tick and the loop around it, for any body.

Every tick, at the bundle's control period on absolute deadlines (`loop.FixedRateLoop`):

    read -> estimate -> observation -> actor -> action mapper -> safety -> write -> log

(estimate: the trunk-velocity estimator of control/estimator.py, on every state read, logged
with the tick; nothing of the policy's depends on it.)

The body is anything that follows the `Robot` protocol: a simulated body (sim-to-sim), a
virtual device over a pseudo-terminal, or the robot. The observation builder and action
mapper are the ones training used, checked against the bundle before the first tick. The
safety layer always has the last word: it soft-starts from the measured pose, and the actor
runs only while it says the policy is active. After `duration_s` of policy time (or when the
safety layer latches a fault) the episode shuts down: damping, then torque off.

The velocity command comes from a command source (control/commands.py), polled every tick
right after the read: a fixed command, a schedule, the keyboard or a gamepad. The command in
force is logged every tick (`velocity_command`); with the bundle's heading hold
(control/heading.py) the observation and the gait see its yaw rate corrected by the heading
error, counted from the heading at the policy's first tick. The operator's acts go to the
safety layer: damping (latched), re-arm (after damping, a watchdog or an e-stop: the safety
layer checks the state is fresh and upright and soft-starts from the measured pose; a body
that waits for its own `rearm()` after a reconnect is re-armed first), and stop (the shutdown
sequence). A lost input device latches damping, like a stale state. With a source that has an
operator (`can_rearm`), a latched fault waits for a re-arm instead of ending the episode.

Non-real-time runs (`clock`/`sleep` from a `VirtualClock`) go through the same loop on
simulated time, as fast as the body steps; work time is always measured on the wall clock.

`control.runtime` builds a deployment from a bundle and runs it, logged, on any body.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gaitforge.robots.spec import RobotSpec
from gaitforge.robots.types import CommandMode, JointCommand, Robot

from .commands import CommandSource, FixedCommand
from .estimator import VelocityEstimate, VelocityEstimator
from .heading import HeadingHold
from .logger import EpisodeLogger
from .loop import FixedRateLoop, LoopStats, TickInfo, timing_dict
from .policy_io import ActionMapper, ObservationBuilder
from .runner import PolicyRunner
from .safety import SafetyLayer


class VirtualClock:
    """Simulated time for non-real-time runs: `sleep` advances it; each read adds 1 ns so a
    busy-wait on it always ends."""

    def __init__(self, start_s: float = 0.0):
        self.now_s = start_s

    def __call__(self) -> float:
        self.now_s += 1e-9
        return self.now_s

    def sleep(self, dt_s: float) -> None:
        self.now_s += max(dt_s, 0.0)


@dataclass
class EpisodeResult:
    ticks: int = 0
    policy_ticks: int = 0
    policy_limit: int = 0  # policy ticks the episode was asked to run
    read_errors: int = 0
    work_s: list[float] = field(default_factory=list)  # per tick: read -> ... -> write -> log
    loop: dict = field(default_factory=dict)
    safety_counts: dict = field(default_factory=dict)
    end_phase: str = ""
    outcome: str = ""  # one of OUTCOMES
    reason: str = ""  # a sentence: why the episode ended where it did
    rearms: int = 0  # re-arms the operator made
    counts_at_rearm: dict = field(default_factory=dict)  # safety counts at the last re-arm


# How an episode can end, most telling first; "completed" ran its full policy time, and
# "stopped" was ended by the operator, each with no fault left un-re-armed. ("fell" is judged
# by a simulated body's report, see control.runtime.)
OUTCOMES = ("interrupted", "error", "log_failed", "lost_link", "lost_input", "watchdog",
            "estop", "fault", "fell", "incomplete", "stopped", "completed")
_FAULT_KINDS = {"tilt_estop": "estop", "non_finite": "fault", "invalid_input": "fault",
                "watchdog_damping": "watchdog", "watchdog_off": "watchdog",
                "input_lost": "lost_input"}
LATCHED = ("damping", "off", "estop")  # the phases a re-arm leaves


@dataclass
class LiveStatus:
    """What a live view shows, kept up to date by every tick (a few assignments): the last
    `window` ticks' work and lateness (s) in ring buffers, the last events."""

    window: int = 500
    tick: int = 0
    phase: str = "idle"
    command: np.ndarray = field(default_factory=lambda: np.zeros(3))
    policy_s: float = 0.0
    overruns: int = 0  # ticks that came after skipped grid points
    rearms: int = 0
    lost: str = ""
    count: int = 0
    events: deque = field(default_factory=lambda: deque(maxlen=8))  # (tick, kind, detail)

    def __post_init__(self):
        self.work_s = np.full(self.window, np.nan)
        self.lateness_s = np.full(self.window, np.nan)

    def update(self, info: TickInfo, work_s: float, phase: str, command, policy_s: float,
               rearms: int, lost: str) -> None:
        i = self.count % self.window
        self.work_s[i], self.lateness_s[i] = work_s, info.lateness_s
        self.overruns += info.skipped > 0
        self.tick, self.phase, self.command, self.policy_s = info.index, phase, command, \
            policy_s
        self.rearms, self.lost, self.count = rearms, lost, self.count + 1


class Deployment:
    """Wires body, policy I/O, runner, safety and logger into `tick`, the loop's callback.

    Every way out passes through the safety layer's shutdown (damping, then off): the end of
    the policy time, a latched fault (with an operator: a fault the time bound ends un-re-armed),
    `request_stop` (a signal, the operator's stop), and an exception anywhere in a
    tick (the runner, the logger, a bug). After an exception the tick runs the safe path only
    (read, safety, write) and logs while the log can still be written."""

    def __init__(self, body: Robot, runner: PolicyRunner, builder: ObservationBuilder,
                 mapper: ActionMapper, safety: SafetyLayer, *, control_dt_s: float,
                 command=(0.0, 0.0, 0.0), logger: EpisodeLogger | None = None,
                 on_tick: Callable | None = None, estimator: VelocityEstimator | None = None,
                 commands: CommandSource | None = None, status: LiveStatus | None = None):
        """commands: where the velocity command comes from (default: `command`, fixed);
        status: kept up to date for a live view."""
        runner.check_body(builder.spec, control_dt_s, builder.layout, mapper.layout)
        if estimator is not None and logger is not None and logger.n_feet != estimator.n_feet:
            raise ValueError(f"the logger has n_feet={logger.n_feet}, the estimator "
                             f"{estimator.n_feet} feet: build it with the spec's")
        self.estimator = estimator
        self.body, self.runner, self.builder, self.mapper = body, runner, builder, mapper
        self.hold = HeadingHold(builder.config.heading_hold, control_dt_s)
        self.shown_command = np.zeros(3)  # the command the last observation carried
        self.safety, self.logger, self.on_tick = safety, logger, on_tick
        self.control_dt_s = control_dt_s
        self.commands = commands if commands is not None else FixedCommand(command)
        self.command = self.commands.current
        self.status, self.lost = status, ""
        self.last_action = np.zeros(mapper.size)
        self.result = EpisodeResult()
        self.shutting_down = False
        self.stop: tuple[str, str] | None = None  # (outcome, reason) of an early end
        self.log_error: str = ""

    @property
    def policy_limit(self) -> int:
        return self.result.policy_limit

    @policy_limit.setter
    def policy_limit(self, ticks: int) -> None:
        self.result.policy_limit = ticks

    def request_stop(self, outcome: str, reason: str) -> None:
        """End the episode through the shutdown sequence at the next tick (first reason wins)."""
        self.stop = self.stop or (outcome, reason)

    def tick(self, info: TickInfo) -> bool:
        t_start = time.perf_counter()
        self._written, seen = False, None
        try:
            seen = self._policy_tick(info, t_start)
        except Exception as err:  # whatever failed, the robot ends safe
            self._failed(err)
            if not self._written:
                self._safe_tick(info, t_start)
        work_s = time.perf_counter() - t_start
        self.result.work_s.append(work_s)
        if self.status is not None:
            self.status.update(info, work_s, self.safety.phase, self.command,
                               self.result.policy_ticks * self.control_dt_s,
                               self.result.rearms, self.lost)
        if seen is not None and self.on_tick is not None:
            try:
                self.on_tick(*seen, self.safety.phase)
            except Exception as err:  # a hook's bug ends the episode, safely
                self._failed(err)
        latched = self.safety.phase in LATCHED and not self.commands.can_rearm
        if not self.shutting_down and (self.stop or self.result.policy_ticks >= self.policy_limit
                                       or latched):
            self.shutting_down = True
            self.safety.begin_shutdown()
        return not self.safety.finished

    def _policy_tick(self, info: TickInfo, t_start: float) -> None:
        state = self._read(info)
        state = self._operate(info, state)
        estimate = self._estimate(state)
        obs = action = proposed = None
        if state is not None:  # logged every tick: the last policy step has its next observation
            if not self.safety.policy_active:  # the heading to hold is the one it starts at
                self.hold.reset()
            self.shown_command = self.hold.command(self.command, state.imu_quat_wxyz)
            obs = self.builder.build(state, self.last_action, self.shown_command)
        if self.safety.policy_active and obs is not None and not self.shutting_down:
            action = self.runner.act(obs)
            proposed = self.mapper.command(action, state.time_s, self.shown_command)
        command = self.safety.filter(state, obs, proposed)
        self._write(command)
        if action is not None:
            self.last_action = np.clip(np.nan_to_num(action), -1.0, 1.0)
            self.result.policy_ticks += 1
        self._log(info, state, obs, action, command, time.perf_counter() - t_start, estimate)
        return state, action, command

    def _safe_tick(self, info: TickInfo, t_start: float) -> None:
        """After a failure: no actor, no hooks; the safety layer (now shutting down) decides."""
        try:
            state = self._read(info)
        except Exception:
            state = None
        try:
            command = self.safety.filter(state, None, None)
        except Exception as err:  # a broken safety layer: damp directly
            self._failed(err)
            command = _damping(self.builder.spec)
        self._write(command)
        try:
            self._log(info, state, None, None, command, time.perf_counter() - t_start)
        except Exception as err:
            self._failed(err)

    def _read(self, info: TickInfo):
        try:
            return self.body.read()
        except Exception as err:  # a transport error is a missing state: the watchdog decides
            self.result.read_errors += 1
            self._event(info, "read_error", repr(err))
            return None

    def _operate(self, info: TickInfo, state):
        """The command source's input this tick: the command in force, a lost device (latched
        damping), the operator's acts. Returns the state to go on with (a re-armed body's)."""
        given = self.commands.poll(self.result.policy_ticks * self.control_dt_s)
        self.command = given.command
        if given.lost != self.lost:
            if given.lost:
                self.safety.latch("input_lost", given.lost)
            else:
                self._event(info, "input_back", "the input device is back; re-arm to go on")
            self.lost = given.lost
        for request in given.requests:
            if request == "stop":
                self.request_stop("stopped", "the operator ended the episode after "
                                  f"{self.result.policy_ticks * self.control_dt_s:.2f} s of "
                                  "policy")
            elif request == "damp":
                self.safety.latch("operator_damping", "the operator's damping")
            elif request == "rearm":
                state = self._rearm(info, state)
        return state

    def _rearm(self, info: TickInfo, state):
        if self.shutting_down or self.safety.phase not in LATCHED:
            return state  # nothing latched to clear (or the episode is ending)
        if self.lost:
            self._event(info, "rearm_refused", f"the input device is lost ({self.lost})")
            return state
        if getattr(self.body, "rearm_required", False):  # a body back after a reconnect
            try:
                self.body.rearm()
                state = self.body.read()
            except Exception as err:
                self._event(info, "rearm_refused", f"the body did not re-arm: "
                            f"{type(err).__name__}: {err}")
                return None
        if not self.safety.rearm(state):
            self.result.rearms += 1
            self.result.counts_at_rearm = dict(self.safety.counts)
            self.last_action = np.zeros(self.mapper.size)
        return state

    def _event(self, info: TickInfo, kind: str, detail: str, time_s: float | None = None):
        if self.status is not None:
            self.status.events.append((info.index, kind, detail))
        if self.logger:
            self.logger.log_event(info.index, kind, detail,
                                  info.start_s if time_s is None else time_s)

    def _estimate(self, state) -> VelocityEstimate | None:
        if self.estimator is None or state is None:
            return None
        return self.estimator.update(state)

    def _write(self, command) -> None:
        self._written = True
        self.result.ticks += 1
        self.body.write(command)

    def _log(self, info, state, obs, action, command, work_s: float, estimate=None) -> None:
        events = self.safety.drain_events()
        if self.logger:  # the logged work is read..write; the result's includes the logging
            self.logger.log_tick(info.index, state, obs, action, command,
                                 timing_dict(info, work_s), estimate, self.command)
        for e in events:
            self._event(info, e.kind, e.detail, e.time_s)

    def _failed(self, err: Exception) -> None:
        from .logger import LogWriteError

        text = f"{type(err).__name__}: {err}"
        if isinstance(err, LogWriteError):  # logging is never why the robot falls
            if self.logger is not None:
                self.logger.abort()
            self.logger, self.log_error = None, text
            self.request_stop("log_failed", f"the episode log could not be written ({text})")
        else:
            self.request_stop("error", f"{text} (in a control tick)")
        if not self.shutting_down:
            self.shutting_down = True
            self.safety.begin_shutdown()


def _damping(spec: RobotSpec) -> JointCommand:
    return JointCommand(position_rad=spec.default_pose_rad.copy(), mode=CommandMode.DAMPING,
                        kp_nm_per_rad=np.zeros(spec.n_joints), kd_nm_s_per_rad=spec.kd.copy())


def classify(result: EpisodeResult, stop: tuple[str, str] | None, link_lost: bool
             ) -> tuple[str, str]:
    """(outcome, reason) of a finished episode; see OUTCOMES."""
    if stop and stop[0] in ("interrupted", "error", "log_failed"):
        return stop
    at_rearm = result.counts_at_rearm  # faults the operator re-armed from do not count
    faults = [k for k in _FAULT_KINDS
              if result.safety_counts.get(k, 0) > at_rearm.get(k, 0)]
    if faults:
        outcome = _FAULT_KINDS[faults[0]]
        if outcome == "watchdog" and link_lost:
            return "lost_link", "the serial link was lost; the watchdog damped, then turned " \
                                "torque off"
        return outcome, f"safety layer: {', '.join(faults)} after " \
                        f"{result.policy_ticks} of {result.policy_limit} policy ticks" + \
                        (f" ({result.rearms} re-arm(s) before)" if result.rearms else "")
    if stop:
        return stop
    if result.policy_ticks < result.policy_limit:
        return "incomplete", (f"ran {result.policy_ticks} of {result.policy_limit} policy "
                              f"ticks (ended in phase {result.end_phase})")
    return "completed", f"ran all {result.policy_limit} policy ticks"


@contextlib.contextmanager
def stop_on_signals(deployment: Deployment,
                    signals=(signal.SIGINT, signal.SIGTERM, signal.SIGHUP)):
    """SIGINT / SIGTERM / SIGHUP (the terminal or the SSH session closed) end the episode
    through the shutdown sequence instead of raising out of a tick or killing the process.
    Only the main thread can own signal handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    def handler(signum, frame):
        deployment.request_stop("interrupted", f"{signal.Signals(signum).name} received; "
                                "shut down through damping")
    saved = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, old in saved.items():
            signal.signal(s, old)


def clock_and_sleep(realtime: bool):
    """(clock, sleep) for the loop and the safety layer: the wall clock, or simulated time."""
    if realtime:
        return time.perf_counter, time.sleep
    clock = VirtualClock()
    return clock, clock.sleep


def run_episode(deployment: Deployment, duration_s: float, clock, sleep, *,
                max_total_s: float | None = None) -> EpisodeResult:
    """Configure and activate the body, soft-start, run `duration_s` of policy ticks, shut
    down, deactivate. `clock` must be the one the safety layer was built with. `max_total_s`
    bounds the episode (default: duration + 30 s); past it, the shutdown sequence still runs.
    SIGINT and SIGTERM (in the main thread) end the episode through the shutdown sequence."""
    d = deployment
    d.policy_limit = int(round(duration_s / d.control_dt_s))
    realtime = clock is time.perf_counter
    loop = FixedRateLoop(d.control_dt_s, clock=clock, sleep=sleep,
                         busy_wait_s=0.0005 if realtime else 0.0)
    stats = LoopStats(period_s=d.control_dt_s)
    d.body.configure()
    d.body.activate()
    try:
        with stop_on_signals(d):
            d.safety.start(d.body.read())  # the body retries what it can (one policy)
            stats = loop.run(d.tick, duration_s=max_total_s or duration_s + 30.0)
            if not d.safety.finished:  # out of time: end through damping all the same
                d.request_stop("incomplete", "the episode ran out of time")
                loop.run(d.tick, duration_s=d.safety.config.exit_damping_s + 1.0)
    finally:
        d.body.deactivate()
    r = d.result
    r.loop = stats.summary()
    r.safety_counts = dict(d.safety.counts)
    r.end_phase = d.safety.phase
    link_lost = any(e[1] == "disconnected" for e in getattr(d.body, "events", ()))
    r.outcome, r.reason = classify(r, d.stop, link_lost)
    return r

"""One deployed episode: the control tick and the loop around it, for any body.

Every tick, at the bundle's control period on absolute deadlines (`loop.FixedRateLoop`):

    read -> observation -> actor -> action mapper -> safety -> write -> log

The body is anything that follows the `Robot` protocol: a simulated body (sim-to-sim), a
virtual device over a pseudo-terminal, or the robot. The observation builder and action
mapper are the ones training used, checked against the bundle before the first tick. The
safety layer always has the last word: it soft-starts from the measured pose, and the actor
runs only while it says the policy is active. After `duration_s` of policy time (or when the
safety layer latches a fault) the episode shuts down: damping, then torque off.

Non-real-time runs (`clock`/`sleep` from a `VirtualClock`) go through the same loop on
simulated time, as fast as the body steps; work time is always measured on the wall clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gaitforge.robots.types import Robot

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
    read_errors: int = 0
    work_s: list[float] = field(default_factory=list)  # per tick: read -> ... -> write -> log
    loop: dict = field(default_factory=dict)
    safety_counts: dict = field(default_factory=dict)
    end_phase: str = ""


class Deployment:
    """Wires body, policy I/O, runner, safety and logger into `tick`, the loop's callback."""

    def __init__(self, body: Robot, runner: PolicyRunner, builder: ObservationBuilder,
                 mapper: ActionMapper, safety: SafetyLayer, *, control_dt_s: float,
                 command=(0.0, 0.0, 0.0), logger: EpisodeLogger | None = None,
                 on_tick: Callable | None = None):
        runner.check_body(builder.spec, control_dt_s, builder.layout, mapper.layout)
        self.body, self.runner, self.builder, self.mapper = body, runner, builder, mapper
        self.safety, self.logger, self.on_tick = safety, logger, on_tick
        self.control_dt_s = control_dt_s
        self.command = np.asarray(command, np.float64)
        self.last_action = np.zeros(mapper.size)
        self.result = EpisodeResult()
        self.policy_limit = 0
        self.shutting_down = False

    def tick(self, info: TickInfo) -> bool:
        t_start = time.perf_counter()
        try:
            state = self.body.read()
        except Exception as err:  # a transport error is a missing state: the watchdog decides
            state = None
            self.result.read_errors += 1
            if self.logger:
                self.logger.log_event(info.index, "read_error", repr(err), info.start_s)
        obs = action = proposed = None
        if self.safety.policy_active and state is not None and not self.shutting_down:
            obs = self.builder.build(state, self.last_action, self.command)
            action = self.runner.act(obs)
            proposed = self.mapper.command(action, state.time_s, self.command)
        command = self.safety.filter(state, obs, proposed)
        self.body.write(command)
        work_s = time.perf_counter() - t_start
        if action is not None:
            self.last_action = np.clip(np.nan_to_num(action), -1.0, 1.0)
            self.result.policy_ticks += 1
        self.result.ticks += 1
        if self.logger:  # the logged work is read..write; the result's includes the logging
            self.logger.log_tick(info.index, state, obs, action, command,
                                 timing_dict(info, work_s))
            for e in self.safety.drain_events():
                self.logger.log_event(info.index, e.kind, e.detail, e.time_s)
        else:
            self.safety.drain_events()
        self.result.work_s.append(time.perf_counter() - t_start)
        if self.on_tick is not None:
            self.on_tick(state, action, command, self.safety.phase)
        if not self.shutting_down and (self.result.policy_ticks >= self.policy_limit
                                       or self.safety.phase in ("estop", "damping", "off")):
            self.shutting_down = True
            self.safety.begin_shutdown()
        return not self.safety.finished


def _first_state(body, tries: int = 3):
    """The state the soft start begins from; a lost reply or two must not abort a start."""
    for attempt in range(tries):
        try:
            return body.read()
        except Exception:
            if attempt == tries - 1:
                raise


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
    bounds the whole episode (default: duration + 30 s)."""
    d = deployment
    d.policy_limit = int(round(duration_s / d.control_dt_s))
    realtime = clock is time.perf_counter
    d.body.configure()
    d.body.activate()
    try:
        d.safety.start(_first_state(d.body))
        loop = FixedRateLoop(d.control_dt_s, clock=clock, sleep=sleep,
                             busy_wait_s=0.0005 if realtime else 0.0)
        stats: LoopStats = loop.run(d.tick, duration_s=max_total_s or duration_s + 30.0)
    finally:
        d.body.deactivate()
    d.result.loop = stats.summary()
    d.result.safety_counts = dict(d.safety.counts)
    d.result.end_phase = d.safety.phase
    return d.result

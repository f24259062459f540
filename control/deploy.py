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

`load_runtime(bundle)` builds everything a deployment needs from the bundle alone (policy I/O
from its recorded layouts, the runner, a safety layer), and `deploy(runtime, body, ...)` runs
and logs one episode on any body and returns its report: the one deploy path for simulated
bodies, virtual devices and hardware.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gaitforge.robots.spec import RobotSpec, load_robot_spec
from gaitforge.robots.types import Robot

from .bundle import BundleError, PolicyBundle, load_bundle
from .logger import EpisodeLogger
from .loop import FixedRateLoop, LoopStats, TickInfo, timing_dict
from .policy_io import ActionMapper, ObservationBuilder
from .runner import PolicyRunner
from .safety import SafetyConfig, SafetyLayer, rate_limit_for


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


@dataclass
class DeployRuntime:
    """What any deployment of a bundle needs, built from the bundle alone."""

    bundle: PolicyBundle
    spec: RobotSpec
    builder: ObservationBuilder
    mapper: ActionMapper
    runner: PolicyRunner
    safety: SafetyLayer


def load_runtime(bundle_path: str | os.PathLike, clock,
                 safety: SafetyConfig | None = None) -> DeployRuntime:
    """Load and verify the bundle; rebuild its policy I/O from the recorded layouts; the LiteRT
    runner; a safety layer on `clock` (default: rate limit from the servo speed)."""
    bundle = load_bundle(bundle_path)
    spec = load_robot_spec(bundle.robot)
    try:
        builder = ObservationBuilder.from_layout(spec, bundle.observation_layout)
        mapper = ActionMapper.from_layout(spec, bundle.action_layout)
    except ValueError as err:
        raise BundleError(f"bundle {bundle.path}: {err}") from None
    safety = safety or SafetyConfig(max_step_rad=rate_limit_for(spec, bundle.control_dt_s))
    return DeployRuntime(bundle, spec, builder, mapper, PolicyRunner(bundle),
                         SafetyLayer(spec, safety, clock=clock))


def deploy(runtime: DeployRuntime, body: Robot, *, duration_s: float, command, clock, sleep,
           log_path: str | os.PathLike, metadata: dict, on_tick: Callable | None = None) -> dict:
    """Run one logged episode of the bundle on `body` and return its report.

    `clock`/`sleep`: those the runtime's safety layer runs on (`clock_and_sleep`). A body may
    add to the report through `report() -> dict` and to the log through `events`, a list of
    (time_s, kind, detail) (a hardware body's link events)."""
    rt = runtime
    bundle = rt.bundle
    meta = {"robot": rt.spec.name, "bundle_hash": bundle.sha256, "bundle": str(bundle.path),
            "command": [float(c) for c in command], "control_dt_s": bundle.control_dt_s,
            "safety": dict(rt.safety.config.__dict__), **metadata}
    logger = EpisodeLogger(log_path, meta, n_joints=rt.spec.n_joints, obs_dim=rt.builder.size)
    result, report = None, {}
    try:
        deployment = Deployment(body, rt.runner, rt.builder, rt.mapper, rt.safety,
                                control_dt_s=bundle.control_dt_s, command=command,
                                logger=logger, on_tick=on_tick)
        result = run_episode(deployment, duration_s, clock, sleep)
        report = _report(result, rt, body, bundle.control_dt_s, log_path)
    finally:
        for time_s, kind, detail in getattr(body, "events", ()):
            logger.log_event(-1, kind, detail, time_s)
        summary = {k: v for k, v in report.items() if isinstance(v, int | float | str | bool)}
        logger.close({"outcome": report.get("end_phase", "error"), **summary})
    return report


def _report(result: EpisodeResult, rt: DeployRuntime, body, control_dt_s: float,
            log_path) -> dict:
    work = np.asarray(result.work_s) * 1e6
    extra = body.report() if hasattr(body, "report") else {}
    return {"policy_s": result.policy_ticks * control_dt_s, "end_phase": result.end_phase,
            "safety_events": result.safety_counts, "read_errors": result.read_errors,
            "backend": rt.runner.backend,
            "work_p50_us": float(np.percentile(work, 50)) if work.size else float("nan"),
            "work_p99_us": float(np.percentile(work, 99)) if work.size else float("nan"),
            "overruns": result.loop.get("overruns", 0), "log": str(log_path), **extra}


def new_log_path(folder: str | os.PathLike, tag: str) -> Path:
    """A new episode-log path FOLDER/TIME-TAG.gflog (the folder is created)."""
    import datetime

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stamp}-{tag}.gflog"
    n = 1
    while path.exists():
        path = folder / f"{stamp}-{tag}-{n}.gflog"
        n += 1
    return path

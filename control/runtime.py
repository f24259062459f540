"""A deployment built from a bundle alone, run and logged on any body.

    runtime = load_runtime(bundle_path, clock)     # policy I/O from the bundle's layouts,
                                                   # the LiteRT runner, a safety layer
    runtime, s = excitation_runtime(spec, config, dt, clock)   # or an excitation routine
    report = deploy(runtime, body, duration_s=..., command=..., clock=..., sleep=...,
                    log_path=..., metadata=...)

`deploy` is the one deploy path for simulated bodies, virtual devices and hardware: it checks
the log folder can hold the episode, runs `control.deploy.run_episode`, writes the body's own
events into the log, closes the log with the episode's outcome and reason, and returns the
report. A body may add to the report through `report() -> dict` (a simulated body's judge:
`fell`, tracking error) and to the log through `events`, a list of (time_s, kind, detail).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from gaitforge.robots.spec import RobotSpec, load_robot_spec
from gaitforge.robots.types import Robot

from .bundle import BundleError, PolicyBundle, load_bundle
from .deploy import Deployment, EpisodeResult, run_episode
from .estimator import EstimatorConfig, VelocityEstimator
from .excitation import ExcitationActor, ExcitationConfig, excitation_targets
from .logger import EpisodeLogger, check_free_space
from .policy_io import ActionMapper, ObservationBuilder
from .runner import ExploringRunner, PolicyRunner
from .safety import SafetyConfig, SafetyLayer, rate_limit_for


@dataclass
class DeployRuntime:
    """What a deployment needs: built from a bundle alone (`load_runtime`), or from an
    excitation routine (`excitation_runtime`). `metadata` goes into every episode log.
    `estimator`: the trunk-velocity estimator run (and logged) every tick."""

    spec: RobotSpec
    builder: ObservationBuilder
    mapper: ActionMapper
    runner: PolicyRunner | ExploringRunner | ExcitationActor
    safety: SafetyLayer
    control_dt_s: float
    metadata: dict
    bundle: PolicyBundle | None = None
    estimator: VelocityEstimator | None = None


def load_runtime(bundle_path: str | os.PathLike, clock, safety: SafetyConfig | None = None,
                 estimator: EstimatorConfig | None = None, explore: float = 0.0,
                 explore_seed: int | None = None) -> DeployRuntime:
    """Load and verify the bundle; rebuild its policy I/O from the recorded layouts; the LiteRT
    runner (with `explore` > 0: an ExploringRunner, that noise on every action, recorded in
    every log); a safety layer on `clock` (default: rate limit from the servo speed); the
    velocity estimator for the bundle's robot, its contacts from the action layout's gait."""
    bundle = load_bundle(bundle_path)
    spec = load_robot_spec(bundle.robot)
    try:
        builder = ObservationBuilder.from_layout(spec, bundle.observation_layout)
        mapper = ActionMapper.from_layout(spec, bundle.action_layout)
    except ValueError as err:
        raise BundleError(f"bundle {bundle.path}: {err}") from None
    safety = safety or SafetyConfig(max_step_rad=rate_limit_for(spec, bundle.control_dt_s))
    velocity = VelocityEstimator(spec, mapper.config.gait, estimator or EstimatorConfig())
    runner = PolicyRunner(bundle)
    if explore > 0:
        runner = ExploringRunner(runner, explore, explore_seed)
    return DeployRuntime(spec, builder, mapper, runner,
                         SafetyLayer(spec, safety, clock=clock), bundle.control_dt_s,
                         {"kind": "policy", "bundle": str(bundle.path),
                          "bundle_hash": bundle.sha256,
                          "observation_layout": bundle.observation_layout,
                          "action_layout": bundle.action_layout,
                          **getattr(runner, "metadata", {})}, bundle, velocity)


def excitation_runtime(spec: RobotSpec, config: ExcitationConfig, control_dt_s: float, clock,
                       safety: SafetyConfig | None = None) -> tuple[DeployRuntime, float]:
    """(runtime, its duration in s) for an excitation routine (control/excitation.py): the
    same loop, safety layer and logger as a policy, its log tagged `kind: excitation`."""
    safety = safety or SafetyConfig(max_step_rad=rate_limit_for(spec, control_dt_s))
    targets, amplitude = excitation_targets(spec, config, control_dt_s,
                                            limit_margin_rad=safety.limit_margin_rad,
                                            max_step_rad=safety.max_step_rad)
    actor = ExcitationActor(spec, targets, amplitude)
    meta = {"kind": "excitation", "excitation": asdict(config), "amplitude_rad": amplitude}
    runtime = DeployRuntime(spec, ObservationBuilder(spec), actor.mapper(), actor,
                            SafetyLayer(spec, safety, clock=clock), control_dt_s, meta,
                            estimator=VelocityEstimator(spec))
    return runtime, actor.duration_ticks * control_dt_s


def deploy(runtime: DeployRuntime, body: Robot, *, duration_s: float, command, clock, sleep,
           log_path: str | os.PathLike, metadata: dict, on_tick=None, commands=None,
           status=None, max_total_s: float | None = None) -> dict:
    """Run one logged episode of the bundle on `body` and return its report (see the module
    docstring). `clock`/`sleep`: those the runtime's safety layer runs on. `commands`: a
    command source (control/commands.py; default: `command`, fixed), `command` being the
    initial command the log's metadata records; `status`: a `LiveStatus` for a live view;
    `max_total_s`: the episode's time bound (default duration + 30 s)."""
    rt = runtime
    dt = rt.control_dt_s
    cfg = rt.safety.config
    ticks = (max(duration_s, (max_total_s or 0.0) - 30.0) + cfg.soft_start_s
             + cfg.exit_damping_s + cfg.estop_off_after_s) / dt
    n_feet = len(rt.spec.feet)
    check_free_space(Path(log_path).parent, int(ticks) + 50, rt.spec.n_joints, rt.builder.size,
                     n_feet=n_feet)
    meta = {"robot": rt.spec.name, "command": [float(c) for c in command], "control_dt_s": dt,
            "duration_s": float(duration_s), "safety": dict(cfg.__dict__), **rt.metadata,
            **metadata}
    if rt.estimator is not None:  # every episode starts at rest
        rt.estimator.reset()
        meta["estimator"] = {**asdict(rt.estimator.config),
                             "contact_source": rt.estimator.contact_source}
    logger = EpisodeLogger(log_path, meta, n_joints=rt.spec.n_joints, obs_dim=rt.builder.size,
                           n_feet=n_feet)
    deployment = Deployment(body, rt.runner, rt.builder, rt.mapper, rt.safety,
                            control_dt_s=dt, command=command, logger=logger, on_tick=on_tick,
                            estimator=rt.estimator, commands=commands, status=status)
    result = None
    try:
        result = run_episode(deployment, duration_s, clock, sleep, max_total_s=max_total_s)
    finally:
        report = _report(result, deployment, rt, body, log_path)
        _close_log(deployment, body, report)
    return report


def _report(result: EpisodeResult | None, deployment: Deployment, rt: DeployRuntime, body,
            log_path) -> dict:
    if result is None:  # the episode could not start (no state, a lifecycle error...)
        return {"outcome": "error", "reason": "the episode did not start", "policy_s": 0.0,
                "end_phase": rt.safety.phase, "log": str(log_path)}
    work = np.asarray(result.work_s) * 1e6
    extra = body.report() if hasattr(body, "report") else {}
    outcome, reason = result.outcome, result.reason
    if extra.get("fell") and outcome in ("completed", "stopped"):
        why = extra.get("fall_reason") or "judged by the simulator"
        outcome, reason = "fell", f"the robot fell ({why}) during the policy time"
    return {"outcome": outcome, "reason": reason,
            "policy_s": result.policy_ticks * rt.control_dt_s,
            "end_phase": result.end_phase, "safety_events": result.safety_counts,
            "rate_limited_share": rt.safety.policy_ticks_rate_limited / result.policy_ticks
            if result.policy_ticks else 0.0,  # of the policy ticks
            "read_errors": result.read_errors, "rearms": result.rearms,
            "backend": rt.runner.backend,
            "work_p50_us": float(np.percentile(work, 50)) if work.size else float("nan"),
            "work_p99_us": float(np.percentile(work, 99)) if work.size else float("nan"),
            "overruns": result.loop.get("overruns", 0), "log": str(log_path),
            **({"log_error": deployment.log_error} if deployment.log_error else {}), **extra}


def _close_log(deployment: Deployment, body, report: dict) -> None:
    """The body's events and the summary (outcome, reason, scalars), if the log still works."""
    logger = deployment.logger  # None once a write failed: what is on disk stays valid
    if logger is None:
        return
    try:
        for time_s, kind, detail in getattr(body, "events", ()):
            logger.log_event(-1, kind, detail, time_s)
        logger.close({k: v for k, v in report.items()
                      if isinstance(v, int | float | str | bool)})
    except Exception as err:  # a log that fails at the end is reported, not raised
        report["log_error"] = f"{type(err).__name__}: {err}"
        if report["outcome"] == "completed":
            report["outcome"], report["reason"] = "log_failed", report["log_error"]


def new_log_path(folder: str | os.PathLike, tag: str) -> Path:
    """A new episode-log path FOLDER/TIME-TAG.gflog (the folder is created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stamp}-{tag}.gflog"
    n = 1
    while path.exists():
        path = folder / f"{stamp}-{tag}-{n}.gflog"
        n += 1
    return path

"""`gaitforge deploy BUNDLE --body sim:pybullet|sim:mujoco`: the deploy runtime against a
simulated body (sim-to-sim), and `gaitforge logs inspect`.

The simulated body is driven like hardware: `write()` applies the command and advances
physics by one control period, so the runtime (`control/deploy.py`: loop, safety, logger)
is exactly the one that drives a robot. Dynamics are nominal (no randomisation, no sensor
noise). Tracking error and falls come from the simulator's privileged state, which the
runtime never sees.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path

import numpy as np

from gaitforge.config import RunConfig
from gaitforge.control.bundle import load_bundle
from gaitforge.control.deploy import Deployment, clock_and_sleep, run_episode
from gaitforge.control.logger import EpisodeLogger
from gaitforge.control.policy_io import ActionMapper, ObservationBuilder, projected_gravity
from gaitforge.control.runner import PolicyRunner
from gaitforge.control.safety import SafetyConfig, SafetyLayer, rate_limit_for
from gaitforge.evaluation import vx_tracking
from gaitforge.robots.configio import ConfigError, from_dict
from gaitforge.robots.spec import load_robot_spec

BODIES = ("sim:pybullet", "sim:mujoco")


class SimulatedRobot:
    """A SimBody behind the Robot protocol as hardware would be: write() also steps physics.
    Starts standing in the default pose; records forward velocity and falls for the report."""

    def __init__(self, body, termination):
        self.body, self.termination = body, termination
        self.vx: list[float] = []
        self.fell_at_s: float | None = None

    def configure(self) -> None:
        self.body.configure()
        spec = self.body.spec
        self.body.reset(base_pos_m=[0.0, 0.0, self.body.spawn_height()],
                        base_quat_wxyz=[1.0, 0.0, 0.0, 0.0], joint_pos_rad=spec.default_pose_rad)

    def activate(self) -> None:
        self.body.activate()

    def deactivate(self) -> None:
        self.body.deactivate()

    def read(self):
        return self.body.read()

    def write(self, command) -> None:
        self.body.write(command)
        self.body.step()

    def observe(self, state, action, command, phase) -> None:
        """Deployment's on_tick hook: judge the gait while the policy drives."""
        if state is None or action is None:
            return
        p = state.privileged
        self.vx.append(float(p.base_lin_vel_m_s[0]))
        tilt = np.arccos(np.clip(-projected_gravity(state.imu_quat_wxyz)[2], -1.0, 1.0))
        ground = self.body.ground_height(p.base_pos_m[0], p.base_pos_m[1])
        low = p.base_pos_m[2] - ground < self.termination.min_height_frac * \
            self.body.spec.standing_height_m
        if self.fell_at_s is None and (p.trunk_contact or tilt > self.termination.max_tilt_rad
                                       or low):
            self.fell_at_s = state.time_s


@dataclasses.dataclass
class RuntimeParts:
    """What any deployment of a bundle needs, built from the bundle and its run's config."""

    bundle: object
    config: RunConfig
    spec: object
    builder: ObservationBuilder
    mapper: ActionMapper
    runner: PolicyRunner
    safety: SafetyLayer


def runtime_parts(bundle_path: str, clock, safety: SafetyConfig | None = None) -> RuntimeParts:
    """Load and verify the bundle; the policy I/O its run trained with; the LiteRT runner; a
    safety layer on `clock` (default: rate limit from the servo speed)."""
    bundle = load_bundle(bundle_path)
    cfg = from_dict(RunConfig, bundle.manifest["source"]["config"],
                    source=f"{bundle.path}/bundle.json source")
    spec = load_robot_spec(bundle.robot)
    safety = safety or SafetyConfig(max_step_rad=rate_limit_for(spec, bundle.control_dt_s))
    return RuntimeParts(bundle, cfg, spec,
                        ObservationBuilder(spec, cfg.env.observation, cfg.env.action.gait),
                        ActionMapper(spec, cfg.env.action), PolicyRunner(bundle),
                        SafetyLayer(spec, safety, clock=clock))


def deploy_sim(bundle_path: str, body_name: str, *, duration_s: float, command,
               realtime: bool, log_dir: str | None, safety: SafetyConfig | None = None
               ) -> dict:
    from gaitforge.sim.env import make_body

    if body_name not in BODIES:
        raise ConfigError(f"--body: unknown '{body_name}' (known: {', '.join(BODIES)}; "
                          "hardware comes with --hw)")
    clock, sleep = clock_and_sleep(realtime)
    parts = runtime_parts(bundle_path, clock, safety)
    bundle, cfg, spec, runner = parts.bundle, parts.config, parts.spec, parts.runner
    source = bundle.manifest["source"]
    engine = body_name.split(":", 1)[1]
    sim_cfg = dataclasses.replace(cfg.env.sim, engine=engine)
    robot = SimulatedRobot(make_body(spec, sim_cfg), cfg.env.task.termination)
    log_path_ = log_path(log_dir, bundle.path, f"sim-{engine}")
    metadata = {"robot": spec.name, "body": body_name, "bundle_hash": bundle.sha256,
                "bundle": str(bundle.path), "command": list(map(float, command)),
                "control_dt_s": bundle.control_dt_s, "realtime": realtime,
                "safety": parts.safety.config.__dict__, "source_run": source.get("run")}
    logger = EpisodeLogger(log_path_, metadata, n_joints=spec.n_joints,
                           obs_dim=parts.builder.size)
    try:
        deployment = Deployment(robot, runner, parts.builder, parts.mapper, parts.safety,
                                control_dt_s=bundle.control_dt_s, command=command,
                                logger=logger, on_tick=robot.observe)
        result = run_episode(deployment, duration_s, clock, sleep)
    except BaseException:
        logger.close({"outcome": "error"})
        raise
    per_second = round(1.0 / bundle.control_dt_s)
    error, vx_mean = vx_tracking(robot.vx, float(command[0]), per_second) if robot.vx \
        else (float("nan"), float("nan"))
    report = {"body": body_name, "policy_s": result.policy_ticks * bundle.control_dt_s,
              "fell": robot.fell_at_s is not None, "vx_mean": vx_mean,
              "vx_tracking_error": error, "end_phase": result.end_phase,
              "safety_events": result.safety_counts, "backend": runner.backend,
              "work_p50_us": float(np.percentile(result.work_s, 50) * 1e6),
              "work_p99_us": float(np.percentile(result.work_s, 99) * 1e6),
              "overruns": result.loop.get("overruns", 0), "log": str(log_path_)}
    logger.close({"outcome": "fell" if report["fell"] else "ok",
                  **{k: report[k] for k in ("vx_mean", "vx_tracking_error", "policy_s")}})
    robot.body.close()
    return report


def log_path(log_dir: str | None, bundle_path: Path, tag: str) -> Path:
    """A new episode-log path: LOG_DIR (default: deploy-logs/ beside the bundle)/TIME-TAG.gflog"""
    folder = Path(log_dir) if log_dir else bundle_path.parent / "deploy-logs"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = folder / f"{stamp}-{tag}.gflog"
    n = 1
    while path.exists():
        path = folder / f"{stamp}-{tag}-{n}.gflog"
        n += 1
    return path


def parse_command(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(np.isfinite(values)):
        raise ConfigError(f"--command: expected vx,vy,yaw (three numbers), got '{text}'")
    return values


def inspect_log(path: str) -> str:
    from gaitforge.control.logger import read_log, summarize

    if not os.path.exists(path):
        raise ConfigError(f"{path}: no such log")
    return summarize(read_log(path))

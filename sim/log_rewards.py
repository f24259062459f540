"""Transitions, rewards and critic inputs recomputed from an episode log, for fine-tuning.

A log holds only what the robot measured, what the policy saw and did, and the base-velocity
estimator's output (control/estimator.py); a simulated body's log also holds the truth beside
it (`true_*` fields, NaN on hardware), for measuring. From it:

    transitions   (t, t+1) for every tick t at which the policy acted and tick t+1 has an
                  observation. Soft-start, safety-damping and shutdown ticks have no action, so
                  they are never policy transitions.
    terminated    tick t+1 latched a tilt e-stop or a fault (the log's terminal events), or, in
                  simulation, the trunk fell (sim/tasks.py `fall_reason` on the truth)
    truncated     the policy did not act at t+1 and the episode was not terminated: the end of
                  its duration (or a gap)
    reward        the task's named reward terms (sim/tasks.py), with the same before/after
                  convention as training: the state after the step (tick t+1), the action at
                  t and the one before it, and the joints the safety layer's rate limit held
                  at t (its logged `rate_limit` events). The trunk velocity is the
                  estimator's (`velocity="estimated"`), or the logged truth (`"true"`,
                  simulated logs only, to check this against the rewards training computed
                  online). The angular velocity is the gyro, foot contacts the estimator's (or
                  the truth), collisions and trunk height the truth where logged and 0 / "not
                  fallen" on hardware.
    critic_obs    what a critic may see from a log: the estimated trunk velocity (3) and foot
                  contacts (n_feet), at t and at t+1 (`CRITIC_INPUTS`)
With `reestimate`, the estimator's fields are first computed again from the logged sensors
with today's estimator (`reestimated`), the one the simulation runs: logs and fresh
simulation then agree on what a critic sees, and a log written before an estimator fix is
judged with the fix (fine-tuning does this).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gaitforge.control.estimator import VelocityEstimator
from gaitforge.control.logger import TERMINAL_EVENT_KINDS, EpisodeLog
from gaitforge.control.policy_io import GaitConfig, ObservationBuilder
from gaitforge.robots.spec import RobotSpec
from gaitforge.robots.types import PrivilegedState, RobotState

from .tasks import Task, TaskConfig, fall_reason

# (log field, what it is) a fine-tuning critic sees, in order; all measurable on the robot
CRITIC_INPUTS = (("est_lin_vel_m_s", "estimated trunk velocity, body frame, m/s"),
                 ("est_foot_contact", "estimated foot contacts, 0 or 1"))
VELOCITY_SOURCES = ("estimated", "true")


class LogContentError(ValueError):
    """A log lacks what was asked of it; the message names the field and the log."""


@dataclass
class LogTransitions:
    obs: np.ndarray  # (T, obs_dim) float32
    action: np.ndarray  # (T, act_dim) float32, clipped to [-1, 1]
    reward: np.ndarray  # (T,) float32
    next_obs: np.ndarray  # (T, obs_dim)
    terminated: np.ndarray  # (T,) bool
    truncated: np.ndarray  # (T,) bool
    critic_obs: np.ndarray  # (T, critic_dim)
    next_critic_obs: np.ndarray
    reward_terms: dict[str, np.ndarray]  # name -> (T,) weighted term

    def __len__(self) -> int:
        return len(self.reward)


def require_fields(log: EpisodeLog, fields) -> None:
    """LogContentError naming the first of `fields` the log does not hold (or holds only NaN
    where the policy acted)."""
    acted = np.isfinite(log.ticks["action"]).all(axis=1)
    for name in fields:
        if name not in log.ticks:
            raise LogContentError(f"{log.path}: has no '{name}' (written by a gaitforge "
                                  "without it, or by another tool)")
        if acted.any() and not np.isfinite(log.ticks[name][acted]).all():
            raise LogContentError(f"{log.path}: '{name}' is not measured on the ticks the "
                                  "policy acted")


def log_transitions(log: EpisodeLog, spec: RobotSpec, task_config: TaskConfig, *,
                    velocity: str = "estimated",
                    observation: ObservationBuilder | None = None,
                    reestimate: bool = False) -> LogTransitions:
    """The log's policy transitions with their rewards recomputed (see the module docstring).
    `observation`: the builder of the logged observations; with a heading hold, the rewards
    judge the command each observation carried, as training's did (else the log's command)."""
    if velocity not in VELOCITY_SOURCES:
        raise ValueError(f"velocity must be one of {VELOCITY_SOURCES}, got {velocity!r}")
    source = "true" if velocity == "true" else "est"
    require_fields(log, [f for f, _ in CRITIC_INPUTS] + (
        ["true_lin_vel_m_s", "true_foot_contact"] if velocity == "true" else []))
    t = log.ticks
    if reestimate:
        t = reestimated(log, spec, observation.gait if observation is not None else None)
    acted = np.isfinite(t["action"]).all(axis=1)
    has_obs = np.isfinite(t["observation"]).all(axis=1)
    pairs = np.flatnonzero(acted[:-1] & has_obs[:-1] & has_obs[1:])
    terminal_ticks = {e["tick"] for e in log.events if e["kind"] in TERMINAL_EVENT_KINDS}
    held = _rate_limited_joints(log, spec)
    task = Task(task_config, spec, float(log.metadata["control_dt_s"]))
    task.reset(np.random.default_rng(0), command=log.metadata.get("command", (0.0, 0.0, 0.0)))
    rewards, terms, terminated = [], {name: [] for name in task.weights}, []
    last_action = np.zeros(spec.n_joints)
    previous = None
    shown = _shown_commands(t["observation"], observation)
    for i in pairs:
        if previous is None or i != previous + 1:  # a new stretch of policy ticks
            task.reset(np.random.default_rng(0), command=task.command)
            last_action = np.zeros(spec.n_joints)
        action = np.clip(t["action"][i], -1.0, 1.0)
        state = _state(t, i + 1, spec, source)
        step = task.step(state, action, last_action, ground_z_m=0.0,
                         link_contacts=_collisions(t, i + 1),
                         rate_limited=held.get(int(t["tick"][i]), np.zeros(spec.n_joints, bool)),
                         shown_command=None if shown is None else shown[i])
        rewards.append(step.reward)
        for name, value in step.terms.items():
            terms[name].append(value)
        fell = bool(_logged_fall(t, i + 1, spec, task_config))
        terminated.append(fell or int(t["tick"][i + 1]) in terminal_ticks)
        last_action, previous = action, i
    terminated = np.asarray(terminated, bool)
    critic = np.concatenate([np.atleast_2d(t[f].T).T for f, _ in CRITIC_INPUTS], axis=1)
    return LogTransitions(
        obs=t["observation"][pairs].astype(np.float32),
        action=np.clip(t["action"][pairs], -1, 1).astype(np.float32),
        reward=np.asarray(rewards, np.float32),
        next_obs=t["observation"][pairs + 1].astype(np.float32),
        terminated=terminated, truncated=~terminated & ~acted[pairs + 1],
        critic_obs=critic[pairs].astype(np.float32),
        next_critic_obs=critic[pairs + 1].astype(np.float32),
        reward_terms={k: np.asarray(v, np.float32) for k, v in terms.items()})


def reestimated(log: EpisodeLog, spec: RobotSpec, gait: GaitConfig | None) -> dict:
    """The log's ticks with `est_lin_vel_m_s` and `est_foot_contact` computed again, tick by
    tick from the first (the estimator starts at rest, as a deploy's does), from the logged
    time, joints, torques and IMU (`_state`, whose privileged part the estimator never reads)."""
    t = dict(log.ticks)
    est = VelocityEstimator(spec, gait)
    velocity, contact = [], []
    for k in range(len(t["time_s"])):
        e = est.update(_state(t, k, spec, "est"))
        velocity.append(e.lin_vel_m_s)
        contact.append(e.foot_contact)
    t["est_lin_vel_m_s"] = np.asarray(velocity, t["est_lin_vel_m_s"].dtype)
    t["est_foot_contact"] = np.asarray(contact, t["est_foot_contact"].dtype)
    return t


def _shown_commands(observations: np.ndarray, builder: ObservationBuilder | None):
    """(ticks, 3) the command each logged observation carried, where a heading hold made it
    differ from the log's; None where it did not."""
    if builder is None or not builder.config.heading_hold.enabled:
        return None
    term = next(t for t in builder.layout if t["name"] == "command")
    return observations[:, term["start"]:term["start"] + 3] / np.asarray(term["scale"])


def _state(t: dict, k: int, spec: RobotSpec, source: str) -> RobotState:
    """RobotState of tick k with a PrivilegedState built from logged quantities only."""
    height = t.get("true_base_height_m")
    z = float(height[k]) if height is not None and np.isfinite(height[k]) else np.nan
    velocity = t[f"{source}_lin_vel_m_s"][k]
    angular = t["true_ang_vel_rad_s"][k] if source == "true" else t["gyro_rad_s"][k]
    privileged = PrivilegedState(
        base_pos_m=np.array([np.nan, np.nan, z]), base_lin_vel_m_s=velocity.copy(),
        base_ang_vel_rad_s=np.asarray(angular, float).copy(),
        foot_contact=t[f"{source}_foot_contact"][k] > 0.5, friction=np.nan,
        trunk_contact=False)
    torque = t["joint_torque_nm"][k]
    return RobotState(time_s=float(t["time_s"][k]), joint_pos_rad=t["joint_pos_rad"][k].copy(),
                      joint_vel_rad_s=t["joint_vel_rad_s"][k].copy(),
                      imu_quat_wxyz=t["imu_quat_wxyz"][k].copy(),
                      gyro_rad_s=t["gyro_rad_s"][k].copy(), accel_m_s2=t["accel_m_s2"][k].copy(),
                      joint_torque_nm=torque.copy() if np.isfinite(torque).all() else
                      np.zeros(spec.n_joints), privileged=privileged)


def _rate_limited_joints(log: EpisodeLog, spec: RobotSpec) -> dict[int, np.ndarray]:
    """tick -> (n_joints,) bool: the joints named by that tick's `rate_limit` events."""
    index = {name: j for j, name in enumerate(spec.joint_names)}
    held: dict[int, np.ndarray] = {}
    for e in log.events:
        if e["kind"] == "rate_limit":
            mask = held.setdefault(int(e["tick"]), np.zeros(spec.n_joints, bool))
            for name in e["detail"].split(", "):
                if name not in index:
                    raise LogContentError(f"{log.path}: a rate_limit event at tick {e['tick']} "
                                          f"names '{name}', not a joint of {spec.name}")
                mask[index[name]] = True
    return held


def _collisions(t: dict, k: int) -> frozenset:
    """Stand-ins for the links (not feet or trunk) that touched the ground at tick k: as many
    as the simulator logged; none where it could not (hardware)."""
    count = t.get("true_collisions")
    n = int(count[k]) if count is not None and np.isfinite(count[k]) else 0
    return frozenset(f"(logged collision {i})" for i in range(n))


def _logged_fall(t: dict, k: int, spec: RobotSpec, config: TaskConfig) -> str:
    """`fall_reason` where a simulator logged the trunk height (tilt and height); "" else."""
    height = t.get("true_base_height_m")
    if height is None or not np.isfinite(height[k]):
        return ""
    privileged = PrivilegedState(base_pos_m=np.array([0.0, 0.0, float(height[k])]),
                                 base_lin_vel_m_s=np.zeros(3), base_ang_vel_rad_s=np.zeros(3),
                                 foot_contact=np.zeros(len(spec.feet), bool), friction=1.0,
                                 trunk_contact=False)
    state = RobotState(time_s=0.0, joint_pos_rad=np.zeros(spec.n_joints),
                       joint_vel_rad_s=np.zeros(spec.n_joints),
                       imu_quat_wxyz=t["imu_quat_wxyz"][k], gyro_rad_s=np.zeros(3),
                       accel_m_s2=np.zeros(3), privileged=privileged)
    return fall_reason(state, 0.0, spec, config.termination)

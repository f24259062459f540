"""Locomotion tasks as named reward terms.

A reward term is a pure function of a `StepContext` (one control step's before/after).
A task is: default weights for the terms, command ranges, and termination rules. Weights come
from config; the reward is sum(weight * term) * control_dt, and every weighted term is
reported in `info["reward_terms"]` so a user can see why a gait is odd. A `Task` also keeps
the state of the episode in progress (its command, the feet's air time): `reset` starts an
episode, `step` judges one control step from what the env hands it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np

from gaitforge.control.heading import HeadingTarget
from gaitforge.control.policy_io import projected_gravity, trunk_tilt_rad
from gaitforge.robots.spec import RobotSpec
from gaitforge.robots.types import RobotState


@dataclass(frozen=True)
class CommandRanges:
    """Velocity command sampled uniformly per episode: forward, lateral (m/s), yaw rate (rad/s).
    `zero_prob`: each component is instead 0 with this probability, on its own, so that
    standing, turning on the spot and stepping straight sideways (a grid's cells, which a
    uniform draw never gives exactly) are trained as often as the rest. `focus`: commands
    (vx, vy, yaw rate) of which one, each as likely, is the episode's instead with probability
    `focus_prob` (a fine-tune's: those its logs were commanded, where the robot is used)."""

    vx_m_s: tuple[float, float] = (-0.3, 0.3)
    vy_m_s: tuple[float, float] = (-0.15, 0.15)
    yaw_rad_s: tuple[float, float] = (-0.5, 0.5)
    zero_prob: float = 0.0
    focus: tuple[tuple[float, float, float], ...] = ()
    focus_prob: float = 0.0

    def __post_init__(self):
        for name in ("vx_m_s", "vy_m_s", "yaw_rad_s"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"command.{name}: low {lo} > high {hi}")
        if not 0.0 <= self.zero_prob <= 1.0:
            raise ValueError(f"command.zero_prob must be in [0, 1], got {self.zero_prob}")
        if not 0.0 <= self.focus_prob <= 1.0:
            raise ValueError(f"command.focus_prob must be in [0, 1], got {self.focus_prob}")
        if self.focus_prob > 0 and not self.focus:
            raise ValueError("command.focus_prob is above 0 but command.focus names no command")
        if not np.isfinite(np.asarray(self.focus, float)).all():
            raise ValueError(f"command.focus: every component must be finite, got {self.focus}")


@dataclass(frozen=True)
class TerminationConfig:
    max_tilt_rad: float = 1.0  # angle between trunk z and world z
    min_height_frac: float = 0.5  # of the spec's standing height, above local ground
    trunk_contact: bool = True


def fall_reason(state: RobotState, ground_z_m: float, spec: RobotSpec,
                rules: TerminationConfig = TerminationConfig()) -> str:
    """Why the robot has fallen, or "" if it has not: "trunk_contact" (the trunk or a non-foot
    link touches the ground, when `rules.trunk_contact`), "tilt" (trunk tilt above
    `max_tilt_rad`) or "height" (trunk lower than `min_height_frac` of the standing height
    above the ground at `ground_z_m`). Needs the simulator's privileged state. The one fall
    test of training's termination, the deploy report and `gaitforge check`."""
    p = state.privileged
    if rules.trunk_contact and p.trunk_contact:
        return "trunk_contact"
    if trunk_tilt_rad(state.imu_quat_wxyz) > rules.max_tilt_rad:
        return "tilt"
    if p.base_pos_m[2] - ground_z_m < rules.min_height_frac * spec.standing_height_m:
        return "height"
    return ""


@dataclass(frozen=True)
class TaskConfig:
    name: Literal["walk", "stand"] = "walk"
    episode_length_s: float = 20.0
    command: CommandRanges = CommandRanges()
    rewards: dict[str, float] = field(default_factory=dict)  # overrides the task's default weights
    tracking_sigma: float = 0.25  # (m/s)^2 and (rad/s)^2 width of the tracking kernels
    tracking_sigma_yaw: float | None = None  # (rad/s)^2 of the yaw-rate kernel (None: the same)
    # the yaw rate tracking_ang_vel judges: its mean over this window (s; one stride cancels
    # the trot's own yaw ripple, which otherwise swamps a steady turn); 0: the step's own
    yaw_rate_window_s: float = 0.0
    # the same for the forward and lateral velocity tracking_lin_vel judges (s; 0: the step's own)
    lin_vel_window_s: float = 0.0
    # the `heading` term's target is the commanded yaw rate integrated from the episode's first
    # step, dragged along so the trunk is never more than this far from it (rad)
    heading_cap_rad: float = 1.0
    feet_air_time_target_s: float = 0.25
    termination: TerminationConfig = TerminationConfig()

    def __post_init__(self):
        if self.name not in DEFAULT_WEIGHTS:
            raise ValueError(f"name: unknown task '{self.name}' "
                             f"(known: {', '.join(sorted(DEFAULT_WEIGHTS))})")
        if self.episode_length_s <= 0:
            raise ValueError("episode_length_s must be > 0")
        for name in ("yaw_rate_window_s", "lin_vel_window_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not self.heading_cap_rad > 0:
            raise ValueError("heading_cap_rad must be > 0")
        unknown = sorted(set(self.rewards) - set(REWARD_TERMS))
        if unknown:
            raise ValueError(f"rewards: unknown term '{unknown[0]}' "
                             f"(known: {', '.join(sorted(REWARD_TERMS))})")


@dataclass
class StepContext:
    """Everything a reward term may look at, for one control step."""

    spec: RobotSpec
    state: RobotState  # after the step (privileged filled: simulation)
    command: np.ndarray  # (3,) vx, vy, yaw rate
    action: np.ndarray
    last_action: np.ndarray
    link_contacts: AbstractSet[str]  # links touching the ground
    first_contact: np.ndarray  # (n_feet,) bool: foot touched down this step
    air_time_s: np.ndarray  # (n_feet,) time the foot had been in the air at touch-down
    sigma: float
    air_time_target_s: float
    sigma_yaw: float | None = None  # None: `sigma`
    rate_limited: np.ndarray | None = None  # (n_joints,) bool: the deploy rate limit held it
    yaw_rate: float | None = None  # rad/s judged by tracking_ang_vel (None: the trunk's now)
    lin_vel: tuple[float, float] | None = None  # vx, vy judged by tracking_lin_vel (None: now)
    heading_error: float = 0.0  # rad, trunk heading minus the commanded one (Task.step)


def _lin_vel(c: StepContext) -> np.ndarray:
    return c.state.privileged.base_lin_vel_m_s


def tracking_lin_vel(c: StepContext) -> float:
    vx, vy = _lin_vel(c)[:2] if c.lin_vel is None else c.lin_vel
    ex, ey = c.command[0] - vx, c.command[1] - vy
    return float(np.exp(-(ex * ex + ey * ey) / c.sigma))


def tracking_ang_vel(c: StepContext) -> float:
    rate = c.state.privileged.base_ang_vel_rad_s[2] if c.yaw_rate is None else c.yaw_rate
    err = c.command[2] - rate
    return float(np.exp(-err * err / (c.sigma if c.sigma_yaw is None else c.sigma_yaw)))


def heading(c: StepContext) -> float:
    """|trunk heading - commanded heading| (rad, from the IMU quaternion): the yaw-rate kernel
    forgets a slow drift; this sees it add up, and pulls back from as far as the cap."""
    return abs(c.heading_error)


def lin_vel_z(c: StepContext) -> float:
    return float(_lin_vel(c)[2] ** 2)


def ang_vel_xy(c: StepContext) -> float:
    w = c.state.privileged.base_ang_vel_rad_s
    return float(w[0] ** 2 + w[1] ** 2)


def orientation(c: StepContext) -> float:
    g = projected_gravity(c.state.imu_quat_wxyz)
    return float(g[0] ** 2 + g[1] ** 2)


def base_height(c: StepContext) -> float:
    err = c.state.privileged.base_pos_m[2] - c.spec.standing_height_m
    return float((err / c.spec.standing_height_m) ** 2)


def torque(c: StepContext) -> float:
    return float(np.sum((c.state.joint_torque_nm / c.spec.torque_limit_nm) ** 2))


def joint_vel(c: StepContext) -> float:
    return float(np.sum((c.state.joint_vel_rad_s / c.spec.velocity_limit_rad_s) ** 2))


def action_rate(c: StepContext) -> float:
    d = c.action - c.last_action
    return float(np.dot(d, d))


def residual(c: StepContext) -> float:
    """sum(action^2): how far the policy pushes the joints off the default pose and the gait
    prior (control/policy_io.py); a penalty keeps it near a prior that already steps."""
    return float(np.dot(c.action, c.action))


def rate_limit(c: StepContext) -> float:
    """Share of the joints whose target the deploy's per-tick rate limit held back this step
    (sim/env.py applies it as deployment does; 0 where no limit was applied)."""
    return 0.0 if c.rate_limited is None else float(np.mean(c.rate_limited))


def rate_limit_tick(c: StepContext) -> float:
    """1 when the deploy's rate limit held back any joint this step: what the deploy report
    counts (the share of policy ticks limited), where `rate_limit` counts the joints."""
    return 0.0 if c.rate_limited is None else float(np.any(c.rate_limited))


def pose(c: StepContext) -> float:
    d = c.state.joint_pos_rad - c.spec.default_pose_rad
    return float(np.exp(-np.dot(d, d) / 0.25))


def feet_air_time(c: StepContext) -> float:
    """legged_gym's stepping reward: at touch-down, air time beyond the target; only when moving."""
    if np.linalg.norm(c.command[:2]) < 0.05:
        return 0.0
    return float(np.sum((c.air_time_s - c.air_time_target_s) * c.first_contact))


def collision_links(spec: RobotSpec, link_contacts: AbstractSet[str]) -> AbstractSet[str]:
    """The links on the ground other than feet and trunk (knees, shins), less the robot's
    `ground_contact_links`."""
    return link_contacts - {*spec.feet, spec.base_link, *spec.ground_contact_links}


def collision(c: StepContext) -> float:
    """Links other than feet and trunk on the ground (knees, shins)."""
    return float(len(collision_links(c.spec, c.link_contacts)))


def alive(c: StepContext) -> float:
    return 1.0


REWARD_TERMS: dict[str, Callable[[StepContext], float]] = {
    f.__name__: f
    for f in (tracking_lin_vel, tracking_ang_vel, heading, lin_vel_z, ang_vel_xy, orientation,
              base_height, torque, joint_vel, action_rate, residual, rate_limit, rate_limit_tick,
              pose, feet_air_time, collision, alive)
}

DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    # rate_limit: what the deploy's rate limit holds back (sim/env.py applies it). Without
    # the term a walking servo_dog policy met the limit on 34-91 % of its deploy ticks; with
    # -2 on 0.1-2 %, tracking as well.
    "walk": {"tracking_lin_vel": 1.0, "tracking_ang_vel": 0.5, "lin_vel_z": -2.0,
             "ang_vel_xy": -0.05, "orientation": -1.0, "torque": -0.01, "joint_vel": -0.001,
             "action_rate": -0.01, "rate_limit": -2.0, "feet_air_time": 1.0, "collision": -1.0},
    "stand": {"tracking_lin_vel": 1.0, "tracking_ang_vel": 0.5, "pose": 0.5, "base_height": -1.0,
              "orientation": -1.0, "lin_vel_z": -2.0, "torque": -0.01, "action_rate": -0.01,
              "collision": -1.0, "alive": 0.5},
}


TASKS = tuple(DEFAULT_WEIGHTS)


def full_weights(config: TaskConfig) -> dict[str, float]:
    """Every reward weight of the task: its defaults, then the config's (0 drops a term). A
    run's saved config records these, so later changes to the defaults leave it as trained."""
    return {**DEFAULT_WEIGHTS[config.name], **config.rewards}


class TaskStep(NamedTuple):
    """What `Task.step` judged of one control step."""

    reward: float  # sum of the weighted terms, times control_dt
    terms: dict[str, float]  # name -> weighted term of this step (sums to the reward)
    terminated: bool  # the robot has fallen (see `fall_reason`)
    reason: str  # `fall_reason`: "trunk_contact", "tilt", "height", or "" while standing


class Task:
    """Commands, weighted reward terms and terminations for one task config, and the state of
    the episode in progress: its velocity command and how long each foot has been in the air.

        command = task.reset(rng)  # a new episode: sample (or hold) a command, feet down
        reward, terms, terminated, reason = task.step(state, action, last_action,
                                                      ground_z_m=ground_z)
    """

    def __init__(self, config: TaskConfig, spec: RobotSpec, control_dt_s: float):
        self.config = config
        self.spec = spec
        self.control_dt_s = control_dt_s
        self.weights = {k: w for k, w in full_weights(config).items() if w != 0.0}
        self.max_steps = int(round(config.episode_length_s / control_dt_s))
        self.needs_link_contacts = "collision" in self.weights  # step() reads link_contacts
        self.command = np.zeros(3)  # (3,) vx m/s, vy m/s, yaw rad/s of the episode in progress
        self.air_time_s = np.zeros(len(spec.feet))  # (n_feet,) time since each foot lifted off
        self._held_command: np.ndarray | None = None
        # the last yaw rates (rad/s) of the episode, for `yaw_rate_window_s`
        self._yaw_rates: deque[float] = deque(
            maxlen=max(1, round(config.yaw_rate_window_s / control_dt_s)))
        # ... and the last forward and lateral velocities (m/s), for `lin_vel_window_s`
        self._lin_vels: deque[tuple[float, float]] = deque(
            maxlen=max(1, round(config.lin_vel_window_s / control_dt_s)))
        self._heading = HeadingTarget(config.heading_cap_rad, control_dt_s)  # `heading` term's
        self._tracks_heading = "heading" in self.weights  # else the env step skips the work

    def sample_command(self, rng: np.random.Generator) -> np.ndarray:
        if self.config.name == "stand":
            return np.zeros(3)
        c = self.config.command
        if c.focus_prob > 0 and rng.random() < c.focus_prob:  # (a draw only then, as below)
            return np.array(c.focus[rng.integers(len(c.focus))], dtype=np.float64)
        out = np.array([rng.uniform(*c.vx_m_s), rng.uniform(*c.vy_m_s), rng.uniform(*c.yaw_rad_s)])
        if c.zero_prob > 0:  # (three more draws only then: runs without it sample as before)
            out[rng.random(3) < c.zero_prob] = 0.0
        return out

    def hold_command(self, command) -> None:
        """Fix the command for the episode in progress and later ones (a copy is kept); None:
        sample one per episode again."""
        self._held_command = None if command is None else np.array(command, dtype=np.float64)
        if command is not None:
            self.command = self._held_command.copy()

    def reset(self, rng: np.random.Generator, command=None) -> np.ndarray:
        """Start an episode and return its command: `command` (copied) if given, else the held
        one, else one sampled from `rng` (three draws; none for "stand"). Every foot counts as
        just landed."""
        if command is None:
            command = self._held_command
        self.command = (self.sample_command(rng) if command is None
                        else np.array(command, dtype=np.float64))  # a copy, never the caller's
        self.air_time_s = np.zeros(len(self.spec.feet))
        self._yaw_rates.clear()
        self._lin_vels.clear()
        self._heading.reset()
        return self.command

    def step(self, state: RobotState, action: np.ndarray, last_action: np.ndarray, *,
             ground_z_m: float, link_contacts: AbstractSet[str] = frozenset(),
             rate_limited: np.ndarray | None = None, shown_command=None) -> TaskStep:
        """Judge one control step: `state` after it (privileged filled), the clipped `action`
        that led there and the one before, the ground height under the trunk, and the links
        touching the ground (needed only when `needs_link_contacts`), and the joints whose
        target the deploy rate limit held (None: no limit applied). `shown_command`: the
        command the policy's observation carried, if not the task's (a heading hold's,
        control/heading.py): the terms judge that one, as legged_gym's heading commands are
        judged, so the policy learns to follow what it is shown and the hold steers. Advances
        the feet's air time, the velocity windows and the commanded heading."""
        first_contact, air_time_s = self._touch_downs(state.privileged.foot_contact)
        p = state.privileged
        self._yaw_rates.append(float(p.base_ang_vel_rad_s[2]))
        self._lin_vels.append((float(p.base_lin_vel_m_s[0]), float(p.base_lin_vel_m_s[1])))
        n = len(self._lin_vels)
        ctx = StepContext(
            spec=self.spec, state=state, action=action,
            command=self.command if shown_command is None else np.asarray(shown_command),
            last_action=last_action, link_contacts=link_contacts,
            first_contact=first_contact, air_time_s=air_time_s,
            sigma=self.config.tracking_sigma, sigma_yaw=self.config.tracking_sigma_yaw,
            air_time_target_s=self.config.feet_air_time_target_s, rate_limited=rate_limited,
            yaw_rate=sum(self._yaw_rates) / len(self._yaw_rates),
            lin_vel=(sum(v[0] for v in self._lin_vels) / n, sum(v[1] for v in self._lin_vels) / n),
            heading_error=self._heading.error(state.imu_quat_wxyz, self.command[2])
            if self._tracks_heading else 0.0)
        reward, terms = self.reward(ctx)
        fell, reason = self.terminated(state, ground_z_m)
        return TaskStep(reward, terms, fell, reason)

    def _touch_downs(self, contact: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(feet that touched down this step, air time of every foot before this contact);
        then the air time of the feet in contact restarts at 0."""
        dt = self.control_dt_s
        self.air_time_s += dt
        first_contact = contact & (self.air_time_s > dt)
        air_at_touchdown = self.air_time_s.copy()
        self.air_time_s[contact] = 0.0
        return first_contact, air_at_touchdown

    def reward(self, ctx: StepContext) -> tuple[float, dict[str, float]]:
        terms = {name: w * REWARD_TERMS[name](ctx) * self.control_dt_s
                 for name, w in self.weights.items()}
        return float(sum(terms.values())), terms

    def terminated(self, state: RobotState, ground_z: float) -> tuple[bool, str]:
        """(done, reason): see `fall_reason`."""
        reason = fall_reason(state, ground_z, self.spec, self.config.termination)
        return bool(reason), reason

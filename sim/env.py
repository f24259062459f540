"""LocomotionEnv: robot body + task + randomisation behind the gymnasium API.

Observation: `control.policy_io.ObservationBuilder` (what hardware measures; the deploy runtime
builds it with the same code). Action: [-1, 1]^n through `control.policy_io.ActionMapper`.
The task (`sim.tasks.Task`) keeps the episode's command and the feet's air time, and judges
each step from the state the env hands it. `info` carries:
    reward_terms  dict name -> weighted reward of this step (sums to the reward)
    critic_obs    extras for an asymmetric critic, in `critic_observation_space`: the
                  privileged simulator state (PrivilegedState.vector; `critic_inputs:
                  privileged`) or what a robot's log also holds, the velocity estimator's
                  output (`critic_inputs: estimated`; what fine-tuning from logs uses)
    command       (3,) vx m/s, vy m/s, yaw rad/s: the task's (the observation's, which the
                  rewards judge, may differ by `observation.heading_hold`'s correction)
    fell          1.0 when the episode terminated this step (trunk contact, tilt, height)
    terrain_level with terrain kind `levels` only: the level of the episode in progress
    estimate      float32 (3 + n_feet,): the trunk-velocity estimator's output for the state
                  beside it (control/estimator.py, the one the deploy tick runs and logs),
                  `VelocityEstimate.vector()`: body-frame velocity m/s, then 1.0 per stance
                  foot. It is fed the same noisy state the observation is built from.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Literal

import gymnasium as gym
import numpy as np

from gaitforge.control.estimator import VelocityEstimator
from gaitforge.control.heading import HeadingHold
from gaitforge.control.policy_io import (
    ActionConfig,
    ActionMapper,
    ObservationBuilder,
    ObservationConfig,
    limit_targets,
)
from gaitforge.control.safety import SafetyConfig, rate_limit_for
from gaitforge.robots.spec import RobotSpec, load_robot_spec
from gaitforge.robots.types import PrivilegedState

from .body import SimBody
from .config import SimConfig
from .dynamics import nominal_dynamics
from .randomization import (
    RandomizationConfig,
    add_sensor_noise,
    sample_dynamics,
    sample_initial_pose,
    sample_push,
)
from .tasks import Task, TaskConfig
from .terrain import TerrainCurriculum, ground_height


@dataclass(frozen=True)
class EnvConfig:
    robot: str = "servo_dog"
    sim: SimConfig = SimConfig()
    task: TaskConfig = TaskConfig()
    randomization: RandomizationConfig = RandomizationConfig()
    observation: ObservationConfig = ObservationConfig()
    action: ActionConfig = ActionConfig()
    # Nominal dynamics (sim/dynamics.py names -> value or per-joint list), on top of the sim's
    # friction and latency; `gaitforge train --dynamics FILE` fills it from a dynamics file.
    dynamics: dict = field(default_factory=dict)
    dynamics_source: str = ""  # where `dynamics` came from (file and sha256), for people
    # Apply what the deploy-time safety layer enforces on every position target (the joint
    # limits minus its margin, and its per-tick rate limit) in the training action path too,
    # by the same function (control.policy_io.limit_targets), so training sees it.
    deploy_limits: bool = True
    critic_inputs: Literal["privileged", "estimated"] = "privileged"  # see critic_obs above
    # What the rewards judge the trunk's motion by: the simulator's truth (`privileged`), or
    # what a robot's log holds (`estimated`: the velocity estimator's output, the gyro, the
    # estimator's foot contacts, no link collisions, which a robot does not sense), as
    # sim/log_rewards.py judges a robot's log, so that a fine-tune mixing logs with fresh
    # simulation rewards both alike. Falls are judged on the truth either way.
    reward_inputs: Literal["privileged", "estimated"] = "privileged"


def make_body(spec: RobotSpec, sim: SimConfig, *, fixed_base: bool = False) -> SimBody:
    """A simulated body for `sim.engine` (engines are imported only when used)."""
    if sim.engine == "pybullet":
        from .pybullet_body import PyBulletBody

        return PyBulletBody(spec, sim, fixed_base=fixed_base)
    from .mujoco_body import MuJoCoBody

    return MuJoCoBody(spec, sim, fixed_base=fixed_base)


class LocomotionEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}

    def __init__(self, config: EnvConfig = EnvConfig(), render_mode: str | None = None):
        self.config = config
        self.robot_spec = spec = load_robot_spec(config.robot)
        self.body = make_body(spec, config.sim)
        self.body.configure()
        self.body.activate()
        self.nominal_dynamics = nominal_dynamics(spec, config.sim, config.dynamics)
        safety = SafetyConfig()  # the deploy defaults (control.runtime.load_runtime's)
        self._limits = (spec.lower_rad + safety.limit_margin_rad,
                        spec.upper_rad - safety.limit_margin_rad,
                        rate_limit_for(spec, config.sim.control_dt_s)) \
            if config.deploy_limits else None
        self.task = Task(config.task, spec, config.sim.control_dt_s)
        # the rewards see link collisions where the task needs them and judges the truth
        self._senses_links = self.task.needs_link_contacts and config.reward_inputs == "privileged"
        self.curriculum = TerrainCurriculum(config.sim.terrain) \
            if config.sim.terrain.kind == "levels" else None
        self.obs_builder = ObservationBuilder(spec, config.observation, config.action.gait)
        self.action_mapper = ActionMapper(spec, config.action)
        self.heading_hold = HeadingHold(config.observation.heading_hold, config.sim.control_dt_s)
        self._shown_command = np.zeros(3)  # the command the last observation carried
        self.estimator = VelocityEstimator(spec, config.action.gait)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (self.obs_builder.size,),
                                                np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (spec.n_joints,), np.float32)
        critic_size = PrivilegedState.size(len(spec.feet)) \
            if config.critic_inputs == "privileged" else 3 + len(spec.feet)
        self.critic_observation_space = gym.spaces.Box(-np.inf, np.inf, (critic_size,),
                                                       np.float32)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": round(1 / config.sim.control_dt_s)}

    # gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng, cfg, spec, body = self.np_random, self.config, self.robot_spec, self.body
        body.set_dynamics(sample_dynamics(cfg.randomization, spec, self.nominal_dynamics, rng))
        q, quat = sample_initial_pose(cfg.randomization, spec, rng)
        if self.curriculum is not None:  # a new field at the env's level, every episode
            body.set_terrain(self.curriculum.field(rng))
        body.reset_standing(quat, q)
        self.task.reset(rng, (options or {}).get("command"))
        self.last_action = np.zeros(spec.n_joints)
        self._target = np.clip(q, *self._limits[:2]) if self._limits else None
        self._rate_limited = False
        self.steps = 0
        self.estimator.reset()
        self.heading_hold.reset()
        state = self._obs_state = body.read()
        self._start_xy = state.privileged.base_pos_m[:2].copy()
        obs = self._observe(self._sense(state))
        return obs, self._info(state, {}, False)

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        body, rng = self.body, self.np_random
        push = sample_push(self.config.randomization, self.steps, self.config.sim.control_dt_s,
                           rng)
        if push is not None:
            body.push(push)
        # the action answers the last observation: it is timed by the state that one showed
        command = self.action_mapper.command(action, self._obs_state.time_s, self._shown_command)
        hit = None
        if self._limits:
            command.position_rad, _, hit = limit_targets(command.position_rad, self._target,
                                                         *self._limits)
            self._target = command.position_rad
        self._rate_limited = hit is not None and bool(hit.any())
        body.write(command)
        body.step()
        self.steps += 1
        state = self._obs_state = body.read()
        noisy = self._sense(state)
        pos = state.privileged.base_pos_m
        reward, terms, terminated, _ = self.task.step(
            self._judged(state, noisy), action, self.last_action,
            ground_z_m=ground_height(body.terrain, pos[0], pos[1]),
            link_contacts=body.link_contacts() if self._senses_links else frozenset(),
            rate_limited=hit, shown_command=self._shown_command)
        truncated = (not terminated) and self.steps >= self.task.max_steps
        self.last_action = action
        obs = self._observe(noisy)
        info = self._info(state, terms, terminated)
        if self.curriculum is not None and (terminated or truncated):
            self.curriculum.episode_end(
                fell=terminated, distance_m=float(np.linalg.norm(pos[:2] - self._start_xy)),
                commanded_m=float(np.linalg.norm(self.command[:2]))
                * self.steps * self.config.sim.control_dt_s)
        return obs, reward, terminated, truncated, info

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        from .render import render_rgb

        return render_rgb(self.body)

    def close(self):
        self.body.close()

    # gaitforge extras ----------------------------------------------------------------------
    @property
    def command(self) -> np.ndarray:
        """(3,) vx m/s, vy m/s, yaw rad/s of the episode in progress (the task's)."""
        return self.task.command

    def set_command(self, command) -> None:
        """Fix the velocity command for this and later episodes (None: sample per episode)."""
        self.task.hold_command(command)

    def _sense(self, state):
        """`state` as the sensors read it (with sensor noise), and the estimator run on it:
        the observation, the heading hold and the estimator see the same noise."""
        noisy = add_sensor_noise(self.config.randomization, state, self.np_random)
        self._estimate = self.estimator.update(noisy)
        return noisy

    def _judged(self, state, noisy):
        """The state the rewards judge (`reward_inputs`): the truth, or its trunk velocity,
        angular velocity and foot contacts replaced by the estimate, the read gyro and the
        estimator's contacts, what sim/log_rewards.py judges a log by. The rest (height,
        trunk contact: the falls) stays the truth."""
        if self.config.reward_inputs == "privileged":
            return state
        e = self._estimate
        privileged = replace(
            state.privileged, base_lin_vel_m_s=np.asarray(e.lin_vel_m_s, float).copy(),
            base_ang_vel_rad_s=np.asarray(noisy.gyro_rad_s, float).copy(),
            foot_contact=np.asarray(e.foot_contact) > 0.5)
        return replace(state, privileged=privileged)

    def _observe(self, noisy) -> np.ndarray:
        """The observation of the sensors' reading `noisy` (`_sense`), with the command the
        heading hold shows."""
        self._shown_command = self.heading_hold.command(self.command, noisy.imu_quat_wxyz)
        return self.obs_builder.build(noisy, self.last_action, self._shown_command)

    def _info(self, state, terms: dict, fell: bool) -> dict:
        info = {
            "reward_terms": {name: terms.get(name, 0.0) for name in self.task.weights},
            "critic_obs": state.privileged.vector() if self.config.critic_inputs == "privileged"
            else self._estimate.vector(),
            "command": self.command.astype(np.float32),
            "fell": float(fell),
            "estimate": self._estimate.vector(),
            "rate_limited": float(self._rate_limited),  # the deploy rate limit held this action
        }
        if self.curriculum is not None:
            info["terrain_level"] = float(self.curriculum.level)
        return info


def make_env(config: EnvConfig = EnvConfig(), render_mode: str | None = None) -> LocomotionEnv:
    return LocomotionEnv(config, render_mode=render_mode)


def env_factory(config: EnvConfig):
    """A picklable zero-argument factory (for subprocess workers)."""
    return functools.partial(make_env, config)


def make_vec_env(config: EnvConfig = EnvConfig(), n: int = 1, workers: int = 0,
                 seed: int | None = None):
    """N copies of the env as one batch (sim.vec_env.VecEnv): in-process with workers=0, else
    in `workers` subprocesses that each hold several envs, with shared-memory buffers.
    Env i is seeded with seed + i; autoreset is same-step (info["final_obs"])."""
    from .vec_env import VecEnv

    return VecEnv([env_factory(config)] * n, workers=workers, seed=seed)

"""Domain randomisation as pure functions of (params, rng).

Nothing here touches an engine: functions return values (DynamicsParams, a noisy RobotState,
a push velocity, an initial state) that the environment applies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from gaitforge.robots.spec import RobotSpec
from gaitforge.robots.types import RobotState

from .dynamics import DynamicsParams

Range = tuple[float, float]


@dataclass(frozen=True)
class NoiseConfig:
    """Uniform sensor noise half-widths, applied to what the policy sees."""

    joint_pos_rad: float = 0.01
    joint_vel_rad_s: float = 0.5
    gyro_rad_s: float = 0.1
    imu_tilt_rad: float = 0.02  # random small rotation of the IMU quaternion


@dataclass(frozen=True)
class RandomizationConfig:
    enabled: bool = True
    friction: Range = (0.6, 1.2)
    added_mass_frac: Range = (-0.05, 0.15)  # of the spec's nominal mass, added to the trunk
    com_offset_m: Range = (-0.005, 0.005)  # per axis
    motor_strength: Range = (0.9, 1.1)
    kp_scale: Range = (0.9, 1.1)
    kd_scale: Range = (0.9, 1.1)
    latency_s: Range = (0.0, 0.01)  # added to the nominal latency (clipped at 0)
    noise: NoiseConfig = NoiseConfig()
    push_interval_s: float = 0.0  # 0 = no pushes
    push_vel_m_s: float = 0.3  # max horizontal velocity change per push
    init_joint_noise_rad: float = 0.1  # initial joint angles around the default pose
    init_yaw: bool = True  # random initial heading

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and value[0] > value[1]:
                raise ValueError(f"{f.name}: low {value[0]} > high {value[1]}")
        if self.push_interval_s < 0 or self.push_vel_m_s < 0:
            raise ValueError("push_interval_s and push_vel_m_s must be >= 0")


def sample_dynamics(cfg: RandomizationConfig, spec: RobotSpec, nominal: DynamicsParams,
                    rng: np.random.Generator) -> DynamicsParams:
    """One episode's dynamics around `nominal` (the spec's, or a dynamics file's): scales
    multiply the nominal value, the added mass and latency offsets add to it."""
    if not cfg.enabled:
        return nominal
    u = rng.uniform
    return dataclasses.replace(
        nominal,
        foot_friction=nominal.foot_friction * u(*cfg.friction),
        trunk_mass_delta_kg=nominal.trunk_mass_delta_kg
        + spec.nominal_mass_kg * u(*cfg.added_mass_frac),
        com_offset_m=tuple(u(*cfg.com_offset_m, size=3).tolist()),
        motor_strength=_scaled(nominal.motor_strength, u(*cfg.motor_strength)),
        kp_scale=_scaled(nominal.kp_scale, u(*cfg.kp_scale)),
        kd_scale=_scaled(nominal.kd_scale, u(*cfg.kd_scale)),
        latency_s=max(0.0, nominal.latency_s + u(*cfg.latency_s)),
    )


def _scaled(value, factor: float):
    return tuple(v * factor for v in value) if isinstance(value, tuple) else value * factor


def add_sensor_noise(cfg: RandomizationConfig, state: RobotState,
                     rng: np.random.Generator) -> RobotState:
    """A copy of `state` with uniform noise on what the policy observes."""
    if not cfg.enabled:
        return state
    n, u = cfg.noise, rng.uniform
    nj = state.joint_pos_rad.shape[0]
    axis_angle = u(-n.imu_tilt_rad, n.imu_tilt_rad, size=3)
    dq = np.concatenate([[1.0], axis_angle / 2])  # small-angle rotation quaternion
    quat = quat_multiply(state.imu_quat_wxyz, dq / np.linalg.norm(dq))
    return dataclasses.replace(
        state,
        joint_pos_rad=state.joint_pos_rad + u(-n.joint_pos_rad, n.joint_pos_rad, size=nj),
        joint_vel_rad_s=state.joint_vel_rad_s + u(-n.joint_vel_rad_s, n.joint_vel_rad_s, size=nj),
        gyro_rad_s=state.gyro_rad_s + u(-n.gyro_rad_s, n.gyro_rad_s, size=3),
        imu_quat_wxyz=quat,
    )


def sample_push(cfg: RandomizationConfig, step: int, control_dt_s: float,
                rng: np.random.Generator) -> np.ndarray | None:
    """A horizontal world-frame velocity change on push steps, else None."""
    if not cfg.enabled or cfg.push_interval_s <= 0:
        return None
    every = max(1, int(round(cfg.push_interval_s / control_dt_s)))
    if step == 0 or step % every:
        return None
    return np.array([*rng.uniform(-cfg.push_vel_m_s, cfg.push_vel_m_s, size=2), 0.0])


def sample_initial_pose(cfg: RandomizationConfig, spec: RobotSpec,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(joint angles within limits, trunk quaternion wxyz with a random heading)."""
    q = spec.default_pose_rad.copy()
    yaw = 0.0
    if cfg.enabled:
        q = q + rng.uniform(-cfg.init_joint_noise_rad, cfg.init_joint_noise_rad, size=q.shape)
        if cfg.init_yaw:
            yaw = rng.uniform(-np.pi, np.pi)
    q = np.clip(q, spec.lower_rad, spec.upper_rad)
    return q, np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ])

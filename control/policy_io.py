"""Policy I/O: the ONE place that turns robot state into an observation and an action into
joint commands. Simulation and hardware both use it; the exported bundle records its layout.

Observation (float32, in this order; value = scale * quantity):
    projected_gravity  3   1             gravity direction in the trunk frame (IMU quaternion)
    gyro               3   rad/s         trunk angular velocity, body frame
    joint_pos          n   rad           joint position minus the default pose
    joint_vel          n   rad/s         joint velocity
    last_action        n   1             previous policy action, in [-1, 1]
    command            3   m/s, m/s, rad/s   velocity command (vx, vy, yaw rate)

Action: a in [-1, 1]^n  ->  joint target = default pose + action_scale * a, clipped to limits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gaitforge.robots.spec import RobotSpec
from gaitforge.robots.types import CommandMode, JointCommand, RobotState


@dataclass(frozen=True)
class ObservationConfig:
    gyro_scale: float = 0.25
    joint_pos_scale: float = 1.0
    joint_vel_scale: float = 0.05
    command_scale: tuple[float, float, float] = (2.0, 2.0, 0.25)


@dataclass(frozen=True)
class ActionConfig:
    scale_rad: float = 0.25  # joint target offset at |action| = 1

    def __post_init__(self):
        if not self.scale_rad > 0:
            raise ValueError("scale_rad must be > 0")


def projected_gravity(quat_wxyz: np.ndarray) -> np.ndarray:
    """World gravity direction (0, 0, -1) expressed in the body frame: R(q)^T @ [0, 0, -1]."""
    w, x, y, z = quat_wxyz
    # third row of R, negated (R^T e_z = third row of R as a column)
    return -np.array(
        [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)]
    )


class ObservationBuilder:
    """Builds the policy observation from a RobotState. Stateless apart from configuration."""

    def __init__(self, spec: RobotSpec, config: ObservationConfig = ObservationConfig()):
        self.spec = spec
        self.config = config
        n = spec.n_joints
        c = config
        self._terms = (
            ("projected_gravity", 3, "1", (1.0,) * 3),
            ("gyro", 3, "rad/s", (c.gyro_scale,) * 3),
            ("joint_pos", n, "rad", (c.joint_pos_scale,) * n),
            ("joint_vel", n, "rad/s", (c.joint_vel_scale,) * n),
            ("last_action", n, "1", (1.0,) * n),
            ("command", 3, "m/s,m/s,rad/s", tuple(c.command_scale)),
        )
        self.size = sum(t[1] for t in self._terms)
        self._scale = np.concatenate([np.asarray(t[3]) for t in self._terms]).astype(np.float32)
        self._default = spec.default_pose_rad

    @property
    def layout(self) -> list[dict]:
        """Names, sizes, units and scales of each slice: what a bundle records."""
        out, start = [], 0
        for name, size, unit, scale in self._terms:
            out.append({"name": name, "start": start, "size": size, "unit": unit,
                        "scale": list(scale)})
            start += size
        return out

    def build(self, state: RobotState, last_action: np.ndarray, command: np.ndarray) -> np.ndarray:
        raw = np.concatenate(
            [
                projected_gravity(state.imu_quat_wxyz),
                state.gyro_rad_s,
                state.joint_pos_rad - self._default,
                state.joint_vel_rad_s,
                last_action,
                command,
            ]
        )
        return (raw * self._scale).astype(np.float32)


class ActionMapper:
    """Maps a policy action in [-1, 1] to a position JointCommand around the default pose."""

    def __init__(self, spec: RobotSpec, config: ActionConfig = ActionConfig()):
        self.spec = spec
        self.config = config
        self.size = spec.n_joints

    @property
    def layout(self) -> dict:
        return {
            "joint_order": list(self.spec.joint_names),
            "default_pose_rad": self.spec.default_pose_rad.tolist(),
            "scale_rad": self.config.scale_rad,
            "clip": [-1.0, 1.0],
        }

    def targets(self, action: np.ndarray) -> np.ndarray:
        a = np.clip(action, -1.0, 1.0)
        q = self.spec.default_pose_rad + self.config.scale_rad * a
        return np.clip(q, self.spec.lower_rad, self.spec.upper_rad)

    def command(self, action: np.ndarray) -> JointCommand:
        return JointCommand(position_rad=self.targets(action), mode=CommandMode.POSITION)

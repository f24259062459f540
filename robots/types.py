"""Core types shared by every body: what a body reads, what it takes, and the Robot protocol.

Units are SI throughout: seconds, radians, metres, newton-metres. Quaternions are (w, x, y, z).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


class CommandMode(enum.Enum):
    """How a body should treat a JointCommand."""

    POSITION = "position"  # servo PD towards position_rad (+ optional feed-forward torque)
    DAMPING = "damping"  # zero stiffness, damping only: the safe state
    OFF = "off"  # no torque at all


@dataclass
class PrivilegedState:
    """Simulator-only truth. Offered to critics; exported policies never see it."""

    base_pos_m: np.ndarray  # (3,) world frame
    base_lin_vel_m_s: np.ndarray  # (3,) body frame
    base_ang_vel_rad_s: np.ndarray  # (3,) body frame
    foot_contact: np.ndarray  # (n_feet,) bool
    friction: float  # ground friction coefficient
    trunk_contact: bool  # trunk or a non-foot link touches the ground
    base_height_m: float = math.nan  # trunk (base link origin) above the ground under it
    collisions: float = math.nan  # how many links other than feet and trunk touch the ground

    @staticmethod
    def size(n_feet: int) -> int:
        """Length of `vector()` for a robot with `n_feet` feet: 1 + 3 + 3 + n_feet + 1."""
        return 8 + n_feet

    def vector(self) -> np.ndarray:
        """Float32: base height (world z), body-frame lin vel, ang vel, foot contacts, friction."""
        return np.concatenate(
            [
                self.base_pos_m[2:3],
                self.base_lin_vel_m_s,
                self.base_ang_vel_rad_s,
                self.foot_contact.astype(np.float64),
                [self.friction],
            ]
        ).astype(np.float32)


@dataclass
class RobotState:
    """What real hardware measures, at one instant."""

    time_s: float
    joint_pos_rad: np.ndarray  # (n_joints,) in the spec's canonical order
    joint_vel_rad_s: np.ndarray  # (n_joints,)
    imu_quat_wxyz: np.ndarray  # (4,) trunk orientation in the world frame
    gyro_rad_s: np.ndarray  # (3,) trunk angular velocity, body frame
    accel_m_s2: np.ndarray  # (3,) specific force, body frame (reads +9.81 z at rest, upright)
    joint_torque_nm: np.ndarray | None = None  # (n_joints,) where measured
    privileged: PrivilegedState | None = field(default=None, repr=False)  # simulation only


@dataclass
class JointCommand:
    """Per-joint command in canonical order. kp/kd default to the spec's gains when None."""

    position_rad: np.ndarray
    mode: CommandMode = CommandMode.POSITION
    kp_nm_per_rad: np.ndarray | None = None
    kd_nm_s_per_rad: np.ndarray | None = None
    torque_ff_nm: np.ndarray | None = None


@runtime_checkable
class Robot(Protocol):
    """A body: simulated or real. Commands are accepted only while active (ros2_control shape)."""

    def configure(self) -> None: ...

    def activate(self) -> None: ...

    def deactivate(self) -> None: ...

    def read(self) -> RobotState: ...

    def write(self, command: JointCommand) -> None: ...


class LifecycleError(RuntimeError):
    """A command was sent to a body that is not active, or a transition was out of order."""


class Lifecycle:
    """The configure -> activate -> deactivate bookkeeping of the `Robot` protocol, for bodies
    with nothing to do at a transition: commands are accepted only while active."""

    _configured = False
    _active = False

    def configure(self) -> None:
        self._configured = True

    def activate(self) -> None:
        if not self._configured:
            raise LifecycleError(f"{type(self).__name__}: activate() before configure()")
        self._active = True

    def deactivate(self) -> None:
        self._active = False

    @property
    def active(self) -> bool:
        return self._active

"""The commanded heading, and the heading hold that steers the policy back to it.

A velocity command's yaw rate, integrated over an episode, is a heading the robot should
have. `HeadingTarget` keeps it: it starts at the trunk's heading on the first tick, turns at
the commanded yaw rate every tick after, and is dragged along so it never lies more than
`cap_rad` from the trunk (a robot pushed around is not asked to unwind a full turn).

`HeadingHold` (off unless `observation.heading_hold.gain_per_s` > 0) corrects the yaw rate
the policy and the gait see by the heading error, as legged_gym's heading commands do:

    yaw shown = yaw commanded - gain_per_s * wrap(heading - target)

A policy (or the open-loop trot alone) that turns a little too fast or too slow for a given
yaw-rate command is steered back: the error settles where the correction cancels the bias,
and the heading no longer drifts. The training env and the deploy tick run the same object,
on the IMU quaternion each of them reads; the bundle records the gain and the cap.
"""

from __future__ import annotations

import numpy as np

from .policy_io import HeadingHoldConfig, heading_rad


def wrap_rad(angle: float) -> float:
    """`angle` wrapped to [-pi, pi)."""
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


class HeadingTarget:
    """The commanded heading of the episode in progress (see the module docstring)."""

    def __init__(self, cap_rad: float, control_dt_s: float):
        self.cap_rad = cap_rad
        self.control_dt_s = control_dt_s
        self.target_rad: float | None = None

    def reset(self) -> None:
        """A new episode: the next tick's heading is the target."""
        self.target_rad = None

    def error(self, quat_wxyz, yaw_rate_cmd: float) -> float:
        """Trunk heading minus the target after this tick (rad, wrapped, within the cap)."""
        now = heading_rad(quat_wxyz)
        if self.target_rad is None:
            self.target_rad = now
        else:
            self.target_rad += float(yaw_rate_cmd) * self.control_dt_s
        error = wrap_rad(now - self.target_rad)
        if abs(error) > self.cap_rad:
            error = float(np.copysign(self.cap_rad, error))
            self.target_rad = now - error
        return error


class HeadingHold:
    """The command the policy and the gait see: the yaw rate corrected by the heading error.

        hold.reset()                                   # episode start (or a re-arm)
        shown = hold.command(command, state.imu_quat_wxyz)  # every tick, after the read
    """

    def __init__(self, config: HeadingHoldConfig, control_dt_s: float):
        self.config = config
        self.target = HeadingTarget(config.cap_rad, control_dt_s)

    def reset(self) -> None:
        self.target.reset()

    def command(self, command, quat_wxyz) -> np.ndarray:
        """(3,) vx, vy, yaw rate: `command` as given while the hold is off, else with the yaw
        rate less gain times the heading error (a new array; `command` is not changed)."""
        out = np.array(command, dtype=np.float64)
        if self.config.enabled:
            out[2] -= self.config.gain_per_s * self.target.error(quat_wxyz, out[2])
        return out

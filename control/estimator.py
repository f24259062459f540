"""Base-velocity estimator: the trunk's linear velocity from what the robot measures, the same
on the robot (the deploy tick) and in simulation (the env's `info["estimate"]`).

A real robot does not measure its trunk velocity; the walk task's reward needs it. A Kalman
filter on the trunk's linear velocity v (world frame, m/s), as in Smith et al. 2022 ("A Walk
in the Park": SAC on a real A1, rewarded with an onboard Kalman-filtered velocity). Every
noise is the same on the three axes, so the covariance stays P = p I (p in (m/s)^2):

  predict (IMU), over dt = time_s - the previous state's time_s:
      v <- v + (R(q_imu) a - g e_z) dt        a: accelerometer specific force, body frame
      p <- p + (accel_noise_m_s2 dt)^2        the accelerometer's error integrated over dt
  update (leg odometry), for each foot f in contact, trunk (body) frame:
      v_f = -(J_f(q) dq + w x p_f)
      (a stance foot stands still; J_f, p_f from the URDF (robots/kinematics.py); w the gyro)
      a foot whose innovation R v_f - v is further than `outlier_gate` standard deviations
      (|R v_f - v|^2 / (p + r) > outlier_gate^2, r = leg_velocity_noise_m_s^2) is not used:
      it slips, or has not landed yet.
      with the n feet used: k = p / (p + r / n),  v <- v + k mean_f (R v_f - v),  p <- (1 - k) p
  relock: when every foot in stance has been gated out for `relock_after_s`, the legs, not
      the prediction, are believed: v <- median_f R v_f, p <- r / n. Waiting for p to grow
      is not enough: an accelerometer bias moves v linearly in time while the gate widens
      as its square root, and a filter that lost its feet never found them again (an IMU
      sampled at points of the stride, as served over serial by the virtual robot, is off by
      0.17 m/s^2 vertically; the estimate ran to 0.7 m/s upward in 20 s).
  output: R^T v (body frame, m/s) and the contact flags of the feet used (in stance by the
  contact rule and inside the gate).

Contact, by default ("kinematic"), is where the measured legs put the feet: a foot stands when
its height in the world frame (URDF kinematics at the measured joint angles, turned by the
IMU's orientation) is within `contact_height_m` of the lowest foot's. Two other rules remain:
"gait", from the gait prior (`GaitConfig`, the open-loop trot in the policy I/O: a foot is in
stance while its leg is not in the swing half of its cycle, phase fraction in [0.5, 1), shrunk
by `stance_margin` at both ends), and "torque", from measured joint torque (|knee torque|
above `contact_torque_fraction` of the knee's torque limit; the knee: the last joint of the
foot's chain). The gait clock is the command's, and the feet follow it late: on servo_dog
(servo lag about 0.1 s of a 0.4 s stride) its stance agreed with the true contact on 51 % of
the ticks of a MuJoCo deploy, no better than chance, where the kinematic rule's agreed on 68 %;
the legs-only estimate (no IMU) walked backwards at -0.07 m/s for a true 0.15. With the
simulator's exact IMU the gate hid it; with the board's IMU over serial it did not (the
estimate: -0.01 m/s with the gait clock, 0.14 with the kinematic rule).
A state without finite IMU readings is skipped (the estimate keeps its last value, and the
next good state predicts over the whole gap); one without finite joint readings (or torques,
for torque contact) skips the update; the estimate never turns non-finite.

The default noises describe a real robot, not the simulator (whose accelerometer is exact):
an accelerometer shaken by footfalls and off by a bias and a tilt, and legs whose stance feet
slip. With them the estimate follows the legs within ~0.1 s and the gate drops the feet
that disagree with the IMU by more than ~0.15 m/s. bench/estimator_bench.py gives the
figure, with the simulator's exact IMU and with a noisy one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from gaitforge.robots.kinematics import (
    LegKinematics,
    cross,
    load_leg_kinematics,
    quat_to_matrix,
)
from gaitforge.robots.spec import RobotSpec
from gaitforge.robots.types import RobotState

from .policy_io import GaitConfig

GRAVITY_M_S2 = 9.81


@dataclass(frozen=True)
class EstimatorConfig:
    """Noise settings (standard deviations, with their units) and the contact rule."""

    accel_noise_m_s2: float = 1.0  # accelerometer error over a tick (vibration, bias, tilt)
    leg_velocity_noise_m_s: float = 0.1  # one stance foot's odometry error, per axis
    initial_velocity_std_m_s: float = 0.1  # at reset: the trunk at rest, give or take this
    outlier_gate: float = 1.5  # a foot further than this many std from the prediction: unused
    relock_after_s: float = 0.2  # every stance foot gated out this long: believe the legs
    contact: Literal["kinematic", "gait", "torque"] = "kinematic"
    contact_height_m: float = 0.005  # kinematic: a foot this close to the lowest one stands
    stance_margin: float = 0.0  # gait: cycle fraction not trusted at touch-down and lift-off
    contact_torque_fraction: float = 0.1  # torque contact: |knee torque| / its torque limit
    gravity_m_s2: float = GRAVITY_M_S2

    def __post_init__(self):
        for name in ("accel_noise_m_s2", "leg_velocity_noise_m_s", "initial_velocity_std_m_s",
                     "outlier_gate", "relock_after_s", "gravity_m_s2"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.contact not in ("kinematic", "gait", "torque"):
            raise ValueError("contact must be 'kinematic', 'gait' or 'torque', got "
                             f"{self.contact!r}")
        if not self.contact_height_m >= 0:
            raise ValueError(f"contact_height_m must be >= 0, got {self.contact_height_m}")
        if not 0 <= self.stance_margin < 0.25:
            raise ValueError(f"stance_margin must be in [0, 0.25), got {self.stance_margin}")
        if not self.contact_torque_fraction > 0:
            raise ValueError("contact_torque_fraction must be > 0")


@dataclass(frozen=True)
class VelocityEstimate:
    """One tick's output: the trunk's linear velocity (body frame, m/s) and which feet the
    estimator counted as standing (n_feet,)."""

    lin_vel_m_s: np.ndarray
    foot_contact: np.ndarray

    def vector(self) -> np.ndarray:
        """Float32 [lin_vel_m_s (3), foot_contact (n_feet) as 0/1]: the env's info["estimate"]."""
        return np.concatenate([self.lin_vel_m_s, self.foot_contact]).astype(np.float32)


class GaitContact:
    """Stance from the gait clock: foot f stands while its leg's phase fraction
    (f_hz t + phase_offset) mod 1 is in [0.5 + margin, 1 - margin]. A leg's phase is that of
    the joints of its chain that the gait lifts; a leg the gait never lifts always stands."""

    def __init__(self, gait: GaitConfig, legs: LegKinematics, margin: float):
        self.gait, self.margin = gait, margin
        offsets, lifted = [], []
        for joints in legs.leg_joints:
            moving = [i for i in joints if gait.swing_amplitude_rad[i] != 0.0]
            lifted.append(bool(moving))
            offsets.append(gait.phase_offset[moving[0]] if moving else 0.0)
        self.offsets, self.lifted = np.array(offsets), np.array(lifted)

    def __call__(self, state: RobotState, rot=None, feet=None) -> np.ndarray:
        frac = np.mod(self.gait.frequency_hz * state.time_s + self.offsets, 1.0)
        stance = (frac >= 0.5 + self.margin) & (frac <= 1.0 - self.margin)
        return stance | ~self.lifted


class KinematicContact:
    """Stance from the measured legs: the feet within `height_m` of the lowest, heights in the
    world frame (the trunk turned by the IMU). A state without an orientation: none."""

    def __init__(self, legs: LegKinematics, height_m: float):
        self.legs, self.height_m = legs, height_m

    def __call__(self, state: RobotState, rot: np.ndarray | None = None,
                 feet: np.ndarray | None = None) -> np.ndarray:
        """`rot` (the IMU's orientation) and `feet` (trunk-frame foot positions) where the
        caller has them already, else from `state`."""
        rot = _orientation(state) if rot is None else rot
        if rot is None:
            return np.zeros(len(self.legs.leg_joints), dtype=bool)
        if feet is None:
            feet, _ = self.legs.foot_motion(state.joint_pos_rad, state.joint_vel_rad_s)
        z = feet @ rot[2]  # world-frame heights relative to the trunk
        return z <= z.min() + self.height_m


class TorqueContact:
    """Stance from measured torque: |knee torque| > fraction x the knee's torque limit."""

    def __init__(self, spec: RobotSpec, legs: LegKinematics, fraction: float):
        self.knees = np.array([joints[-1] for joints in legs.leg_joints])
        self.threshold_nm = fraction * spec.torque_limit_nm[self.knees]

    def __call__(self, state: RobotState, rot=None, feet=None) -> np.ndarray:
        tau = state.joint_torque_nm
        if tau is None:
            return np.zeros(len(self.knees), dtype=bool)
        tau = np.asarray(tau, dtype=np.float64)[self.knees]
        return np.isfinite(tau) & (np.abs(tau) > self.threshold_nm)


class VelocityEstimator:
    """The Kalman filter of the module docstring, one per body.

        est = VelocityEstimator(spec, gait)        # gait: the action layout's GaitConfig
        est.reset()                                # at the start of an episode, at rest
        e = est.update(state)                      # every tick: VelocityEstimate
    """

    def __init__(self, spec: RobotSpec, gait: GaitConfig | None = None,
                 config: EstimatorConfig = EstimatorConfig(),
                 legs: LegKinematics | None = None):
        gait = gait or GaitConfig()
        gait.check(spec)
        self.spec, self.config = spec, config
        self.legs = legs or load_leg_kinematics(spec)
        self.n_feet = len(spec.feet)
        if config.contact == "gait" and not gait.enabled:
            raise ValueError("contact 'gait' needs a gait (GaitConfig.frequency_hz > 0)")
        self.contact_source = config.contact
        self.contact = {
            "kinematic": lambda: KinematicContact(self.legs, config.contact_height_m),
            "gait": lambda: GaitContact(gait, self.legs, config.stance_margin),
            "torque": lambda: TorqueContact(spec, self.legs, config.contact_torque_fraction),
        }[config.contact]()
        self.reset()

    def reset(self, lin_vel_world_m_s=(0.0, 0.0, 0.0)) -> None:
        """Start again from a known trunk velocity (world frame; default at rest)."""
        self.v_world = np.array(lin_vel_world_m_s, dtype=np.float64)
        self.var = self.config.initial_velocity_std_m_s ** 2  # P = var I, (m/s)^2
        self.last_time_s: float | None = None
        self.gated_since_s: float | None = None  # first tick of a run with every foot gated
        self.estimate = VelocityEstimate(np.zeros(3), np.zeros(self.n_feet, dtype=bool))

    def update(self, state: RobotState) -> VelocityEstimate:
        """Fold one state in: predict with its IMU, correct with its stance legs."""
        rot = _orientation(state)
        if rot is not None and np.isfinite(state.time_s):
            self._predict(state, rot)
            self.last_time_s = float(state.time_s)
        contact = np.zeros(self.n_feet, dtype=bool)
        joints = float(np.sum(state.joint_pos_rad)) + float(np.sum(state.joint_vel_rad_s))
        if rot is not None and math.isfinite(joints):
            # one pass of the leg kinematics serves the contact rule and the odometry
            feet, rel = self.legs.foot_motion(state.joint_pos_rad, state.joint_vel_rad_s)
            contact = np.asarray(self.contact(state, rot, feet), dtype=bool)
            if contact.any():
                z_world = self._leg_velocities(state, feet, rel)[contact] @ rot.T
                stance = contact
                contact = self._correct(z_world, contact)
                contact = self._relock(z_world, stance, contact, float(state.time_s))
        # without an orientation the body-frame velocity is unknown: keep the last one
        body = self.estimate.lin_vel_m_s if rot is None else rot.T @ self.v_world
        self.estimate = VelocityEstimate(body, contact)
        return self.estimate

    def _predict(self, state: RobotState, rot: np.ndarray) -> None:
        if self.last_time_s is None:
            return
        dt = float(state.time_s) - self.last_time_s
        if not dt > 0:
            return
        accel_world = rot @ np.asarray(state.accel_m_s2, dtype=np.float64)
        accel_world[2] -= self.config.gravity_m_s2
        self.v_world = self.v_world + accel_world * dt
        self.var = self.var + (self.config.accel_noise_m_s2 * dt) ** 2

    def leg_velocities(self, state: RobotState) -> np.ndarray:
        """(n_feet, 3) trunk velocity each foot implies if it stands still, body frame, m/s:
        -(J(q) dq + gyro x p)."""
        feet, rel = self.legs.foot_motion(state.joint_pos_rad, state.joint_vel_rad_s)
        return self._leg_velocities(state, feet, rel)

    @staticmethod
    def _leg_velocities(state: RobotState, feet: np.ndarray, rel: np.ndarray) -> np.ndarray:
        return -(rel + cross(np.asarray(state.gyro_rad_s, dtype=np.float64), feet))

    def _correct(self, z_world: np.ndarray, contact: np.ndarray) -> np.ndarray:
        """Kalman update with the stance feet's velocities (n_contact, 3), world frame; returns
        the contact flags of the feet used (those inside the outlier gate)."""
        r = self.config.leg_velocity_noise_m_s ** 2
        innovation = z_world - self.v_world
        d2 = np.einsum("ij,ij->i", innovation, innovation) / (self.var + r)  # Mahalanobis^2
        inside = d2 <= self.config.outlier_gate ** 2
        n_used = int(np.count_nonzero(inside))
        if n_used < len(inside):
            contact = contact.copy()
            contact[np.flatnonzero(contact)[~inside]] = False
            innovation = innovation[inside]
        if n_used:
            gain = self.var / (self.var + r / n_used)
            self.v_world = self.v_world + gain * innovation.mean(axis=0)
            self.var = (1.0 - gain) * self.var
        return contact

    def _relock(self, z_world: np.ndarray, stance: np.ndarray, used: np.ndarray,
                time_s: float) -> np.ndarray:
        """After `relock_after_s` of stance feet all gated out, restart from their median
        velocity (world frame) at their variance; returns the contact flags of the feet used."""
        if used.any() or not math.isfinite(time_s):
            self.gated_since_s = None
            return used
        if self.gated_since_s is None:
            self.gated_since_s = time_s
        if time_s - self.gated_since_s < self.config.relock_after_s:
            return used
        self.v_world = np.median(z_world, axis=0)
        self.var = self.config.leg_velocity_noise_m_s ** 2 / len(z_world)
        self.gated_since_s = None
        return stance


def _orientation(state: RobotState) -> np.ndarray | None:
    """The trunk's rotation (body -> world) from a state with finite IMU readings, else None."""
    quat = np.asarray(state.imu_quat_wxyz, dtype=np.float64)
    norm2 = float(quat @ quat)
    # one scalar test: a NaN or an infinity anywhere makes the sum non-finite
    total = norm2 + float(np.sum(state.accel_m_s2)) + float(np.sum(state.gyro_rad_s))
    if not (math.isfinite(total) and norm2 > 0.25):
        return None
    return quat_to_matrix(quat / math.sqrt(norm2))

"""The trunk-velocity Kalman filter (control/estimator.py) against numbers worked out by hand:
a trunk at rest, a constant velocity with the stance feet fixed in the world, pure IMU
prediction, the gyro and Jacobian terms of leg odometry, the outlier gate and its recovery,
both contact rules, and states with non-finite readings.

servo_dog at q = 0: the FR foot is at (0.08, -0.08, -0.16) m in the trunk frame, FL at
(0.08, 0.08, -0.16); the thigh joint's Jacobian column is (-0.16, 0, 0) m/rad. Defaults:
p0 = 0.1^2, accelerometer 1 m/s^2 over 0.02 s ticks (p grows by 0.02^2 = 4e-4 a tick), leg
noise r = 0.1^2, gate 2 standard deviations.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gaitforge.control.estimator import EstimatorConfig, VelocityEstimate, VelocityEstimator
from gaitforge.control.policy_io import GaitConfig
from gaitforge.robots.spec import load_robot_spec
from gaitforge.robots.types import RobotState

SPEC = load_robot_spec("servo_dog")
# servo_dog's trot (configs/robots/servo_dog.yaml): FR+RL lift in [0, 0.5) of the cycle at
# t = 0, FL+RR half a cycle later
GAIT = GaitConfig(frequency_hz=2.5, phase_offset=(0, 0, 0, .5, .5, .5, .5, .5, .5, 0, 0, 0),
                  swing_amplitude_rad=(0, .3, -.6) * 4, stride_rad_per_m_s=(0, 1.0, 0) * 4)
DT = 0.02
P0, Q, R = 0.01, (1.0 * DT) ** 2, 0.01
YAW90 = np.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)])  # body x -> world y
# the hand-worked numbers below use the gait clock's contact and a 2-sigma gate
GAIT_RULE = EstimatorConfig(contact="gait", outlier_gate=2.0)
ROT90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def state(t, *, q=None, dq=None, quat=(1.0, 0, 0, 0), gyro=(0, 0, 0), accel=None,
          torque=None) -> RobotState:
    quat = np.asarray(quat, float)
    if accel is None:  # at rest: the specific force is gravity's reaction, world z in the body
        w, x, y, z = quat
        accel = 9.81 * np.array([2 * (x * z - w * y), 2 * (y * z + w * x),
                                 1 - 2 * (x * x + y * y)])
    return RobotState(
        time_s=t, joint_pos_rad=np.zeros(12) if q is None else np.asarray(q, float),
        joint_vel_rad_s=np.zeros(12) if dq is None else np.asarray(dq, float),
        imu_quat_wxyz=quat, gyro_rad_s=np.asarray(gyro, float),
        accel_m_s2=np.asarray(accel, float),
        joint_torque_nm=torque)


def kalman_step(p, n_feet):
    """(gain, posterior variance) of one update with n_feet feet, from prior variance p."""
    k = p / (p + R / n_feet)
    return k, (1 - k) * p


def test_kinematic_contact_by_hand():
    """The default rule: at q = 0 the four feet are level (0.16 m below the trunk) and all
    stand; FR's knee bent 0.5 rad lifts FR; a trunk rolled 0.1 rad about x lowers the right
    feet (y = -0.08) by 0.08 sin 0.1 x 2 = 16 mm against the left ones: only they stand."""
    est = VelocityEstimator(SPEC, GAIT)
    assert est.contact_source == "kinematic"
    np.testing.assert_array_equal(est.contact(state(0.0)), [True] * 4)
    q = np.zeros(12)
    q[2] = 0.5
    np.testing.assert_array_equal(est.contact(state(0.0, q=q)), [False, True, True, True])
    roll = (np.cos(0.05), np.sin(0.05), 0.0, 0.0)
    np.testing.assert_array_equal(est.contact(state(0.0, quat=roll)),
                                  [True, False, True, False])
    nan = state(0.0, quat=(np.nan, 0, 0, 0))
    np.testing.assert_array_equal(est.contact(nan), [False] * 4)


def test_gait_contact_by_hand():
    est = VelocityEstimator(SPEC, GAIT, GAIT_RULE)
    assert est.contact_source == "gait"
    np.testing.assert_array_equal(est.contact(state(0.0)), [False, True, True, False])
    np.testing.assert_array_equal(est.contact(state(0.1)), [False, True, True, False])  # 0.25
    np.testing.assert_array_equal(est.contact(state(0.2)), [True, False, False, True])  # 0.5
    np.testing.assert_array_equal(est.contact(state(0.39)), [True, False, False, True])
    margin = VelocityEstimator(SPEC, GAIT, EstimatorConfig(contact="gait", stance_margin=0.1))
    # t = 0.02: FL's fraction is 0.55, inside the margin after touch-down
    np.testing.assert_array_equal(margin.contact(state(0.02)), [False] * 4)
    np.testing.assert_array_equal(margin.contact(state(0.06)), [False, True, True, False])


def test_a_trunk_at_rest_stays_at_rest_and_its_variance_follows_the_hand_worked_values():
    est = VelocityEstimator(SPEC, GAIT, GAIT_RULE)
    p = P0
    for i in range(4):
        if i:
            p += Q  # prediction
        _, p = kalman_step(p, 2)  # two stance feet, both saying 0
        e = est.update(state(i * DT))
        np.testing.assert_array_equal(e.lin_vel_m_s, 0.0)
        np.testing.assert_array_equal(e.foot_contact, [False, True, True, False])
        assert est.var == pytest.approx(p, rel=1e-12)
    est.reset()
    est.update(state(0.0))
    est.update(state(DT))
    assert est.var == pytest.approx((0.01 / 3 + 4e-4) * 0.005 / (0.01 / 3 + 4e-4 + 0.005))


def feet_fixed_rates(v_body, gyro=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Joint rates that keep every foot still in the world while the trunk, in the default
    pose, moves at v_body and turns at gyro: J_leg dq_leg = -(v_body + gyro x p)."""
    q, gyro = SPEC.default_pose_rad, np.asarray(gyro)
    est = VelocityEstimator(SPEC)
    feet, jac = est.legs.forward(q)
    dq = np.zeros(12)
    for f, joints in enumerate(est.legs.leg_joints):
        leg = list(joints)
        dq[leg] = np.linalg.solve(jac[f][:, leg], -(v_body + np.cross(gyro, feet[f])))
    return dq


def test_a_constant_velocity_with_feet_fixed_in_the_world_is_found_by_hand_worked_gains():
    v_world = np.array([0.3, -0.1, 0.05])
    v_body = ROT90.T @ v_world  # yawed 90 degrees: (-0.1, -0.3, 0.05)
    q = SPEC.default_pose_rad
    dq = feet_fixed_rates(v_body)
    # |v| = 0.32 m/s is beyond the default gate from a start at rest (0.32^2 / 0.02 > 2^2)
    est = VelocityEstimator(SPEC, GAIT, EstimatorConfig(contact="gait", outlier_gate=10.0))
    e = est.update(state(0.0, q=q, dq=dq, quat=YAW90))
    k0, p = kalman_step(P0, 2)
    assert k0 == pytest.approx(2 / 3)
    np.testing.assert_allclose(e.lin_vel_m_s, k0 * v_body, atol=1e-12)
    e = est.update(state(DT, q=q, dq=dq, quat=YAW90))  # constant velocity: the IMU reads g
    k1, _ = kalman_step(p + Q, 2)
    np.testing.assert_allclose(e.lin_vel_m_s, (k0 + k1 * (1 - k0)) * v_body, atol=1e-12)
    for i in range(2, 100):
        e = est.update(state(i * DT, q=q, dq=dq, quat=YAW90))
    np.testing.assert_allclose(e.lin_vel_m_s, v_body, atol=1e-9)
    np.testing.assert_allclose(est.v_world, v_world, atol=1e-9)


def test_a_turning_trunk_with_feet_fixed_in_the_world_stands_still():
    gyro = np.array([0.2, -0.1, 1.0])
    dq = feet_fixed_rates(np.zeros(3), gyro=gyro)
    est = VelocityEstimator(SPEC, GAIT, GAIT_RULE)
    for i in range(5):
        e = est.update(state(i * DT, q=SPEC.default_pose_rad, dq=dq, gyro=gyro))
        np.testing.assert_allclose(e.lin_vel_m_s, 0.0, atol=1e-14)


def test_leg_odometry_terms_by_hand():
    est = VelocityEstimator(SPEC, GAIT, GAIT_RULE)
    # yaw rate 1 rad/s, legs still: v = -(w x p); FL at (0.08, 0.08, -0.16) -> (0.08, -0.08, 0)
    v = est.leg_velocities(state(0.0, gyro=(0, 0, 1.0)))
    np.testing.assert_allclose(v[1], [0.08, -0.08, 0.0], atol=1e-15)
    np.testing.assert_allclose(v[0], [-0.08, -0.08, 0.0], atol=1e-15)  # FR (0.08, -0.08)
    # FR thigh at 1 rad/s: the foot moves at (-0.16, 0, 0), so the trunk at (0.16, 0, 0)
    dq = np.zeros(12)
    dq[1] = 1.0
    v = est.leg_velocities(state(0.0, dq=dq))
    np.testing.assert_allclose(v[0], [0.16, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(v[1:], 0.0, atol=1e-15)


def test_pure_imu_prediction_integrates_the_world_frame_acceleration():
    est = VelocityEstimator(SPEC, GAIT, EstimatorConfig(contact="torque"))  # no torques: no feet
    accel = np.array([0.5, 0.0, 9.81])  # body x, yawed to world y
    for i in range(11):
        e = est.update(state(i * DT, quat=YAW90, accel=accel))
    np.testing.assert_allclose(est.v_world, [0.0, 0.1, 0.0], atol=1e-12)  # 10 x 0.5 x 0.02
    np.testing.assert_allclose(e.lin_vel_m_s, [0.1, 0.0, 0.0], atol=1e-12)
    assert not e.foot_contact.any()
    assert est.var == pytest.approx(P0 + 10 * Q)
    # a resting trunk rolled by 0.3 rad reads gravity in its own frame: no velocity
    roll = np.array([np.cos(0.15), np.sin(0.15), 0.0, 0.0])
    est.reset()
    for i in range(20):
        e = est.update(state(i * DT, quat=roll))
    np.testing.assert_allclose(e.lin_vel_m_s, 0.0, atol=1e-12)


def test_a_slipping_foot_is_gated_out_and_the_rest_are_used():
    dq = np.zeros(12)
    dq[7] = 6.25  # RR thigh: RR implies (1, 0, 0) m/s; FL says 0
    est = VelocityEstimator(SPEC, GAIT, GAIT_RULE)
    e = est.update(state(0.0, dq=dq))
    # RR: 1^2 / (0.01 + 0.01) = 50 > 2^2; FL alone: k = 0.01 / 0.02
    np.testing.assert_array_equal(e.foot_contact, [False, True, False, False])
    np.testing.assert_array_equal(e.lin_vel_m_s, 0.0)
    assert est.var == pytest.approx(0.005)
    wide = VelocityEstimator(SPEC, GAIT, EstimatorConfig(contact="gait", outlier_gate=10.0))
    e = wide.update(state(0.0, dq=dq))
    np.testing.assert_array_equal(e.foot_contact, [False, True, True, False])
    np.testing.assert_allclose(e.lin_vel_m_s, [2 / 3 * 0.5, 0, 0], atol=1e-12)  # k = 2/3


def test_a_filter_that_gated_out_its_feet_relocks_onto_them():
    """Started 0.9 m/s off: 0.81 / (p + 0.01) > 4 gates both stance feet out; after
    relock_after_s = 0.2 s of that (ticks 0-9 ignored) tick 10 restarts from the feet's median
    (0) at their variance r / 2, and tick 11 is an ordinary update from there. Waiting for p
    to grow alone would have taken until tick 457."""
    est = VelocityEstimator(SPEC, GAIT, GAIT_RULE)
    est.reset((0.9, 0.0, 0.0))
    used = [est.update(state(i * DT)).foot_contact.any() for i in range(10)]
    assert not any(used) and est.v_world[0] == 0.9
    e = est.update(state(10 * DT))
    np.testing.assert_array_equal(e.foot_contact, [True, False, False, True])
    np.testing.assert_array_equal(est.v_world, 0.0)
    assert est.var == pytest.approx(R / 2)
    k, p = kalman_step(R / 2 + Q, 2)
    est.update(state(11 * DT))
    assert est.var == pytest.approx(p, rel=1e-12)
    slow = VelocityEstimator(SPEC, GAIT, dataclasses.replace(GAIT_RULE, relock_after_s=100.0))
    slow.reset((0.9, 0.0, 0.0))
    used = [slow.update(state(i * DT)).foot_contact.any() for i in range(460)]
    assert not any(used[:457]) and all(used[457:])


def test_an_accelerometer_bias_does_not_run_away_with_the_estimate():
    """A trunk at rest whose accelerometer reads 0.5 m/s^2 too high, started 0.5 m/s off:
    without relocking the gate never opens again (the bias moves v by 0.01 m/s a tick, p
    widens the gate by its square root) and v runs past 5 m/s in 10 s; with it the estimate
    stays within bias x dt / k of the truth (k about 0.2 in steady state, so 0.05 m/s)."""
    biased = 9.81 + 0.5
    runs = {}
    for relock in (0.2, 1e6):
        est = VelocityEstimator(SPEC, GAIT, dataclasses.replace(GAIT_RULE, relock_after_s=relock))
        est.reset((0.0, 0.0, 0.5))
        for i in range(500):
            est.update(state(i * DT, accel=(0.0, 0.0, biased)))
        runs[relock] = est.v_world[2]
    assert abs(runs[0.2]) < 0.06
    assert runs[1e6] > 5.0


def test_torque_contact_by_hand():
    est = VelocityEstimator(SPEC, None, EstimatorConfig(contact="torque",
                                                        contact_torque_fraction=0.1))
    assert est.contact_source == "torque"
    tau = np.zeros(12)
    tau[[2, 5, 8, 11]] = [0.2, 0.1, -0.3, np.nan]  # knees; threshold 0.1 x 1.5 N m
    tau[1] = 1.0  # a thigh: not a contact sign
    np.testing.assert_array_equal(est.contact(state(0.0, torque=tau)), [True, False, True, False])
    np.testing.assert_array_equal(est.contact(state(0.0)), [False] * 4)  # not measured


def test_non_finite_readings_never_reach_the_estimate():
    est = VelocityEstimator(SPEC, GAIT, EstimatorConfig(contact="torque"))
    accel = np.array([0.5, 0.0, 9.81])
    est.update(state(0.0, accel=accel))
    before = est.update(state(DT, accel=accel)).lin_vel_m_s.copy()
    e = est.update(state(2 * DT, accel=[np.nan, 0, 9.81]))
    np.testing.assert_array_equal(e.lin_vel_m_s, before)  # kept, not predicted
    e = est.update(state(3 * DT, quat=[np.inf, 0, 0, 0], accel=accel))
    np.testing.assert_array_equal(e.lin_vel_m_s, before)
    e = est.update(state(4 * DT, accel=accel))  # predicts over the 3 ticks since the last
    np.testing.assert_allclose(e.lin_vel_m_s, [0.5 * 4 * DT, 0, 0], atol=1e-12)
    gait = VelocityEstimator(SPEC, GAIT, GAIT_RULE)
    e = gait.update(state(0.0, dq=np.full(12, np.nan)))
    assert np.isfinite(e.lin_vel_m_s).all() and not e.foot_contact.any()


def test_vector_layout_and_config_refusals():
    e = VelocityEstimate(np.array([0.1, -0.2, 0.3]), np.array([True, False, True, False]))
    v = e.vector()
    assert v.dtype == np.float32
    np.testing.assert_array_equal(v, np.float32([0.1, -0.2, 0.3, 1, 0, 1, 0]))
    for bad in ({"accel_noise_m_s2": 0.0}, {"leg_velocity_noise_m_s": -1.0},
                {"outlier_gate": 0.0}, {"contact": "feel"}, {"stance_margin": 0.25},
                {"contact_torque_fraction": 0.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            EstimatorConfig(**bad)
    with pytest.raises(ValueError, match="needs a gait"):
        VelocityEstimator(SPEC, None, EstimatorConfig(contact="gait"))


@pytest.mark.parametrize("robot", ["a1", "mini_cheetah"])
def test_robots_without_a_gait_stand_still_on_their_knee_torques(robot):
    spec = load_robot_spec(robot)
    est = VelocityEstimator(spec)
    tau = np.zeros(12)
    tau[[2, 5, 8, 11]] = 0.5 * spec.torque_limit_nm[2]  # every knee loaded: all four stand
    for i in range(5):
        e = est.update(RobotState(i * DT, spec.default_pose_rad, np.zeros(12),
                                  np.array([1.0, 0, 0, 0]), np.zeros(3), np.array([0, 0, 9.81]),
                                  joint_torque_nm=tau))
        np.testing.assert_array_equal(e.foot_contact, [True] * 4)
        np.testing.assert_array_equal(e.lin_vel_m_s, 0.0)
    assert est.var < P0 / 4  # four feet a tick

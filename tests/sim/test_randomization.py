"""Domain randomisation: pure functions of (params, rng). Same seed, same draw; values inside the
configured ranges; disabled means defaults and no noise; pushes only on push steps."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gaitforge.robots.configio import ConfigError, from_dict
from gaitforge.robots.types import RobotState
from gaitforge.sim.dynamics import DynamicsParams
from gaitforge.sim.randomization import (
    RandomizationConfig,
    add_sensor_noise,
    quat_multiply,
    sample_dynamics,
    sample_initial_pose,
    sample_push,
)

ROBOTS = ("servo_dog", "a1", "mini_cheetah", "minitaur")
CFG = RandomizationConfig()
OFF = RandomizationConfig(enabled=False)


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("name", ROBOTS)
def test_same_seed_same_dynamics_different_seed_different(robot_spec, name):
    spec = robot_spec(name)
    a = sample_dynamics(CFG, spec, DynamicsParams(), rng(5))
    b = sample_dynamics(CFG, spec, DynamicsParams(), rng(5))
    c = sample_dynamics(CFG, spec, DynamicsParams(), rng(6))
    assert a == b
    assert a != c


@pytest.mark.parametrize("name", ROBOTS)
def test_dynamics_within_the_configured_ranges(robot_spec, name):
    """Nominal friction 0.8, latency 2 ms, trunk +0.1 kg, kp scale 1.2 on every joint; 300
    draws from one generator."""
    spec = robot_spec(name)
    g = rng(1)
    nominal = DynamicsParams(foot_friction=0.8, latency_s=0.002, trunk_mass_delta_kg=0.1,
                             kp_scale=tuple([1.2] * spec.n_joints))
    draws = [sample_dynamics(CFG, spec, nominal, g) for _ in range(300)]

    def values(field):
        return np.array([getattr(d, field) for d in draws])

    def inside(x, lo, hi):
        return np.all(x >= lo) and np.all(x <= hi)

    assert inside(values("foot_friction"), 0.8 * 0.6, 0.8 * 1.2)  # nominal * U(0.6, 1.2)
    m = spec.nominal_mass_kg
    # nominal + spec mass * U(-0.05, 0.15)
    assert inside(values("trunk_mass_delta_kg"), 0.1 - 0.05 * m, 0.1 + 0.15 * m)
    assert inside(values("com_offset_m"), -0.005, 0.005)  # each axis
    for field in ("motor_strength", "kd_scale"):
        assert inside(values(field), 0.9, 1.1)
    assert inside(values("kp_scale"), 1.2 * 0.9, 1.2 * 1.1)  # per joint, one factor
    assert all(len(set(d.kp_scale)) == 1 for d in draws)
    assert inside(values("latency_s"), 0.002, 0.012)  # nominal + U(0, 0.01)
    # and the draws really spread over the ranges (not stuck at one value)
    assert np.ptp(values("foot_friction")) > 0.8 * 0.5
    assert np.ptp(values("com_offset_m")) > 0.008


def test_narrow_ranges_are_honoured(robot_spec):
    spec = robot_spec("servo_dog")
    cfg = RandomizationConfig(friction=(1.0, 1.0), motor_strength=(0.5, 0.5),
                              latency_s=(0.004, 0.004), added_mass_frac=(0.0, 0.0))
    d = sample_dynamics(cfg, spec, DynamicsParams(foot_friction=0.7, latency_s=0.001), rng())
    assert d.foot_friction == 0.7 and d.motor_strength == 0.5 and d.trunk_mass_delta_kg == 0.0
    assert d.latency_s == pytest.approx(0.005)


def test_disabled_gives_defaults_and_uses_no_randomness(robot_spec):
    spec = robot_spec("servo_dog")
    g = rng(2)
    before = g.bit_generator.state
    nominal = DynamicsParams(foot_friction=0.9, latency_s=0.004)
    assert sample_dynamics(OFF, spec, nominal, g) == nominal
    state = noisy_input(spec)
    assert add_sensor_noise(OFF, state, g) is state
    q, quat = sample_initial_pose(OFF, spec, g)
    np.testing.assert_array_equal(q, spec.default_pose_rad)
    np.testing.assert_array_equal(quat, [1.0, 0.0, 0.0, 0.0])
    off_pushing = RandomizationConfig(enabled=False, push_interval_s=0.1)
    assert all(sample_push(off_pushing, s, 0.02, g) is None for s in range(20))
    assert g.bit_generator.state == before  # nothing drawn


def noisy_input(spec) -> RobotState:
    return RobotState(time_s=0.0, joint_pos_rad=spec.default_pose_rad.copy(),
                      joint_vel_rad_s=np.linspace(-1, 1, spec.n_joints),
                      imu_quat_wxyz=np.array([np.cos(0.2), 0.0, np.sin(0.2), 0.0]),
                      gyro_rad_s=np.array([0.1, 0.2, 0.3]), accel_m_s2=np.array([0, 0, 9.81]))


def test_sensor_noise_bounded_and_input_untouched(robot_spec):
    spec = robot_spec("servo_dog")
    state = noisy_input(spec)
    original = dataclasses.replace(state, joint_pos_rad=state.joint_pos_rad.copy(),
                                   joint_vel_rad_s=state.joint_vel_rad_s.copy(),
                                   imu_quat_wxyz=state.imu_quat_wxyz.copy(),
                                   gyro_rad_s=state.gyro_rad_s.copy())
    n = CFG.noise
    g = rng(4)
    seen_q = []
    for _ in range(100):
        noisy = add_sensor_noise(CFG, state, g)
        dq = noisy.joint_pos_rad - state.joint_pos_rad
        seen_q.append(dq)
        assert np.all(np.abs(dq) <= n.joint_pos_rad)
        assert np.all(np.abs(noisy.joint_vel_rad_s - state.joint_vel_rad_s) <= n.joint_vel_rad_s)
        assert np.all(np.abs(noisy.gyro_rad_s - state.gyro_rad_s) <= n.gyro_rad_s)
        assert np.linalg.norm(noisy.imu_quat_wxyz) == pytest.approx(1.0, abs=1e-12)
        # rotation between true and noisy orientation: 2 acos |<q, q'>|; the noise rotation is
        # axis-angle with each component within ±0.02 rad, so at most sqrt(3) * 0.02 rad
        angle = 2 * np.arccos(min(1.0, abs(np.dot(noisy.imu_quat_wxyz, state.imu_quat_wxyz))))
        assert angle <= np.sqrt(3) * n.imu_tilt_rad + 1e-9
    assert np.ptp(np.array(seen_q)) > n.joint_pos_rad  # noise spreads over the band
    for f in ("joint_pos_rad", "joint_vel_rad_s", "imu_quat_wxyz", "gyro_rad_s"):
        np.testing.assert_array_equal(getattr(state, f), getattr(original, f))


def test_sensor_noise_same_seed_same_noise(robot_spec):
    spec = robot_spec("a1")
    a = add_sensor_noise(CFG, noisy_input(spec), rng(9))
    b = add_sensor_noise(CFG, noisy_input(spec), rng(9))
    np.testing.assert_array_equal(a.joint_pos_rad, b.joint_pos_rad)
    np.testing.assert_array_equal(a.imu_quat_wxyz, b.imu_quat_wxyz)


def test_pushes_only_every_push_interval():
    """push_interval 0.1 s at control_dt 0.02 s: every 5th step (5, 10, 15, 20), never step 0."""
    cfg = RandomizationConfig(push_interval_s=0.1, push_vel_m_s=0.3)
    g = rng(7)
    pushes = {s: sample_push(cfg, s, 0.02, g) for s in range(21)}
    assert [s for s, p in pushes.items() if p is not None] == [5, 10, 15, 20]
    for s in (5, 10, 15, 20):
        p = pushes[s]
        assert p.shape == (3,) and p[2] == 0.0  # horizontal
        assert np.all(np.abs(p[:2]) <= 0.3)
    assert not np.array_equal(pushes[5], pushes[10])
    # no interval: no pushes
    assert all(sample_push(RandomizationConfig(), s, 0.02, g) is None for s in range(50))


@pytest.mark.parametrize("name", ROBOTS)
def test_initial_pose_within_limits_and_noise(robot_spec, name):
    spec = robot_spec(name)
    g = rng(3)
    yaws = []
    for _ in range(100):
        q, quat = sample_initial_pose(CFG, spec, g)
        assert np.all(q >= spec.lower_rad) and np.all(q <= spec.upper_rad)
        assert np.all(np.abs(q - spec.default_pose_rad) <= CFG.init_joint_noise_rad + 1e-12)
        assert quat[1] == 0.0 and quat[2] == 0.0  # heading only
        assert np.linalg.norm(quat) == pytest.approx(1.0)
        yaws.append(2 * np.arctan2(quat[3], quat[0]))
    assert np.ptp(yaws) > np.pi  # headings spread over the circle
    # a huge noise is clipped to the limits, and some joints land on them
    wide = RandomizationConfig(init_joint_noise_rad=5.0, init_yaw=False)
    qs = np.array([sample_initial_pose(wide, spec, g)[0] for _ in range(20)])
    assert np.all(qs >= spec.lower_rad) and np.all(qs <= spec.upper_rad)
    assert np.any(qs == spec.lower_rad) and np.any(qs == spec.upper_rad)
    np.testing.assert_array_equal(sample_initial_pose(wide, spec, g)[1], [1.0, 0.0, 0.0, 0.0])


def test_same_seed_same_initial_pose(robot_spec):
    spec = robot_spec("servo_dog")
    a, b = sample_initial_pose(CFG, spec, rng(11)), sample_initial_pose(CFG, spec, rng(11))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_quat_multiply_composes_rotations():
    # two 45° turns about z make one 90° turn: (cos 45°, 0, 0, sin 45°)
    h = np.array([np.cos(np.pi / 8), 0.0, 0.0, np.sin(np.pi / 8)])
    np.testing.assert_allclose(quat_multiply(h, h), [np.sqrt(0.5), 0, 0, np.sqrt(0.5)])
    # i * j = k
    np.testing.assert_allclose(quat_multiply(np.array([0, 1.0, 0, 0]), np.array([0, 0, 1.0, 0])),
                               [0, 0, 0, 1.0])


def test_bad_ranges_are_rejected_by_name():
    with pytest.raises(ValueError, match="friction"):
        RandomizationConfig(friction=(1.2, 0.6))
    with pytest.raises(ValueError, match="push_interval_s"):
        RandomizationConfig(push_interval_s=-1.0)
    with pytest.raises(ConfigError, match="kp_scale") as err:
        from_dict(RandomizationConfig, {"kp_scale": [1.1, 0.9]}, source="dr.yaml")
    assert "dr.yaml" in str(err.value)

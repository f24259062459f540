"""Closed chains (robots/closure.py) on Minitaur's five-bar legs: the standing pose worked out by
hand, every pose within the limits closes on the standing branch, d p / d q against finite
differences, the closed leg's foot kinematics, and refusals naming what is wrong. The engines'
side (constraints that hold while it moves) is tests/sim/test_closed_chains.py."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from gaitforge.robots import closure as closure_module
from gaitforge.robots.closure import ClosedChainError, load_closure
from gaitforge.robots.kinematics import load_leg_kinematics
from gaitforge.robots.spec import load_robot_spec

# Minitaur's leg, from its URDF: each knee sits 0.115 m from the motor axis (upper-leg joint
# origin 0.06 out, knee 0.055 further), each lower leg is 0.2 m from knee to toe.
UPPER_M, LOWER_M = 0.115, 0.2


@pytest.fixture(scope="module")
def spec():
    return load_robot_spec("minitaur")


@pytest.fixture(scope="module")
def closure(spec):
    return load_closure(spec)


def test_a_robot_without_closed_chains_has_no_closure():
    assert load_closure(load_robot_spec("servo_dog")) is None


def test_standing_pose_by_hand(spec, closure):
    """Both upper legs horizontal, pointing apart: the knees are 2 x 0.115 m apart, so each
    lower leg meets the other below the motor axis at depth sqrt(0.2^2 - 0.115^2) = 0.16363 m,
    and bends at the knee by pi - acos(0.115 / 0.2) = 2.18338 rad (bullet3's 2.1834). The
    URDF's rpy 1.57075 (not pi / 2) leaves the two toe points 9.6e-6 m apart."""
    p = closure.solve(spec.default_pose_rad)
    knee = math.pi - math.acos(UPPER_M / LOWER_M)
    np.testing.assert_allclose(np.abs(p), knee, atol=5e-5)
    np.testing.assert_array_equal(np.sign(p), np.sign(spec.passive_default_rad))
    assert closure.gaps(spec.default_pose_rad, p).max() < 2e-5
    legs = load_leg_kinematics(spec)
    toe = legs.foot_positions(spec.default_pose_rad)
    # the motor axes run along y, through x = +-0.21 m, z = 0 (the chassis rolls them by 5 deg)
    depth = np.hypot(toe[:, 2], np.abs(toe[:, 0]) - 0.21)
    np.testing.assert_allclose(depth, math.sqrt(LOWER_M ** 2 - UPPER_M ** 2), atol=1e-3)
    np.testing.assert_allclose(np.abs(toe[:, 0]), 0.21, atol=1e-6)  # right below the axis


def test_every_pose_within_the_limits_closes_on_the_standing_branch(spec, closure,
                                                                     monkeypatch):
    """200 random poses: every chain closes (to the URDF's 1e-4 m), every knee keeps the sign
    it has standing (toe below, not above), and a continuation in ten times finer steps finds
    the same angles (the solver never jumps branch)."""
    poses = np.random.default_rng(0).uniform(spec.lower_rad, spec.upper_rad, (200, 8))
    solved = [closure.solve(q) for q in poses]
    for q, p in zip(poses, solved, strict=True):
        assert closure.gaps(q, p).max() < 1e-4
        assert np.all(np.sign(p) == np.sign(spec.passive_default_rad))
    monkeypatch.setattr(closure_module, "STEP_RAD", closure_module.STEP_RAD / 10)
    for q, p in zip(poses[:40], solved, strict=False):
        np.testing.assert_allclose(closure.solve(q), p, atol=1e-12)


def test_sensitivity_matches_finite_differences(spec, closure):
    h = 1e-6
    for q in np.random.default_rng(1).uniform(spec.lower_rad, spec.upper_rad, (3, 8)):
        s = closure.sensitivity(q, closure.solve(q))
        for i in range(8):
            step = np.zeros(8)
            step[i] = h
            numeric = (closure.solve(q + step) - closure.solve(q - step)) / (2 * h)
            np.testing.assert_allclose(s[:, i], numeric, atol=1e-7)


def test_closed_leg_foot_kinematics(spec):
    """The foot is the toe (the L lower leg's closure point); both motors of a leg move it, one
    leg's motors no other foot; the Jacobian matches finite differences."""
    legs = load_leg_kinematics(spec)
    assert legs.leg_joints == ((0, 1), (2, 3), (4, 5), (6, 7))
    h = 1e-6
    q = spec.default_pose_rad + np.random.default_rng(2).uniform(-0.4, 0.4, 8)
    feet, jac = legs.forward(q)
    for i in range(8):
        step = np.zeros(8)
        step[i] = h
        numeric = (legs.foot_positions(q + step) - legs.foot_positions(q - step)) / (2 * h)
        np.testing.assert_allclose(jac[:, :, i], numeric, atol=1e-8)
        leg = i // 2
        assert np.linalg.norm(jac[leg, :, i]) > 0.02  # m/rad
        assert np.abs(np.delete(jac[:, :, i], leg, axis=0)).max() < 1e-15  # lstsq round-off
    dq = np.random.default_rng(3).normal(size=8)
    np.testing.assert_allclose(legs.foot_motion(q, dq)[1], jac @ dq, atol=1e-12)
    # same angle on both motors of a leg: the toe moves straight along the leg (up or down)
    up = legs.foot_positions(spec.default_pose_rad + np.tile([0.3, 0.3, 0.3, 0.3, -0.3, -0.3,
                                                               -0.3, -0.3], 1))
    standing = legs.foot_positions(spec.default_pose_rad)
    np.testing.assert_allclose(up[:, 0], standing[:, 0], atol=1e-6)
    assert np.all(up[:, 2] - standing[:, 2] > 0.02)  # shorter legs: toes 3 cm higher


def test_a_chain_that_cannot_close_is_refused(spec):
    """A five-bar closes wherever its knees are less than the two lower legs' lengths' sum and
    more than their difference apart. Make one lower leg 1 m long: 1 - 0.2 m is more than the
    knees' 0.23 m at most, so it never closes -> ClosedChainError with the gap."""
    chain = dataclasses.replace(spec.closed_chains[0], point_a=(0.0, 0.01, 1.0))
    broken = dataclasses.replace(spec, closed_chains=(chain, *spec.closed_chains[1:]))
    with pytest.raises(ClosedChainError, match=r"cannot close at joint angles .* \(gap [\d.]+ m\)"):
        load_closure(broken).solve(spec.default_pose_rad)


def test_a_moving_joint_on_a_chain_that_the_spec_does_not_name_is_refused(spec):
    fewer = dataclasses.replace(spec, passive_joints=spec.passive_joints[1:])
    with pytest.raises(ValueError, match="knee_front_leftL_link.*passive_joints"):
        load_closure(fewer)

"""Minitaur in both engines: the closed chains hold while it stands and while its legs move,
the passive knees turn freely, the engines take the collision-shape inertias, and the body
drives the spec's DC motor."""

from __future__ import annotations

import numpy as np
import pytest
from test_cross_engine import IN_THE_AIR, link_points  # tests/sim is on sys.path

from gaitforge.robots.inertia import collision_inertias
from gaitforge.robots.types import JointCommand
from gaitforge.sim.actuator import DCMotorActuator, ServoActuator
from gaitforge.sim.config import ActuatorConfig

ENGINES = ("pybullet", "mujoco")


def closure_gaps(body) -> np.ndarray:
    """(n_chains,) distance (m) between each closed chain's two points, from the engine."""
    chains = body.spec.closed_chains
    a = link_points(body, [c.link_a for c in chains], [c.point_a for c in chains])
    b = link_points(body, [c.link_b for c in chains], [c.point_b for c in chains])
    return np.linalg.norm(a - b, axis=1)


def trot_targets(spec, t: float) -> np.ndarray:
    """Diagonal legs half a cycle apart at 1.5 Hz: each leg lengthens and shortens by 0.4 rad
    on both motors and swings by 0.3 rad a quarter cycle later."""
    phase = 2 * np.pi * 1.5 * t + np.repeat([0.0, np.pi, np.pi, 0.0], 2)
    extend = 0.4 * np.sin(phase) * np.repeat([1, 1, -1, -1], 2)  # left legs' motors turn -
    swing = 0.3 * np.cos(phase) * np.tile([1, -1], 4)
    return spec.default_pose_rad + extend + swing


@pytest.mark.parametrize("engine", ENGINES)
def test_closed_chains_hold_standing_and_moving(robot_spec, sim_body, engine):
    """1 s standing, then 3 s of the trot above on the ground: the two toe points of every leg
    stay within 2 mm (measured: 0.16 / 0.19 mm standing, 0.9 / 0.5 mm moving, PyBullet /
    MuJoCo; at reset 1e-5 m, the URDF's rounding). Standing, only the feet touch the ground
    (the R lower legs' contacts count as their L foot's) and the trunk stays upright; the trot
    keeps it upright too (it even walks: 0.6 / 0.5 m forward in 3 s)."""
    spec = robot_spec("minitaur")
    body = sim_body(spec, engine)
    body.reset_standing()
    assert closure_gaps(body).max() < 2e-5
    standing = 0.0
    for _ in range(50):
        body.write(JointCommand(position_rad=spec.default_pose_rad))
        body.step()
        standing = max(standing, closure_gaps(body).max())
    state = body.read()
    assert state.privileged.foot_contact.all() and state.privileged.collisions == 0.0
    assert body.link_contacts() == set(spec.feet)
    assert standing < 1e-3, standing
    moving, start = 0.0, body.time_s
    for _ in range(150):
        body.write(JointCommand(position_rad=trot_targets(spec, body.time_s - start)))
        body.step()
        moving = max(moving, closure_gaps(body).max())
    assert moving < 2e-3, moving
    state = body.read()
    assert state.privileged.base_pos_m[2] > 0.1 and not state.privileged.trunk_contact


@pytest.mark.parametrize("engine", ENGINES)
def test_passive_knees_turn_freely(robot_spec, sim_body, engine):
    """Hung in the air, each leg shortened (both its motors turned 0.3 rad, upper legs up): the
    motors get there (within 0.02 rad after 0.3 s) and the knees turn to the angles
    robots/closure.py closes the legs with (within 0.01 rad). A knee held by PyBullet's
    default velocity motor would lock the five-bar: no motor could turn."""
    spec = robot_spec("minitaur")
    body = sim_body(spec, engine, fixed_base=True)
    body.reset(joint_pos_rad=spec.default_pose_rad, **IN_THE_AIR)
    target = spec.default_pose_rad + 0.3 * np.repeat([1.0, 1.0, -1.0, -1.0], 2)
    for _ in range(15):
        body.write(JointCommand(position_rad=target))
        body.step()
    q = body.read().joint_pos_rad
    np.testing.assert_allclose(q, target, atol=0.02)
    if engine == "pybullet":
        knees = [body.client.getJointState(body.robot, i)[0] for i in body._passive_ids]
    else:
        knees = body.data.qpos[body._passive_qadr]
    expected = body.closure.solve(q)
    assert np.all(np.abs(expected - spec.passive_default_rad) > 0.1)  # they had to turn
    np.testing.assert_allclose(knees, expected, atol=0.01)


@pytest.mark.parametrize("engine", ENGINES)
def test_engines_take_the_collision_shape_inertias(robot_spec, sim_body, engine):
    spec = robot_spec("minitaur")
    body = sim_body(spec, engine)
    expected = collision_inertias(spec.description_path)
    for link in ("base_chassis_link", "motor_front_leftR_link", "lower_leg_back_rightL_link"):
        if engine == "pybullet":
            index = {name: i for i, name in body._link_names.items()}[link]
            diagonal = body.client.getDynamicsInfo(body.robot, index)[2]
        else:
            diagonal = body.model.body_inertia[body.model.body(link).id]
        np.testing.assert_allclose(sorted(diagonal), sorted(np.diag(expected[link])), rtol=1e-6)


@pytest.mark.parametrize("engine", ENGINES)
def test_the_body_drives_the_specs_dc_motor(robot_spec, sim_body, engine):
    spec = robot_spec("minitaur")
    assert type(sim_body(spec, engine).actuator) is DCMotorActuator
    servo = sim_body(spec, engine, actuator=ActuatorConfig(model="servo"))
    assert type(servo.actuator) is ServoActuator

"""Leg kinematics from the URDF (robots/kinematics.py): hand-worked servo_dog feet and
Jacobian, finite differences, and both engines' own forward kinematics (foot link origins in
the trunk frame, fixed base, random joint angles) for servo_dog, a1 and mini_cheetah and for
a made-up leg whose joints have rpy origins and skewed axes, to 1e-9 m.

PyBullet is loaded raw at the world origin: its fixed-base body keeps the base pose in single
precision (a1's trunk centre of mass is off its link origin, which shows as 1.6e-8 m through
`PyBulletBody`), and `getLinkState`'s link-frame position is single precision too, so the
feet (whose inertial frames sit on their link origins) are read as the link's centre of mass.
MuJoCo is the model `sim.mujoco_body.build_model` compiles, hung at the origin.
"""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
import pybullet
import pytest

from gaitforge.robots.kinematics import (
    cross,
    load_leg_kinematics,
    quat_to_matrix,
    rpy_matrix,
)
from gaitforge.robots.spec import JointSpec, RobotSpec, load_robot_spec
from gaitforge.sim.config import SimConfig
from gaitforge.sim.mujoco_body import build_model

ROBOTS = ("servo_dog", "a1", "mini_cheetah")
N_POSES = 8

# A made-up two-legged robot: rpy origins, skewed axes, a continuous joint, fixed joints in
# the middle of a chain and before the first moving joint.
SKEWED_URDF = """<?xml version="1.0"?>
<robot name="skewed">
  <link name="base"><inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01"
    ixy="0" ixz="0" iyz="0"/></inertial></link>
  {links}
  <joint name="mount" type="fixed"><parent link="base"/><child link="mount"/>
    <origin xyz="0.1 0.02 -0.03" rpy="0.3 -0.2 0.5"/></joint>
  <joint name="a" type="revolute"><parent link="mount"/><child link="a"/>
    <origin xyz="0.05 -0.04 0.01" rpy="-0.7 0.4 1.1"/><axis xyz="0.3 -0.5 0.8"/>
    <limit lower="-3" upper="3" effort="1" velocity="1"/></joint>
  <joint name="b" type="continuous"><parent link="a"/><child link="b"/>
    <origin xyz="0 0.03 -0.12" rpy="1.2 0 -0.6"/><axis xyz="0 -1 0"/></joint>
  <joint name="b_fix" type="fixed"><parent link="b"/><child link="b2"/>
    <origin xyz="0.02 0 -0.05" rpy="0 0.9 0"/></joint>
  <joint name="c" type="revolute"><parent link="b2"/><child link="c"/>
    <origin xyz="0.01 0.01 -0.1" rpy="0.2 0.3 0.4"/><axis xyz="1 1 0"/>
    <limit lower="-3" upper="3" effort="1" velocity="1"/></joint>
  <joint name="toe1" type="fixed"><parent link="c"/><child link="foot1"/>
    <origin xyz="0.03 -0.02 -0.11" rpy="0.5 0.5 0.5"/></joint>
  <joint name="d" type="revolute"><parent link="base"/><child link="d"/>
    <origin xyz="-0.1 0 0" rpy="0 0 3.0"/><axis xyz="0 0 1"/>
    <limit lower="-3" upper="3" effort="1" velocity="1"/></joint>
  <joint name="toe2" type="fixed"><parent link="d"/><child link="foot2"/>
    <origin xyz="0.2 0.1 -0.1"/></joint>
</robot>
"""
LINK = ('<link name="{}"><inertial><mass value="0.1"/><inertia ixx="1e-4" iyy="1e-4" '
        'izz="1e-4" ixy="0" ixz="0" iyz="0"/></inertial></link>')


def skewed_spec(folder) -> RobotSpec:
    links = "\n  ".join(LINK.format(n) for n in ("mount", "a", "b", "b2", "c", "foot1", "d",
                                                  "foot2"))
    (folder / "skewed.urdf").write_text(SKEWED_URDF.format(links=links))
    joint = dict(lower_rad=-3.0, upper_rad=3.0, velocity_limit_rad_s=1.0, torque_limit_nm=1.0,
                 default_rad=0.0, kp_nm_per_rad=1.0, kd_nm_s_per_rad=0.0)
    return RobotSpec(name="skewed", description="skewed.urdf", base_link="base",
                     feet=("foot1", "foot2"), nominal_mass_kg=1.0, standing_height_m=0.2,
                     joints=tuple(JointSpec(name=n, **joint) for n in ("d", "a", "b", "c")),
                     folder=str(folder))


@pytest.fixture(scope="module")
def specs(tmp_path_factory):
    out = {name: load_robot_spec(name) for name in ROBOTS}
    out["skewed"] = skewed_spec(tmp_path_factory.mktemp("skewed"))
    return out


def random_poses(spec, seed=0):
    return np.random.default_rng(seed).uniform(spec.lower_rad, spec.upper_rad,
                                               (N_POSES, spec.n_joints))


# ---- hand-worked ---------------------------------------------------------------------------
def test_servo_dog_front_right_foot_and_jacobian_by_hand():
    legs = load_leg_kinematics(load_robot_spec("servo_dog"))
    # hip at (0.08, -0.05, 0), thigh 3 cm further out, thigh and calf 8 cm each
    p, jac = legs.forward(np.zeros(12))
    np.testing.assert_allclose(p[0], [0.08, -0.08, -0.16], atol=1e-15)
    np.testing.assert_allclose(p[3], [-0.08, 0.08, -0.16], atol=1e-15)
    # hip: x x (0, -0.03, -0.16); thigh: y x (0, 0, -0.16); calf: y x (0, 0, -0.08)
    np.testing.assert_allclose(jac[0][:, :3], [[0, -0.16, -0.08], [0.16, 0, 0], [-0.03, 0, 0]],
                               atol=1e-15)
    assert not jac[0][:, 3:].any()
    # thigh a, calf b: foot x = 0.08 - 0.08 sin a - 0.08 sin(a + b), z = -0.08 (cos a + cos(a+b))
    a, b = 0.8, -1.5
    p = legs.foot_positions(np.tile([0.0, a, b], 4))
    np.testing.assert_allclose(p[0], [0.08 - 0.08 * np.sin(a) - 0.08 * np.sin(a + b), -0.08,
                                      -0.08 * (np.cos(a) + np.cos(a + b))], atol=1e-15)
    assert legs.leg_joints == ((0, 1, 2), (3, 4, 5), (6, 7, 8), (9, 10, 11))


def test_rotation_helpers_by_hand():
    np.testing.assert_allclose(rpy_matrix([0, 0, np.pi / 2]) @ [1, 0, 0], [0, 1, 0], atol=1e-15)
    np.testing.assert_allclose(rpy_matrix([np.pi / 2, 0, 0]) @ [0, 1, 0], [0, 0, 1], atol=1e-15)
    # fixed axes: roll first, then yaw -> x stays x under roll, then turns to y
    np.testing.assert_allclose(rpy_matrix([0.3, 0, np.pi / 2]) @ [1, 0, 0], [0, 1, 0],
                               atol=1e-15)
    c, s = np.cos(0.25), np.sin(0.25)  # quaternion of 0.5 rad about z
    np.testing.assert_allclose(quat_to_matrix([c, 0, 0, s]) @ [1, 0, 0],
                               [np.cos(0.5), np.sin(0.5), 0], atol=1e-15)
    a, b = np.random.default_rng(1).normal(size=(2, 5, 3))
    np.testing.assert_allclose(cross(a, b), np.cross(a, b), atol=1e-15)


@pytest.mark.parametrize("name", [*ROBOTS, "skewed"])
def test_jacobian_matches_finite_differences(specs, name):
    spec = specs[name]
    legs = load_leg_kinematics(spec)
    h = 1e-6
    for q in random_poses(spec, seed=2)[:3]:
        _, jac = legs.forward(q)
        for i in range(spec.n_joints):
            step = np.zeros(spec.n_joints)
            step[i] = h
            numeric = (legs.foot_positions(q + step) - legs.foot_positions(q - step)) / (2 * h)
            np.testing.assert_allclose(jac[:, :, i], numeric, atol=1e-8)
        dq = np.random.default_rng(3).normal(size=spec.n_joints)
        p, v = legs.foot_motion(q, dq)
        np.testing.assert_allclose(v, jac @ dq, atol=1e-14)
        np.testing.assert_allclose(p, legs.foot_positions(q), atol=0)


# ---- against the engines -------------------------------------------------------------------
def pybullet_feet(spec, poses) -> np.ndarray:
    """(poses, feet, 3): foot link origins relative to the base link, PyBullet."""
    client = pybullet.connect(pybullet.DIRECT)
    try:
        robot = pybullet.loadURDF(str(spec.description_path), [0, 0, 0], useFixedBase=True,
                                  physicsClientId=client)
        n = pybullet.getNumJoints(robot, physicsClientId=client)
        info = [pybullet.getJointInfo(robot, i, physicsClientId=client) for i in range(n)]
        joints = {j[1].decode(): j[0] for j in info}
        links = {j[12].decode(): j[0] for j in info}
        com, orn = pybullet.getDynamicsInfo(robot, -1, physicsClientId=client)[3:5]
        assert tuple(orn) == (0, 0, 0, 1)  # base link frame = world frame - its COM offset
        out = []
        for q in poses:
            for name, angle in zip(spec.joint_names, q, strict=True):
                pybullet.resetJointState(robot, joints[name], angle, physicsClientId=client)
            base = np.array(pybullet.getBasePositionAndOrientation(robot,
                                                                   physicsClientId=client)[0])
            feet = []
            for foot in spec.feet:
                state = pybullet.getLinkState(robot, links[foot], computeForwardKinematics=1,
                                              physicsClientId=client)
                assert not any(state[2])  # the foot's inertial frame is its link frame
                feet.append(np.array(state[0]) - (base - np.array(com)))
            out.append(feet)
        return np.array(out)
    finally:
        pybullet.disconnect(client)


def mujoco_feet(spec, poses) -> tuple[np.ndarray, np.ndarray]:
    """(feet (poses, feet, 3), Jacobians (poses, feet, 3, n_joints)), MuJoCo, base at rest at
    the origin."""
    model = build_model(spec, SimConfig(engine="mujoco"), None, fixed_base=True,
                        spawn_height_m=0.0)
    data = mujoco.MjData(model)
    qadr = [model.joint(n).qposadr[0] for n in spec.joint_names]
    vadr = [model.joint(n).dofadr[0] for n in spec.joint_names]
    feet, jacs = [], []
    for q in poses:
        data.qpos[qadr] = q
        mujoco.mj_kinematics(model, data)
        mujoco.mj_comPos(model, data)
        assert not data.xpos[model.body(spec.base_link).id].any()
        feet.append([data.xpos[model.body(f).id].copy() for f in spec.feet])
        pose_jacs = []
        for f in spec.feet:
            jac = np.zeros((3, model.nv))
            mujoco.mj_jacBody(model, data, jac, None, model.body(f).id)
            pose_jacs.append(jac[:, vadr])
        jacs.append(pose_jacs)
    return np.array(feet), np.array(jacs)


@pytest.mark.parametrize("name", [*ROBOTS, "skewed"])
def test_feet_match_both_engines(specs, name):
    spec = specs[name]
    legs = load_leg_kinematics(spec)
    poses = random_poses(spec)
    ours = np.array([legs.forward(q)[0] for q in poses])
    ours_jac = np.array([legs.forward(q)[1] for q in poses])
    np.testing.assert_allclose(ours, pybullet_feet(spec, poses), atol=1e-9, rtol=0)
    feet, jacs = mujoco_feet(spec, poses)
    np.testing.assert_allclose(ours, feet, atol=1e-9, rtol=0)
    np.testing.assert_allclose(ours_jac, jacs, atol=1e-9, rtol=0)


# ---- refusals ------------------------------------------------------------------------------
def test_a_leg_joint_outside_the_spec_or_of_an_unsupported_kind_is_refused(specs, tmp_path):
    spec = specs["skewed"]
    fewer = dataclasses.replace(spec, joints=spec.joints[1:])  # 'd' moves foot2
    with pytest.raises(ValueError, match="joint 'd' on the leg of 'foot2' is not a joint"):
        load_leg_kinematics(fewer)
    text = (tmp_path.parent / spec.folder / "skewed.urdf").read_text()
    (tmp_path / "skewed.urdf").write_text(text.replace('name="d" type="revolute"',
                                                       'name="d" type="prismatic"'))
    with pytest.raises(ValueError, match="joint 'd' on the leg of 'foot2' is prismatic"):
        load_leg_kinematics(dataclasses.replace(spec, folder=str(tmp_path)))
    lost = dataclasses.replace(spec, feet=("foot1", "nowhere"))
    with pytest.raises(ValueError, match="foot 'nowhere' is not connected to the base link"):
        load_leg_kinematics(lost)

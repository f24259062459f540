"""mini_cheetah's URDF (robots/mini_cheetah/make_urdf.py): pybullet_data's, with the right legs'
centres of mass mirrored so that left and right are mirror images, as on the real robot."""

from __future__ import annotations

import importlib.util

import mujoco
import numpy as np
import pytest

from gaitforge.robots.spec import ROBOTS_DIR
from gaitforge.robots.types import JointCommand

FOLDER = ROBOTS_DIR / "mini_cheetah"


def pybullet_com(body) -> np.ndarray:
    """World centre of mass (m) of every link of a PyBullet body, base included."""
    p, robot = body.client, body.robot
    mass = p.getDynamicsInfo(robot, -1)[0]
    moment = mass * np.array(p.getBasePositionAndOrientation(robot)[0])  # base inertial frame
    for link in range(p.getNumJoints(robot)):
        m = p.getDynamicsInfo(robot, link)[0]
        moment += m * np.array(p.getLinkState(robot, link, computeForwardKinematics=True)[0])
        mass += m
    return moment / mass


def mujoco_com(body) -> np.ndarray:
    mujoco.mj_forward(body.model, body.data)
    return body.data.subtree_com[body.model.body(body.spec.base_link).id].copy()


@pytest.mark.parametrize("engine", ["pybullet", "mujoco"])
def test_centre_of_mass_lies_on_the_centre_line(robot_spec, sim_body, engine):
    """Standing pose, trunk level at the origin: the whole robot's centre of mass within 1 mm
    of the centre line in y. pybullet_data's URDF puts it at +13.4 mm in both engines (every
    abduct and thigh link's on the +y side); the mirrored one at 0.0 mm (measured)."""
    spec = robot_spec("mini_cheetah")
    body = sim_body(spec, engine)
    body.reset(base_pos_m=[0.0, 0.0, body.spawn_height()], base_quat_wxyz=[1, 0, 0, 0],
               joint_pos_rad=spec.default_pose_rad)
    com = pybullet_com(body) if engine == "pybullet" else mujoco_com(body)
    assert abs(com[1]) <= 1e-3, com


def test_committed_mini_cheetah_urdf_is_the_generator_output():
    path = FOLDER / "make_urdf.py"
    module_spec = importlib.util.spec_from_file_location("mini_cheetah_make_urdf", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    committed = (FOLDER / "mini_cheetah.urdf").read_text()
    assert committed == module.urdf(), "run: python robots/mini_cheetah/make_urdf.py"


@pytest.mark.parametrize("engine", ["pybullet", "mujoco"])
def test_standing_on_its_toes_is_no_collision(robot_spec, sim_body, engine):
    """Standing 1 s in the default pose: the toes carry it and nothing counts as a collision,
    though in PyBullet the shanks' tips touch the ground too (they reach within 2 mm of the
    toes' bottoms): the spec's `ground_contact_links`."""
    spec = robot_spec("mini_cheetah")
    body = sim_body(spec, engine)
    body.reset_standing()
    shanks = set(spec.ground_contact_links)
    touched = set()
    for _ in range(50):
        body.write(JointCommand(position_rad=spec.default_pose_rad))
        body.step()
        touched |= body.link_contacts() & shanks
        state = body.read()
        assert state.privileged.foot_contact.all() and state.privileged.collisions == 0.0
    if engine == "pybullet":
        assert touched == shanks

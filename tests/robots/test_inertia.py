"""Link inertias from collision shapes (robots/inertia.py), against numbers worked out by hand
for Minitaur's links, and the refusal of a shape without a formula."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from gaitforge.robots.inertia import collision_inertias, link_inertia, write_inertias
from gaitforge.robots.spec import load_robot_spec


@pytest.fixture(scope="module")
def inertias():
    return collision_inertias(load_robot_spec("minitaur").description_path)


def test_lower_leg_box_about_the_knee(inertias):
    """0.05 kg box 0.01 x 0.01 x 0.198 m centred 0.1 m along z from the link origin, where the
    URDF puts the centre of mass: Ixx = Iyy = m (0.01^2 + 0.198^2) / 12 + m 0.1^2
    = 1.63767e-4 + 5e-4; Izz = m (0.01^2 + 0.01^2) / 12 = 8.333e-7 kg m^2."""
    np.testing.assert_allclose(inertias["lower_leg_front_leftL_link"],
                               np.diag([6.63767e-4, 6.63767e-4, 8.3333e-7]), rtol=1e-5)


def test_motor_cylinder_and_the_motor_without_collision_shape(inertias):
    """0.25 kg cylinder r 0.0434 m, 0.026 m long: Izz = m r^2 / 2 = 2.3545e-4, Ixx = m (3 r^2 +
    l^2) / 12 = 1.3181e-4. motor_front_leftR_link has no collision shape in the URDF: its visual
    mesh's bounding box, 0.086 x 0.086 x 0.013 m, gives Izz = m (2 x 0.086^2) / 12 = 3.0817e-4."""
    np.testing.assert_allclose(inertias["motor_front_leftL_link"],
                               np.diag([1.318058e-4, 1.318058e-4, 2.354450e-4]), rtol=1e-5)
    np.testing.assert_allclose(inertias["motor_front_leftR_link"],
                               np.diag([1.576042e-4, 1.576042e-4, 3.081667e-4]), rtol=1e-5)


def test_base_mass_spread_by_volume(inertias):
    """3 kg over a 0.33 x 0.10 x 0.07 box at the origin (2.31e-3 m^3) and two 0.17 x 0.10 x
    0.05 boxes at y = +-0.10 (8.5e-4 m^3 each): 1.7028 kg and 0.6486 kg each. Izz = 1.7028
    (0.33^2 + 0.1^2) / 12 + 2 x 0.6486 ((0.17^2 + 0.1^2) / 12 + 0.1^2) = 0.033964 kg m^2."""
    tensor = inertias["base_chassis_link"]
    assert tensor[2, 2] == pytest.approx(0.033964, rel=1e-4)
    assert not tensor[~np.eye(3, dtype=bool)].any()


def test_written_into_a_urdf(inertias, tmp_path):
    root = ET.parse(load_robot_spec("minitaur").description_path).getroot()
    write_inertias(root, inertias)
    link = next(k for k in root.findall("link") if k.get("name") == "base_chassis_link")
    assert float(link.find("inertial/inertia").get("izz")) == pytest.approx(0.033964, rel=1e-4)


def test_a_shape_without_a_formula_is_refused(tmp_path):
    link = ET.fromstring('<link name="l"><inertial><mass value="1"/></inertial><collision>'
                         '<geometry><capsule radius="0.1" length="0.2"/></geometry></collision>'
                         '</link>')
    with pytest.raises(ValueError, match="link 'l': a capsule shape has no inertia formula"):
        link_inertia(link, tmp_path)

"""RobotSpec loading: the robots, their joint arrays, and clear errors for bad specs.

Broken specs are written as copies of servo_dog's spec.yaml under tmp_path; every error must be
a ConfigError whose message names the offending field and the spec file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import yaml

from gaitforge.robots.configio import ConfigError, to_dict
from gaitforge.robots.spec import (
    ROBOTS_DIR,
    DCMotorSpec,
    ServoModelSpec,
    available_robots,
    load_robot_spec,
)

ROBOTS = ("a1", "mini_cheetah", "servo_dog")  # the 12-joint ones, with EXPECTED below

# Per-leg values (hip/abduct, thigh, calf/knee), repeated for the 4 legs in spec order.
EXPECTED = {
    "servo_dog": dict(
        names=[f"{leg}_{j}" for leg in ("FR", "FL", "RR", "RL") for j in ("hip", "thigh", "calf")],
        feet=("FR_foot", "FL_foot", "RR_foot", "RL_foot"), base="trunk",
        mass=1.46, height=0.13,
        default=(0.0, 0.8, -1.5), lower=(-0.8, -1.2, -2.6), upper=(0.8, 2.6, -0.5),
        kp=4.0, kd=0.06, torque=1.5, velocity=6.0),
    "a1": dict(
        names=[f"{leg}_{j}_joint" for leg in ("FR", "FL", "RR", "RL")
               for j in ("hip", "upper", "lower")],
        feet=("FR_toe", "FL_toe", "RR_toe", "RL_toe"), base="trunk",
        mass=7.74, height=0.27,
        default=(0.0, 0.9, -1.8), lower=(-0.802851455917, -1.0471975512, -2.69653369433),
        upper=(0.802851455917, 4.18879020479, -0.916297857297),
        kp=40.0, kd=1.0, torque=33.5, velocity=21.0),
    "mini_cheetah": dict(
        names=[n for leg in ("fr", "fl", "hr", "hl")
               for n in (f"torso_to_abduct_{leg}_j", f"abduct_{leg}_to_thigh_{leg}_j",
                         f"thigh_{leg}_to_knee_{leg}_j")],
        feet=("toe_fr", "toe_fl", "toe_hr", "toe_hl"), base="body",
        mass=8.85, height=0.27,
        default=(0.0, -0.8, 1.6), lower=(-0.8, -2.6, 0.5), upper=(0.8, 1.2, 2.6),
        kp=20.0, kd=0.5, torque=18.0, velocity=30.0),
}


def test_available_robots_lists_the_four():
    assert available_robots() == ["a1", "mini_cheetah", "minitaur", "servo_dog"]


def test_minitaur_loads_with_its_closed_chains_and_dc_motor():
    """8 motors (bullet3's order: front left L, R, back left, front right, back right), the
    knees as passive joints, a toe closure per leg, and Tan et al.'s DC motor."""
    spec = load_robot_spec("minitaur")
    legs = ("front_left", "back_left", "front_right", "back_right")
    assert spec.joint_names == tuple(f"motor_{leg}{s}_joint" for leg in legs for s in "LR")
    assert spec.feet == tuple(f"lower_leg_{leg}L_link" for leg in legs)
    assert spec.foot_offset_m == (0.0, 0.01, 0.2)
    assert [j.name for j in spec.passive_joints] == [f"knee_{leg}{s}_link" for leg in legs
                                                     for s in "LR"]
    np.testing.assert_allclose(spec.passive_default_rad, np.repeat([1, 1, -1, -1], 2) * 2.1834)
    np.testing.assert_allclose(spec.default_pose_rad, np.repeat([-1, -1, 1, 1], 2) * 1.5708)
    assert [(c.link_a, c.link_b) for c in spec.closed_chains] == [
        (f"lower_leg_{leg}L_link", f"lower_leg_{leg}R_link") for leg in legs]
    assert spec.inertia_from == "collision"
    motor = spec.actuator
    assert isinstance(motor, DCMotorSpec)
    # K_t V / R = 0.0954 * 16 / 0.186; the gains are bullet3's 1.0 and 0.02 duty per rad
    assert motor.full_duty_stall_torque_nm == pytest.approx(8.2065, abs=1e-4)
    np.testing.assert_allclose(spec.kp, 8.21)
    np.testing.assert_allclose(spec.kd, 0.164)
    assert spec.velocity_limit_rad_s[0] == pytest.approx(16.0 / 0.0954, abs=0.05)  # V / K_t
    # the URDF's total: 3 + 2 x 0.1 chassis + 8 x 0.25 motors + 16 x 0.05 leg links
    assert spec.nominal_mass_kg == 3 + 0.2 + 2 + 0.8


def test_optional_fields_at_their_defaults_keep_a_robots_identity():
    """closed_chains, actuator and the other optional fields came after bundles recorded spec
    hashes: a robot that does not use them keeps the hash it had without them."""
    spec = load_robot_spec("servo_dog")
    assert isinstance(spec.actuator, ServoModelSpec) and spec.closed_chains == ()
    fields = to_dict(spec)
    for name in ("folder", "foot_offset_m", "ground_contact_links", "passive_joints",
                 "closed_chains", "inertia_from", "actuator"):
        fields.pop(name)
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode())
    digest.update(spec.description_path.read_bytes())
    assert spec.sha256 == digest.hexdigest()
    minitaur = load_robot_spec("minitaur")
    assert "closed_chains" in json.dumps(to_dict(minitaur))


@pytest.mark.parametrize("name", ROBOTS)
def test_every_robot_loads_with_the_right_arrays(name):
    spec, want = load_robot_spec(name), EXPECTED[name]
    assert spec.name == name
    assert spec.n_joints == 12
    assert spec.joint_names == tuple(want["names"])
    assert spec.feet == want["feet"]
    assert spec.base_link == want["base"]
    assert spec.nominal_mass_kg == want["mass"]
    assert spec.standing_height_m == want["height"]
    assert spec.description_path.is_file()
    np.testing.assert_array_equal(spec.default_pose_rad, np.tile(want["default"], 4))
    np.testing.assert_array_equal(spec.lower_rad, np.tile(want["lower"], 4))
    np.testing.assert_array_equal(spec.upper_rad, np.tile(want["upper"], 4))
    np.testing.assert_array_equal(spec.kp, np.full(12, want["kp"]))
    np.testing.assert_array_equal(spec.kd, np.full(12, want["kd"]))
    np.testing.assert_array_equal(spec.torque_limit_nm, np.full(12, want["torque"]))
    np.testing.assert_array_equal(spec.velocity_limit_rad_s, np.full(12, want["velocity"]))
    for array in (spec.default_pose_rad, spec.lower_rad, spec.upper_rad, spec.kp, spec.kd,
                  spec.torque_limit_nm, spec.velocity_limit_rad_s):
        assert array.dtype == np.float64
        assert not array.flags.writeable  # shared by every body: nobody may edit it in place
    with pytest.raises(ValueError):
        spec.default_pose_rad[0] = 1.0


@pytest.mark.parametrize("name", ROBOTS)
def test_spec_names_exist_in_the_description(name):
    """Every spec joint is a revolute/continuous URDF joint, feet are links, base is the root."""
    spec = load_robot_spec(name)
    root = ET.parse(spec.description_path).getroot()
    joints = {j.get("name"): j for j in root.findall("joint")}
    links = {link.get("name") for link in root.findall("link")}
    children = {j.find("child").get("link") for j in joints.values()}
    for joint in spec.joint_names:
        assert joints[joint].get("type") in ("revolute", "continuous")
    assert set(spec.feet) <= links and set(spec.ground_contact_links) <= links
    assert spec.base_link in links and spec.base_link not in children


@pytest.mark.parametrize("name", ["servo_dog", "a1"])
def test_spec_limits_equal_the_urdf_limits(name):
    """Both robots have limited URDF joints, which the engines enforce: the spec must agree."""
    spec = load_robot_spec(name)
    root = ET.parse(spec.description_path).getroot()
    limits = {j.get("name"): j.find("limit") for j in root.findall("joint")}
    for joint in spec.joints:
        assert float(limits[joint.name].get("lower")) == joint.lower_rad
        assert float(limits[joint.name].get("upper")) == joint.upper_rad


def test_committed_servo_dog_urdf_is_the_generator_output():
    path = ROBOTS_DIR / "servo_dog" / "make_urdf.py"
    module_spec = importlib.util.spec_from_file_location("servo_dog_make_urdf", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    committed = (ROBOTS_DIR / "servo_dog" / "servo_dog.urdf").read_text()
    assert committed == module.urdf(), "run: python robots/servo_dog/make_urdf.py"


def test_unknown_robot_error_lists_the_known_robots():
    with pytest.raises(ConfigError) as err:
        load_robot_spec("robodog")
    message = str(err.value)
    assert "robodog" in message
    for name in ROBOTS:
        assert name in message


# Broken copies of servo_dog ------------------------------------------------------------------
def servo_dog_data() -> dict:
    """servo_dog's spec.yaml as plain data (anchors resolved, x-... helper keys dropped)."""
    data = yaml.safe_load((ROBOTS_DIR / "servo_dog" / "spec.yaml").read_text())
    return {k: v for k, v in data.items() if not k.startswith("x-")}


def write_copy(folder, data: dict, *, urdf: bool = True):
    """spec.yaml (and, unless urdf=False, servo_dog.urdf) in `folder`; returns the yaml path."""
    if urdf:
        shutil.copy(ROBOTS_DIR / "servo_dog" / "servo_dog.urdf", folder / "servo_dog.urdf")
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _set(key, value):
    def edit(d):
        d[key] = value
    return edit


def _pop(key):
    return lambda d: d.pop(key)


def _joint_set(i, key, value):
    def edit(d):
        d["joints"][i][key] = value
    return edit


def _joint_pop(i, key):
    return lambda d: d["joints"][i].pop(key)


def _duplicate_joint(d):
    d["joints"][1]["name"] = d["joints"][0]["name"]


CHAIN = {"link_a": "FR_calf", "link_b": "FL_foot", "point_a": [0, 0, 0],
         "point_b": [0, 0, 0]}
MOTOR = {"name": "dc_motor", "battery_voltage_v": 16.0, "resistance_ohm": 0.186,
         "torque_constant_nm_per_a": 0.0954, "current_a": [0, 10], "torque_nm": [0, 1.0]}


def _chain(**change):
    return _set("closed_chains", [{**CHAIN, **change}])


def _motor(**change):
    return _set("actuator", {**MOTOR, **change})


BROKEN = {
    # id: (edit, text the message must contain to name the field)
    "missing base_link": (_pop("base_link"), "base_link"),
    "missing joints": (_pop("joints"), "joints"),
    "missing joint kp": (_joint_pop(4, "kp_nm_per_rad"), "kp_nm_per_rad"),
    "mass not a number": (_set("nominal_mass_kg", "heavy"), "nominal_mass_kg"),
    "height not a number": (_set("standing_height_m", [0.1]), "standing_height_m"),
    "feet not a list": (_set("feet", "FR_foot"), "feet"),
    "torque not a number": (_joint_set(2, "torque_limit_nm", "lots"),
                            "joints[2].torque_limit_nm"),
    "unknown top-level key": (_set("colour", "red"), "colour"),
    "unknown joint key": (_joint_set(0, "stiffness", 3.0), "joints[0].stiffness"),
    "default outside limits": (_joint_set(1, "default_rad", 3.0), "default_rad"),
    "lower above upper": (_joint_set(0, "lower_rad", 1.0), "lower_rad"),
    "nan lower limit": (_joint_set(0, "lower_rad", float("nan")), "lower_rad"),
    "negative torque limit": (_joint_set(3, "torque_limit_nm", -1.5), "torque_limit_nm"),
    "negative kd": (_joint_set(3, "kd_nm_s_per_rad", -0.1), "kd_nm_s_per_rad"),
    "zero mass": (_set("nominal_mass_kg", 0.0), "nominal_mass_kg"),
    "no joints": (_set("joints", []), "joints"),
    "no feet": (_set("feet", []), "feet"),
    "duplicate joint": (_duplicate_joint, "joints"),
    "description missing": (_set("description", "missing.urdf"), "description"),
    "closed chain link not in the URDF": (_chain(link_a="shin"), "closed_chains[0].link_a"),
    "closed chain point of two numbers": (_chain(point_b=[0, 0]), "closed_chains[0].point_b"),
    "closed chain unknown key": (_chain(stiffness=1), "closed_chains[0].stiffness"),
    "closed chain of one link": (_chain(link_b="FR_calf"), "closed_chains"),
    "passive joint not in the URDF": (_set("passive_joints", [{"name": "knee",
                                                               "default_rad": 0.0}]),
                                      "passive_joints[0].name"),
    "passive joint also driven": (_set("passive_joints", [{"name": "FR_hip",
                                                           "default_rad": 0.0}]),
                                  "passive_joints"),
    "ground contact link not in the URDF": (_set("ground_contact_links", ["shin"]),
                                            "ground_contact_links[0]"),
    "ground contact link a foot": (_set("ground_contact_links", ["FR_calf", "FR_foot"]),
                                   "ground_contact_links[1]"),
    "foot offset of two numbers": (_set("foot_offset_m", [0.0, 0.1]), "foot_offset_m"),
    "unknown inertia source": (_set("inertia_from", "guess"), "inertia_from"),
    "unknown actuator": (_set("actuator", {"name": "hydraulic"}), "actuator.name"),
    "dc motor without resistance": (_set("actuator", {k: v for k, v in MOTOR.items()
                                                      if k != "resistance_ohm"}),
                                    "resistance_ohm"),
    "dc motor curve lengths differ": (_motor(torque_nm=[0, 1, 2]), "actuator: current_a"),
    "dc motor curve not from zero": (_motor(current_a=[1, 10]), "actuator: current_a"),
    "dc motor negative voltage": (_motor(battery_voltage_v=-16), "actuator: battery_voltage_v"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_bad_field_error_names_field_and_file(tmp_path, case):
    edit, field = BROKEN[case]
    data = servo_dog_data()
    edit(data)
    path = write_copy(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_robot_spec(path)
    message = str(err.value)
    assert field in message, message
    assert str(path) in message, message


def test_missing_description_file_is_named(tmp_path):
    """spec.yaml is fine but the URDF next to it is gone."""
    path = write_copy(tmp_path, servo_dog_data(), urdf=False)
    with pytest.raises(ConfigError) as err:
        load_robot_spec(path)
    message = str(err.value)
    assert "description" in message and str(path) in message
    assert str(tmp_path / "servo_dog.urdf") in message  # the file that was looked for


def test_invalid_yaml_and_missing_spec_name_the_file(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("name: servo_dog\njoints: [\n")
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load_robot_spec(path)
    missing = tmp_path / "nowhere" / "spec.yaml"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        load_robot_spec(missing)


def test_a_copy_loads_by_path_and_keeps_its_identity(tmp_path):
    """A faithful copy in another folder is the same robot: same fields, same sha256."""
    committed = load_robot_spec("servo_dog")
    copy = load_robot_spec(write_copy(tmp_path, servo_dog_data()))
    assert copy.folder == str(tmp_path.resolve())
    assert copy.joints == committed.joints
    assert re.fullmatch(r"[0-9a-f]{64}", committed.sha256)
    assert copy.sha256 == committed.sha256


@pytest.mark.parametrize("change", ["kp", "standing_height", "urdf_bytes"])
def test_sha256_changes_when_anything_changes(tmp_path, change):
    data = servo_dog_data()
    if change == "kp":
        data["joints"][0]["kp_nm_per_rad"] = 4.5
    elif change == "standing_height":
        data["standing_height_m"] = 0.14
    path = write_copy(tmp_path, data)
    if change == "urdf_bytes":
        with open(tmp_path / "servo_dog.urdf", "a") as f:
            f.write("<!-- one more byte -->\n")
    assert load_robot_spec(path).sha256 != load_robot_spec("servo_dog").sha256

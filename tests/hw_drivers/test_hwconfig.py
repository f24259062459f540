"""Hardware config: the shipped YAMLs load, conversions match numbers worked out by hand, and every
validation error names the offending key, joint and file.

Hand numbers: 4096 ticks a turn, so 1 rad = 4096 / (2*pi) = 651.8986 ticks and pi/2 = 1024 ticks;
velocity 0.229 rev/min a count = 0.0239808 rad/s; current 2.69 mA a count, kt 1.07 N*m/A.
"""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import yaml

from gaitforge.hw_drivers.hwconfig import (
    HW_CONFIG_DIR,
    HwConfig,
    JointServo,
    load_hw_config,
)
from gaitforge.robots.configio import ConfigError, from_dict
from gaitforge.robots.spec import load_robot_spec

SPEC = load_robot_spec("servo_dog")
NAMES = SPEC.joint_names  # FR_hip, FR_thigh, FR_calf, FL_hip, ... RL_calf


def base_dict(**top) -> dict:
    """A Dynamixel config for servo_dog: ids 1..12 in spec order, all direction +1, offset 0."""
    data = {
        "robot": "servo_dog",
        "protocol": "dynamixel",
        "port": "/dev/ttyUSB0",
        "baud": 1_000_000,
        "imu": {"source": "board", "port": "/dev/ttyACM0"},
        "joints": [
            {"name": n, "id": i + 1, "direction": 1, "zero_offset_rad": 0.0}
            for i, n in enumerate(NAMES)
        ],
    }
    data.update(top)
    return data


def calibration(data: dict):
    return from_dict(HwConfig, data, source="test.yaml").calibration(SPEC)


def write_yaml(tmp_path, data) -> str:
    path = tmp_path / "hw.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


# Shipped configs -----------------------------------------------------------------------------
def test_shipped_dynamixel_config_validates_with_ids_1_to_12_in_spec_order():
    cfg = load_hw_config(HW_CONFIG_DIR / "servo_dog_dynamixel.yaml")
    cal = cfg.calibration(SPEC)
    assert cfg.protocol == "dynamixel" and cfg.baud == 1_000_000
    assert cal.ids == tuple(range(1, 13)) and cal.bus_ids == tuple(range(1, 13))
    assert cfg.imu.port == "/dev/ttyACM0"
    assert cfg.velocity_unit_rad_s == pytest.approx(0.229 * 2 * math.pi / 60)
    # Left legs mirrored: FL_thigh default 0.8 rad -> 2048 - 0.8 * 651.8986 = 1526.48 -> 1526.
    assert cal.rad_to_ticks(SPEC.default_pose_rad)[[1, 4]].tolist() == [2570, 1526]


def test_shipped_board_config_uses_channels_and_the_same_link_for_the_imu():
    cfg = load_hw_config("servo_dog_board", port="/dev/pts/7")  # bare name, CLI --port
    cal = cfg.calibration(SPEC)
    assert cfg.protocol == "board" and cfg.port == "/dev/pts/7" and cfg.imu.port is None
    assert cal.ids == tuple(range(12)) and all(j.id is None for j in cfg.joints)


def test_unknown_hw_config_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown hardware config 'nope'.*servo_dog_board"):
        load_hw_config("nope")


# Conversions -------------------------------------------------------------------------------
def test_centre_tick_is_zero_rad_and_quarter_turn_is_1024_ticks():
    cal = calibration(base_dict())
    np.testing.assert_array_equal(cal.rad_to_ticks(np.zeros(12)), np.full(12, 2048))
    q = np.zeros(12)
    q[0], q[1], q[2] = math.pi / 4, math.pi / 2, -math.pi / 2  # FR: hip 45 deg, thigh/calf 90
    assert cal.rad_to_ticks(q)[:3].tolist() == [2560, 3072, 1024]
    assert cal.rad_to_ticks(np.full(12, 0.001))[0] == 2049  # 0.65 ticks rounds up
    np.testing.assert_allclose(cal.ticks_to_rad(np.full(12, 3072)), np.full(12, math.pi / 2))
    assert cal.ticks_to_rad(np.full(12, 2048)).tolist() == [0.0] * 12


def test_direction_minus_one_and_zero_offsets():
    data = base_dict()
    data["joints"][1]["direction"] = -1  # FR_thigh mirrored
    data["joints"][2]["zero_offset_rad"] = -1.0  # FR_calf reads 2048 at -1 rad
    data["joints"][4].update(direction=-1, zero_offset_rad=0.5)  # FL_thigh both
    cal = calibration(data)
    q = np.zeros(12)
    q[1], q[2], q[4] = math.pi / 2, -1.0 + math.pi / 4, 0.5 - math.pi / 2
    assert cal.rad_to_ticks(q)[[1, 2, 4]].tolist() == [1024, 2560, 3072]
    ticks = np.full(12, 2048)
    ticks[[1, 2, 4]] = [1024, 2560, 3072]
    np.testing.assert_allclose(cal.ticks_to_rad(ticks)[[1, 2, 4]], q[[1, 2, 4]])
    assert cal.ticks_to_rad(np.full(12, 2048))[[2, 4]].tolist() == [-1.0, 0.5]
    # velocity and current flip with direction too
    assert cal.velocity_units_to_rad_s(np.full(12, 100))[[0, 1]] == pytest.approx(
        [2.3980824, -2.3980824]
    )
    assert cal.current_units_to_nm(np.full(12, 100))[[0, 1]] == pytest.approx(
        [0.269 * 1.07, -0.269 * 1.07]
    )  # 100 * 2.69 mA = 0.269 A


def test_round_trips():
    data = base_dict()
    for k in (3, 4, 5, 9, 10, 11):
        data["joints"][k]["direction"] = -1
    data["joints"][7]["zero_offset_rad"] = 0.3
    cal = calibration(data)
    rng = np.random.default_rng(0)
    for _ in range(50):
        q = rng.uniform(SPEC.lower_rad, SPEC.upper_rad)
        err = cal.ticks_to_rad(cal.rad_to_ticks(q)) - q
        assert np.max(np.abs(err)) <= math.pi / 4096 + 1e-12  # half a tick
        ticks = rng.integers(0, 4096, size=12)
        np.testing.assert_array_equal(cal.rad_to_ticks(cal.ticks_to_rad(ticks)), ticks)
        units = rng.integers(-1000, 1000, size=12)
        np.testing.assert_array_equal(
            cal.rad_s_to_velocity_units(cal.velocity_units_to_rad_s(units)), units
        )
        np.testing.assert_array_equal(
            cal.nm_to_current_units(cal.current_units_to_nm(units)), units
        )
    servo = cal.joint_to_servo_rad(q)
    np.testing.assert_allclose(cal.servo_to_joint_rad(servo), q)


def test_bus_order_permutation():
    data = base_dict()
    order = [11, 0, 5, 3, 2, 1, 10, 4, 6, 8, 7, 9]  # YAML (bus) order as spec indices
    data["joints"] = [copy.deepcopy(data["joints"][i]) for i in order]
    cal = calibration(data)
    assert cal.ids == tuple(range(1, 13))  # spec order
    assert cal.bus_ids == tuple(i + 1 for i in order)
    bus_values = np.array([10.0 * (i + 1) for i in order])  # joint k carries 10*(k+1)
    np.testing.assert_array_equal(cal.to_spec_order(bus_values), 10.0 * np.arange(1, 13))
    np.testing.assert_array_equal(cal.to_bus_order(cal.to_spec_order(bus_values)), bus_values)
    np.testing.assert_array_equal(cal.bus_to_spec, [1, 5, 4, 3, 7, 2, 8, 10, 9, 11, 6, 0])


def test_rad_to_ticks_refuses_nan_and_out_of_range():
    cal = calibration(base_dict())
    q = np.zeros(12)
    q[5] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        cal.rad_to_ticks(q)
    q[5] = 3.2  # 2048 + 3.2 * 651.9 = 4134 > 4095
    with pytest.raises(ValueError, match="'FL_calf' angle 3.2 rad is tick 4134, outside 0..4095"):
        cal.rad_to_ticks(q)


def test_virtual_servos_clip_to_their_registers():
    """What a virtual servo reports for a joint pushed past its range: Present Position clipped
    to 0..4095 (a NaN is still refused), Present Current to its int16 register."""
    cal = calibration(base_dict())
    q = np.zeros(12)
    q[5], q[6] = 3.2, -3.3  # ticks 4134 and -103
    ticks = cal.rad_to_ticks(q, clip=True)
    assert ticks[5] == 4095 and ticks[6] == 0 and ticks[0] == 2048
    q[5] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        cal.rad_to_ticks(q, clip=True)
    counts_per_nm = 1 / (0.00269 * 1.07)  # 347.4 Present Current counts a N*m
    tau = np.zeros(12)
    tau[0], tau[1], tau[2] = 1.0, 200.0, -200.0  # 200 N*m: 69,485 counts
    cur = cal.nm_to_current_units(tau)
    assert cur[0] == round(counts_per_nm) and cur[1] == 32767 and cur[2] == -32768


# Validation errors -------------------------------------------------------------------------
def joint(data, name):
    return next(j for j in data["joints"] if j["name"] == name)


def without(data, name):
    data["joints"] = [j for j in data["joints"] if j["name"] != name]
    return data


CASES = {
    "unknown_top_key": (lambda d: d.update(speed=3), "unknown key 'speed' in HwConfig"),
    "unknown_joint_key": (
        lambda d: joint(d, "FR_calf").update(gain=2),
        "unknown key 'joints[2].gain' in JointServo",
    ),
    "missing_joint": (
        lambda d: without(d, "RL_calf"),
        "spec joint 'RL_calf' of servo_dog is missing",
    ),
    "extra_joint": (
        lambda d: d["joints"].append({"name": "tail", "id": 13}),
        "'tail' is not a joint of servo_dog",
    ),
    "twice": (
        lambda d: d["joints"].append({"name": "FR_hip", "id": 13}),
        "joint 'FR_hip' is listed twice",
    ),
    "duplicate_id": (
        lambda d: joint(d, "RR_hip").update(id=3),
        "joint 'RR_hip': id 3 is already used by 'FR_calf'",
    ),
    "id_range": (
        lambda d: joint(d, "FL_hip").update(id=253),
        "joint 'FL_hip': id must be in 0..252, got 253",
    ),
    "missing_id": (
        lambda d: joint(d, "FL_hip").pop("id"),
        "joint 'FL_hip': 'id' is required for protocol dynamixel",
    ),
    "direction": (
        lambda d: joint(d, "RR_calf").update(direction=2),
        "joint 'RR_calf': direction must be 1 or -1, got 2",
    ),
    "baud": (lambda d: d.update(baud=500_000), "baud 500000 is not an X-series rate"),
    "protocol": (lambda d: d.update(protocol="can"), "'protocol' must be one of"),
    "limits_to_ticks": (
        lambda d: joint(d, "FR_thigh").update(zero_offset_rad=2.0),
        "joint 'FR_thigh': limits [-1.2, 2.6] rad map to ticks [-38, 2439], "
        "outside 0..4095 (check zero_offset_rad 2 and direction 1)",
    ),
    "imu_port": (lambda d: d.update(imu={"source": "board"}), "imu.port: a Dynamixel bus"),
    "wrong_robot": (lambda d: d.update(robot="a1"), "robot: config is for 'a1', spec is"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_validation_error_names_what_is_wrong_and_the_file(case, tmp_path):
    edit, message = CASES[case]
    data = base_dict()
    edit(data)
    path = write_yaml(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_hw_config(path, spec=SPEC)
    assert path in str(info.value)
    assert message in str(info.value)


def test_board_protocol_rules(tmp_path):
    data = base_dict(protocol="board", imu={"source": "board"})
    with pytest.raises(ConfigError, match="joint 'FR_hip': 'id' is for protocol dynamixel"):
        load_hw_config(write_yaml(tmp_path, data))
    for j in data["joints"]:
        j.pop("id")
    data["baud"] = 921_600  # any rate on the board link
    assert load_hw_config(write_yaml(tmp_path, data)).baud == 921_600
    data["imu"] = {"source": "board", "port": "/dev/ttyACM1"}
    with pytest.raises(ConfigError, match=re.escape("imu.port: with protocol board")):
        load_hw_config(write_yaml(tmp_path, data))
    data["imu"] = {"source": "board"}
    data["joints"][0], data["joints"][3] = data["joints"][3], data["joints"][0]
    with pytest.raises(ConfigError, match="channel 0 must be 'FR_hip' .spec order., got 'FL_hip'"):
        load_hw_config(write_yaml(tmp_path, data))


def test_port_override_and_frozen():
    cfg = from_dict(HwConfig, base_dict(), source="test.yaml")
    assert cfg.with_port("loop://").port == "loop://" and cfg.port == "/dev/ttyUSB0"
    with pytest.raises(AttributeError):
        cfg.port = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="zero_offset_rad must be finite"):
        JointServo(name="FR_hip", id=1, zero_offset_rad=float("nan"))

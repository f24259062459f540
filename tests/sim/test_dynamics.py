"""The dynamics-file schema: values, per-joint lists, refusals naming the field and range."""

from __future__ import annotations

import numpy as np
import pytest

from gaitforge.robots.configio import ConfigError
from gaitforge.robots.spec import load_robot_spec
from gaitforge.sim.dynamics import (
    DynamicsParams,
    from_mapping,
    load_dynamics,
    read_provenance,
    save_dynamics,
)

SPEC = load_robot_spec("servo_dog")


def test_a_file_round_trips_with_scalars_lists_and_provenance(tmp_path):
    params = DynamicsParams(latency_s=0.012, kp_scale=0.8, kd_scale=tuple([1.2] * 12),
                            joint_friction_nm=0.03, armature_kg_m2=0.002,
                            trunk_mass_delta_kg=0.1, foot_friction=0.7)
    save_dynamics(tmp_path / "d.yaml", params, {"tool": "test", "logs": {"a.gflog": "00"}})
    again = load_dynamics(tmp_path / "d.yaml", SPEC)
    assert again.to_file_dict() == params.to_file_dict()
    assert read_provenance(tmp_path / "d.yaml")["logs"] == {"a.gflog": "00"}
    np.testing.assert_array_equal(again.joint_values("kd_scale", SPEC), [1.2] * 12)
    np.testing.assert_array_equal(again.joint_values("kp_scale", SPEC), [0.8] * 12)


def test_missing_names_take_nominal_values_and_armature_the_spec():
    params = from_mapping({"latency_s": 0.004}, SPEC)
    assert params.kp_scale == 1.0 and params.foot_friction == 1.0
    np.testing.assert_array_equal(params.joint_values("armature_kg_m2", SPEC),
                                  SPEC.armature_kg_m2)


@pytest.mark.parametrize("data, message", [
    ({"latncy_s": 0.01}, "unknown dynamics parameter 'latncy_s' \\(known: latency_s, "),
    ({"kp_scale": [1.0] * 11}, "'kp_scale' must be a number or a list of 12 values "
                               "\\(one per joint of servo_dog, in the spec's order\\), got 11"),
    ({"latency_s": [0.0] * 12}, "'latency_s' must be a single number, got a list"),
    ({"latency_s": 0.2}, "'latency_s' = 0.2 is outside its range 0 .. 0.1 s"),
    ({"kd_scale": [1.0] * 5 + [20.0] + [1.0] * 6},
     "'kd_scale'\\[5\\] \\(FL_calf\\) = 20.0 is outside its range 0.1 .. 10 1"),
    ({"trunk_mass_delta_kg": -1.0}, "'trunk_mass_delta_kg' = -1.0 is outside its range "
                                    "-0.73 .. 1.46 kg"),
    ({"foot_friction": float("nan")}, "'foot_friction' = nan is outside"),
    ({"foot_friction": "high"}, "'foot_friction' must be a number or a list"),
])
def test_bad_values_are_refused_naming_the_field_and_range(data, message):
    with pytest.raises(ConfigError, match=f"file.yaml: {message}"):
        from_mapping(data, SPEC, source="file.yaml")

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
    (tmp_path / "hand.yaml").write_text("kp_scale: 0.8\nprovenance: written by hand\n")
    assert read_provenance(tmp_path / "hand.yaml") == {}  # not a mapping: none


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


@pytest.mark.parametrize("robot", ["a1", "mini_cheetah"])
def test_trunk_inertia_is_the_descriptions_scaled_with_its_mass_in_both_engines(robot_spec,
                                                                                 sim_body, robot):
    """Bullet recomputes a link's inertia from its collision shapes' bounding box whenever its
    mass is changed (as set_dynamics does every episode); the PyBullet body puts the
    description's back (a1's trunk had (0.021, 0.034, 0.044) kg m^2 in PyBullet instead of the
    URDF's (0.017, 0.057, 0.065)). Principal moments, sorted (the engines order their principal axes
    differently), at the nominal mass and 1 kg heavier."""
    spec = robot_spec(robot)
    moments = {}
    for engine in ("pybullet", "mujoco"):
        body = sim_body(spec, engine)
        for delta in (0.0, 1.0):
            body.set_dynamics(DynamicsParams(trunk_mass_delta_kg=delta))
            if engine == "pybullet":
                inertia = body.client.getDynamicsInfo(body.robot, -1)[2]
            else:
                inertia = body.model.body_inertia[body._base_id]
            moments[engine, delta] = np.sort(inertia)
    for delta in (0.0, 1.0):
        np.testing.assert_allclose(moments["pybullet", delta], moments["mujoco", delta],
                                   rtol=1e-6)
    ratio = moments["pybullet", 1.0] / moments["pybullet", 0.0]  # trunk mass + 1 kg over it
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-9)
    assert ratio[0] > 1.0

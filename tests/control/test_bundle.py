"""Policy bundles: export parity, the runner's refusals, and atomic publishing.

A small SAC agent (normaliser fed with known data, so the baked-in statistics matter) is
exported for servo_dog; the runner must reproduce the TF actor, and a bundle whose files,
robot, joint order or period do not match is refused with the reason named.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace

import numpy as np
import pytest

from gaitforge.agents import config_class, make_agent
from gaitforge.agents.export import ExportError, check_parity, random_observations
from gaitforge.control.bundle import BundleError, load_bundle, publish_bundle
from gaitforge.control.policy_io import ActionConfig, ActionMapper, ObservationBuilder
from gaitforge.control.runner import PolicyRunner
from gaitforge.robots.spec import load_robot_spec

SPEC = load_robot_spec("servo_dog")  # the same policy I/O as the conftest's bundle
BUILDER, MAPPER = ObservationBuilder(SPEC), ActionMapper(SPEC, ActionConfig(scale_rad=0.3))

def _copy(bundle_dir, tmp_path):
    return shutil.copytree(bundle_dir, tmp_path / "copy")


def test_runner_reproduces_the_tf_actor_with_the_normaliser_baked_in(agent, bundle_dir):
    runner = PolicyRunner(bundle_dir)
    obs = random_observations(agent, 32, seed=5)
    expected = agent.act(obs, deterministic=True)
    got = np.stack([runner.act(o) for o in obs])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # the normaliser is inside: the same weights without its statistics act differently
    cfg = config_class("sac")(actor_hidden=(32, 32), critic_hidden=(32, 32), batch_size=8)
    raw = make_agent("sac", cfg, BUILDER.size, SPEC.n_joints, seed=3)
    assert np.max(np.abs(raw.act(obs, deterministic=True) - got)) > 0.05
    runner.check_body(SPEC, 0.02, BUILDER.layout, MAPPER.layout)  # compatible: no error


def test_tflite_fallback_backend_agrees(agent, bundle_dir):
    litert, tflite = PolicyRunner(bundle_dir), PolicyRunner(bundle_dir, backend="tflite")
    assert tflite.backend == "tflite"
    obs = random_observations(agent, 8, seed=6)
    for o in obs:
        np.testing.assert_allclose(litert.act(o), tflite.act(o), atol=1e-6)


def test_parity_failure_is_an_export_error(agent, bundle_dir):
    obs = random_observations(agent, 8)
    with pytest.raises(ExportError, match="differ by"):
        check_parity(agent, bundle_dir / "policy.tflite", obs, tolerance=-1.0)


def test_a_tampered_file_is_refused_by_name(bundle_dir, tmp_path):
    b = _copy(bundle_dir, tmp_path)
    model = bytearray((b / "policy.tflite").read_bytes())
    model[len(model) // 2] ^= 0xFF
    (b / "policy.tflite").write_bytes(bytes(model))
    with pytest.raises(BundleError, match="'policy.tflite' was modified"):
        PolicyRunner(b)


def test_missing_and_extra_files_are_refused(bundle_dir, tmp_path):
    b = _copy(bundle_dir, tmp_path)
    (b / "notes.txt").write_text("hi")
    with pytest.raises(BundleError, match="'notes.txt' is not listed"):
        load_bundle(b)
    (b / "notes.txt").unlink()
    (b / "policy.tflite").unlink()
    with pytest.raises(BundleError, match="'policy.tflite' is missing"):
        load_bundle(b)


def test_the_wrong_robot_is_refused(bundle_dir):
    a1 = load_robot_spec("a1")
    with pytest.raises(BundleError, match="for robot 'servo_dog', not 'a1'"):
        PolicyRunner(bundle_dir).check_body(a1, 0.02, ObservationBuilder(a1).layout,
                                            ActionMapper(a1).layout)


def test_a_permuted_joint_order_is_refused_naming_the_positions(bundle_dir):
    layout = MAPPER.layout
    order = list(layout["joint_order"])
    order[0], order[3] = order[3], order[0]
    with pytest.raises(BundleError, match="joint order differs.*0: FR_hip != FL_hip"):
        PolicyRunner(bundle_dir).check_body(SPEC, 0.02, BUILDER.layout,
                                            {**layout, "joint_order": order})


def test_period_scale_and_observation_mismatches_are_refused(bundle_dir):
    runner = PolicyRunner(bundle_dir)
    with pytest.raises(BundleError, match="control period 0.02 s, the body runs at 0.01 s"):
        runner.check_body(SPEC, 0.01, BUILDER.layout, MAPPER.layout)
    with pytest.raises(BundleError, match="action.scale_rad is 0.3"):
        runner.check_body(SPEC, 0.02, BUILDER.layout,
                          ActionMapper(SPEC, ActionConfig(scale_rad=0.25)).layout)
    other = ObservationBuilder(SPEC, replace(BUILDER.config, joint_vel_scale=0.1))
    with pytest.raises(BundleError, match="observation term 'joint_vel'"):
        runner.check_body(SPEC, 0.02, other.layout, MAPPER.layout)


def test_a_changed_robot_spec_is_refused(bundle_dir):
    changed = replace(SPEC, standing_height_m=SPEC.standing_height_m + 0.01)
    assert changed.sha256 != SPEC.sha256
    with pytest.raises(BundleError, match="robot spec of 'servo_dog' changed"):
        PolicyRunner(bundle_dir).check_body(changed, 0.02, BUILDER.layout, MAPPER.layout)


@pytest.mark.parametrize("path, value, named", [
    (("control_dt_s",), 0.01, "'control_dt_s'"),
    (("robot", "spec_sha256"), "0" * 64, "'robot.spec_sha256'"),
    (("observation", "layout", 1, "scale"), [0.5, 0.5, 0.5], "'observation.layout'"),
    (("action", "scale_rad"), 0.5, "'action.scale_rad'"),
    (("source", "run"), "elsewhere", "'source.run'"),
])
def test_an_edit_to_any_manifest_field_is_refused_naming_it(bundle_dir, tmp_path, path,
                                                            value, named):
    b = _copy(bundle_dir, tmp_path)
    manifest = json.loads((b / "bundle.json").read_text())
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (b / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=f"field {re.escape(named)} was edited"):
        load_bundle(b)


def test_a_bundle_of_the_old_format_is_refused_with_how_to_reexport(bundle_dir, tmp_path):
    b = _copy(bundle_dir, tmp_path)
    manifest = json.loads((b / "bundle.json").read_text())
    manifest["format_version"] = 1
    manifest["source"] = {"run": "/runs/dog-walk"}
    (b / "bundle.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"older gaitforge: re-export it with `gaitforge "
                                          r"export /runs/dog-walk --overwrite`"):
        load_bundle(b)


def test_the_policy_io_is_rebuilt_from_the_bundle_alone(bundle_dir):
    bundle = load_bundle(bundle_dir)
    builder = ObservationBuilder.from_layout(SPEC, bundle.observation_layout)
    mapper = ActionMapper.from_layout(SPEC, bundle.action_layout)
    assert builder.layout == BUILDER.layout and mapper.layout == MAPPER.layout
    assert "config" not in bundle.manifest["source"]  # provenance is not needed to deploy


def test_publish_refuses_to_overwrite_and_replaces_atomically(bundle_dir, tmp_path,
                                                              bundle_manifest):
    staging = tmp_path / "s"
    shutil.copytree(bundle_dir, staging)
    (staging / "bundle.json").unlink()
    with pytest.raises(BundleError, match="exists"):
        publish_bundle(staging, bundle_dir, bundle_manifest(), overwrite=False)
    out = tmp_path / "out"
    shutil.copytree(bundle_dir, out)
    b = publish_bundle(staging, out, bundle_manifest(0.04), overwrite=True)
    assert b.control_dt_s == 0.04 and not staging.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "out"] or \
        sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_folder_without_manifest_is_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a policy bundle"):
        load_bundle(tmp_path)

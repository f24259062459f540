"""Shared by the control tests: a small SAC agent for servo_dog and its exported bundle."""

from __future__ import annotations

import numpy as np
import pytest

from gaitforge.agents import config_class, make_agent
from gaitforge.agents.export import export_actor, random_observations
from gaitforge.control.bundle import manifest, publish_bundle
from gaitforge.control.policy_io import ActionConfig, ActionMapper, ObservationBuilder
from gaitforge.robots.spec import load_robot_spec

SPEC = load_robot_spec("servo_dog")
BUILDER, MAPPER = ObservationBuilder(SPEC), ActionMapper(SPEC, ActionConfig(scale_rad=0.3))


@pytest.fixture(scope="session")
def agent():
    cfg = config_class("sac")(actor_hidden=(32, 32), critic_hidden=(32, 32), batch_size=8)
    a = make_agent("sac", cfg, BUILDER.size, SPEC.n_joints, seed=3)
    rng = np.random.default_rng(0)
    a.observe(rng.normal(0.5, 3.0, (500, BUILDER.size)))  # mean 0.5, std 3: far from identity
    return a


def _manifest(control_dt_s=0.02, observation_layout=None):
    return manifest(spec=SPEC, observation_layout=observation_layout or BUILDER.layout,
                    normalizer={},
                    action_layout=MAPPER.layout, control_dt_s=control_dt_s,
                    source={"run": "test"})


@pytest.fixture(scope="session")
def bundle_dir(agent, tmp_path_factory):
    root = tmp_path_factory.mktemp("bundles")
    staging = root / "staging"
    staging.mkdir()
    report = export_actor(agent, staging, random_observations(agent, 64))
    assert report["max_abs_diff"] <= 1e-5
    publish_bundle(staging, root / "b", _manifest(), overwrite=False)
    return root / "b"


@pytest.fixture(scope="session")
def bundle_manifest():
    """`bundle_manifest(control_dt_s=0.02, observation_layout=None)`: a manifest for
    servo_dog's default policy I/O (or this observation layout)."""
    return _manifest



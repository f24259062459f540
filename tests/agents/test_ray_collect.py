"""The pieces of Ray collection that need no cluster (and no Ray installed): the config and its
checks, the install sentence, seed streams, weights as plain arrays, checksums, and a collector
driven in this process: its batches, episodes and determinism given its seed."""

from __future__ import annotations

import functools
import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

from gaitforge.agents import config_class, make_agent
from gaitforge.agents.checkpoint import CheckpointError
from gaitforge.agents.ray_collect import (
    INSTALL_HINT,
    Collector,
    RayConfig,
    actor_state,
    collector_seed,
    collector_streams,
    import_ray,
    load_actor_state,
    rows_checksum,
)
from gaitforge.sim.vec_env import VecEnv

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sim"))
import fake_envs  # noqa: E402

SMALL = config_class("sac")(actor_hidden=(16,), critic_hidden=(16,), batch_size=16)
MAKE_ENV = functools.partial(VecEnv, [fake_envs.PointMassEnv] * 2)


def collector(seed, *, critic=False, index=0, batch_steps=20):
    spec = ("sac", SMALL, fake_envs.OBS_DIM, 2)
    return Collector(index, 0, seed, MAKE_ENV, spec, critic, batch_steps)


@pytest.mark.parametrize("field, value, message", [
    ("enabled", "yes", "enabled must be true or false"),
    ("address", 6379, "address must be a string"),
    ("collectors", 0, "collectors must be an integer >= 1"),
    ("collectors", 1.5, "collectors must be an integer >= 1"),
    ("batch_steps", 0, "batch_steps must be an integer >= 1"),
    ("max_restarts", -1, "max_restarts must be an integer >= 0"),
    ("collector_cpus", 0, "collector_cpus must be a number > 0"),
    ("collector_cpus", True, "collector_cpus must be a number > 0"),
])
def test_bad_ray_settings_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        RayConfig(**{field: value})
    assert RayConfig(collector_cpus=0.5, address="head:6379").collector_cpus == 0.5


def test_without_ray_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ImportError) as err:
        import_ray()
    assert str(err.value) == INSTALL_HINT
    assert "pip install 'gaitforge[ray]'" in INSTALL_HINT and "not ray[rllib]" in INSTALL_HINT


def test_each_collector_and_restart_has_its_own_seed_stream():
    seeds = {collector_seed(0, start, i, k) for start in (0, 5000) for i in range(4)
             for k in range(3)}
    assert len(seeds) == 24
    assert collector_seed(7, 0, 1, 2) == collector_seed(7, 0, 1, 2)
    env_seed, rng_seed, agent_seed = collector_streams(123)
    assert len({env_seed, rng_seed, agent_seed}) == 3 and collector_streams(123)[0] == env_seed


def test_weights_travel_as_plain_arrays():
    source = make_agent("sac", SMALL, fake_envs.OBS_DIM, 2, seed=1)
    source.observe(np.random.default_rng(0).normal(2.0, 3.0, (50, fake_envs.OBS_DIM)))
    state = actor_state(source)
    assert all(type(v) is np.ndarray for v in state.values())  # nothing of TensorFlow
    assert {k.split("/")[0] for k in state} == {"actor", "obs_norm"}
    target = make_agent("sac", SMALL, fake_envs.OBS_DIM, 2, seed=2)
    obs = np.random.default_rng(1).normal(size=(5, fake_envs.OBS_DIM)).astype(np.float32)
    assert not np.array_equal(source.act(obs, True), target.act(obs, True))
    load_actor_state(target, state)
    np.testing.assert_array_equal(source.act(obs, True), target.act(obs, True))
    wider = make_agent("sac", {**SMALL.__dict__, "actor_hidden": (32,)}, fake_envs.OBS_DIM, 2)
    with pytest.raises(CheckpointError, match="weights: 'actor/l0/w' has shape"):
        load_actor_state(wider, state)


def test_checksum_covers_every_field_in_order():
    rng = np.random.default_rng(0)
    rows = {f: rng.normal(size=(3, 2)).astype(np.float32)
            for f in ("obs", "action", "reward", "next_obs", "terminated")}
    expected = hashlib.sha256(b"".join(rows[f].tobytes() for f in rows)).hexdigest()
    assert rows_checksum(rows) == expected
    changed = {**rows, "reward": rows["reward"].copy()}
    changed["reward"][2, 1] += 1e-3
    assert rows_checksum(changed) != expected
    with_critic = {**rows, "critic_obs": rows["obs"], "next_critic_obs": rows["obs"]}
    assert rows_checksum(with_critic) != expected


def test_a_collector_batch_is_whole_and_its_episodes_are_checked():
    c = collector(seed=5, critic=True, batch_steps=60)
    batch = c.collect(-1, [])
    rows = batch["rows"]
    assert (batch["collector"], batch["incarnation"], batch["index"], batch["version"]) == (
        0, 0, 0, -1)
    assert rows["obs"].shape == (120, fake_envs.OBS_DIM)  # 60 steps x 2 envs, step-major
    assert rows["critic_obs"].shape == (120, fake_envs.CRITIC_DIM)
    assert rows_checksum(rows) == batch["checksum"]
    assert np.all(np.abs(rows["action"]) <= 1.0)  # no weights yet: uniform random actions
    # each reported episode: its return, its length and its digest recomputed from the rows
    assert batch["episodes"]
    per_env = {j: rows_slice(rows, j) for j in range(2)}
    for ep in batch["episodes"]:
        matches = [j for j, r in per_env.items() if _first_episode_digest(r, ep["length"])
                   == ep["digest"]]
        assert matches, "an episode's digest matches no env's transitions"
        j = matches[0]
        assert ep["return"] == pytest.approx(float(per_env[j]["reward"][:ep["length"]].sum()),
                                             rel=1e-5)
        assert set(ep["terms"]) == {"distance", "effort"}
        per_env[j] = {k: v[ep["length"]:] for k, v in per_env[j].items()}
    assert c.collect(-1, [])["index"] == 1
    c.close()


def rows_slice(rows, j, num_envs=2):
    return {k: v[j::num_envs] for k, v in rows.items()}


def _first_episode_digest(rows, length):
    h = hashlib.sha256()
    for t in range(length):
        for f in ("obs", "action", "reward", "next_obs", "terminated"):
            h.update(np.asarray(rows[f][t], np.float32).tobytes())
    return h.hexdigest()


def test_a_collector_is_deterministic_given_its_seed_and_weights():
    agent = make_agent("sac", SMALL, fake_envs.OBS_DIM, 2, seed=3)
    weights = [actor_state(agent)]
    runs = []
    for seed in (11, 11, 12):
        c = collector(seed)
        warmup = c.collect(-1, [])
        acting = c.collect(0, weights)  # the exploring actor, noise from the collector's seed
        runs.append((warmup["checksum"], acting["checksum"], acting["version"]))
        c.close()
    assert runs[0] == runs[1]
    assert runs[0][0] != runs[2][0] and runs[0][1] != runs[2][1]
    assert runs[0][2] == 0

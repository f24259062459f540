"""SAC and TD3 as whole agents: registry, config checks, the Agent protocol, act(), the
deterministic actor, checkpoint round trip, seeds that reproduce, and stacked updates equal to
one-by-one updates."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from gaitforge.agents import Agent, config_class, known_agents, make_agent
from gaitforge.agents.base import anchor_penalty
from gaitforge.agents.checkpoint import CheckpointError
from gaitforge.agents.config import AgentConfig
from gaitforge.agents.sac import SAC, SACConfig
from gaitforge.agents.td3 import TD3, TD3Config

OBS, ACT, PRIV, B = 5, 2, 3, 16
SMALL = {"actor_hidden": (16, 16), "critic_hidden": (16, 16), "batch_size": B}


def batches(n, seed=0, critic_obs_dim=0, stacked=None):
    rng = np.random.default_rng(seed)
    lead = () if stacked is None else (stacked,)
    out = []
    for _ in range(n):
        b = {"obs": rng.normal(size=(*lead, B, OBS)), "action": rng.uniform(-1, 1, (*lead, B, ACT)),
             "reward": rng.normal(size=(*lead, B)), "next_obs": rng.normal(size=(*lead, B, OBS)),
             "terminated": (rng.uniform(size=(*lead, B)) < 0.1).astype(np.float32)}
        if critic_obs_dim:
            b["critic_obs"] = rng.normal(size=(*lead, B, critic_obs_dim))
            b["next_critic_obs"] = rng.normal(size=(*lead, B, critic_obs_dim))
        out.append({k: v.astype(np.float32) for k, v in b.items()})
    return out


def params(agent):
    return {k: v.numpy().copy() for k, v in agent.state_variables().items()}


# ------------------------------------------------------------------ registry and configs

def test_registry_and_unknown_names():
    assert known_agents() == ("sac", "td3")
    assert config_class("td3") is TD3Config
    with pytest.raises(ValueError, match=r"unknown agent 'ppo' \(known: sac, td3\)"):
        make_agent("ppo", None, OBS, ACT)
    with pytest.raises(ValueError, match="unknown key 'learning_rate' in SACConfig"):
        make_agent("sac", {"learning_rate": 1e-3}, OBS, ACT)
    with pytest.raises(ValueError, match="must be a TD3Config or a mapping"):
        make_agent("td3", SACConfig(), OBS, ACT)
    with pytest.raises(ValueError, match="asymmetric_critic needs critic_obs_dim > 0"):
        make_agent("sac", {"asymmetric_critic": True}, OBS, ACT)
    with pytest.raises(ValueError, match="obs_dim must be an integer >= 1"):
        make_agent("sac", None, 0, ACT)
    agent = make_agent("sac", SACConfig(batch_size=B, critic_hidden=[8]), OBS, ACT)
    assert agent.config.critic_hidden == (8,)  # a YAML list becomes a tuple


@pytest.mark.parametrize("cls, field, value", [
    (SACConfig, "actor_lr", -1e-3),
    (SACConfig, "critic_lr", 0.0),
    (SACConfig, "alpha_lr", "3e-4"),
    (SACConfig, "gamma", 0.0),
    (SACConfig, "gamma", 1.5),
    (SACConfig, "tau", 0.0),
    (SACConfig, "tau", 2.0),
    (SACConfig, "batch_size", 0),
    (SACConfig, "batch_size", 32.0),
    (SACConfig, "init_alpha", -1.0),
    (SACConfig, "actor_hidden", (256, 0)),
    (SACConfig, "critic_hidden", 256),
    (SACConfig, "critic_layer_norm", "yes"),
    (SACConfig, "critic_dropout", 1.0),
    (TD3Config, "critic_dropout", -0.01),
    (SACConfig, "log_std_max", -10.0),
    (TD3Config, "actor_lr", -3e-4),
    (TD3Config, "policy_delay", 0),
    (TD3Config, "target_noise", -0.2),
    (TD3Config, "exploration_noise", float("nan")),
    (TD3Config, "critic_hidden", (64, -64)),
])
def test_bad_hyperparameters_name_the_field(cls, field, value):
    with pytest.raises(ValueError, match=field):
        cls(**{field: value})
    name = "sac" if cls is SACConfig else "td3"
    with pytest.raises(ValueError, match=field):
        make_agent(name, {field: value}, OBS, ACT)


def test_configs_share_one_base_and_name_themselves():
    for cls, name in ((SACConfig, "sac"), (TD3Config, "td3")):
        assert issubclass(cls, AgentConfig) and config_class(name) is cls
        assert cls().name == name
        with pytest.raises(ValueError, match=f"name of a {cls.__name__} must be '{name}'"):
            cls(name="ppo")
    shared = {f.name for f in dataclasses.fields(AgentConfig)}
    assert {"batch_size", "gamma", "tau", "critic_hidden", "obs_clip"} <= shared
    assert SACConfig(gamma=0.9).gamma == TD3Config(gamma=0.9).gamma == 0.9
    with pytest.raises(ValueError, match="AgentConfig names no agent: build one of SACConfig"):
        AgentConfig()  # the base is not an agent's config
    # utd is the trainer's (TrainConfig.utd), not an agent's
    with pytest.raises(ValueError, match="unknown key 'utd' in SACConfig"):
        make_agent("sac", {"utd": 2}, OBS, ACT)


# ------------------------------------------------------------------ the Agent protocol

@pytest.mark.parametrize("name, cls", [("sac", SAC), ("td3", TD3)])
def test_both_agents_satisfy_the_protocol(name, cls):
    agent = make_agent(name, SMALL, OBS, ACT, seed=0)
    assert isinstance(agent, Agent) and isinstance(agent, cls)
    assert agent.algo == name and agent.config.name == name
    assert (agent.obs_dim, agent.act_dim, agent.critic_obs_dim) == (OBS, ACT, 0)
    policy = agent.deterministic_actor()
    assert isinstance(policy, tf.Module)
    assert (policy.obs_dim, policy.act_dim) == (OBS, ACT)
    assert policy.obs_norm is agent.obs_norm  # the normaliser is inside, not a copy
    assert not isinstance(object(), Agent)


@pytest.mark.parametrize("name", ["sac", "td3"])
def test_deterministic_actor_matches_act(name):
    agent = make_agent(name, SMALL, OBS, ACT, seed=2)
    rng = np.random.default_rng(1)
    agent.observe(rng.normal(0.5, 3.0, (200, OBS)))  # a normaliser far from the identity
    for b in batches(3, seed=3):
        agent.update(b)  # trained weights, not the initial ones
    obs = rng.normal(0.5, 3.0, (9, OBS)).astype(np.float32)
    policy = agent.deterministic_actor()
    expected = agent.act(obs, deterministic=True)
    np.testing.assert_array_equal(policy(tf.constant(obs)).numpy(), expected)
    np.testing.assert_allclose(policy.action(tf.constant(obs)).numpy(), expected, atol=1e-6)
    # it follows the agent: after another update and more observations, still equal
    agent.update(batches(1, seed=4)[0])
    agent.observe(rng.normal(size=(10, OBS)))
    np.testing.assert_array_equal(policy(tf.constant(obs)).numpy(),
                                  agent.act(obs, deterministic=True))


# ------------------------------------------------------------------ acting

@pytest.mark.parametrize("name", ["sac", "td3"])
def test_act_is_batched_and_bounded(name):
    agent = make_agent(name, SMALL, OBS, ACT, seed=0)
    obs = np.random.default_rng(0).normal(size=(7, OBS)).astype(np.float32) * 10
    agent.observe(obs)
    for deterministic in (True, False):
        a = agent.act(obs, deterministic=deterministic)
        assert a.shape == (7, ACT) and a.dtype == np.float32
        assert np.all(np.abs(a) <= 1.0)
    np.testing.assert_array_equal(agent.act(obs, True), agent.act(obs, True))
    assert not np.array_equal(agent.act(obs, False), agent.act(obs, False))
    with pytest.raises(ValueError, match=r"obs must have shape \(N, 5\)"):
        agent.act(obs[0])


# ------------------------------------------------------------------ checkpoints and seeds

@pytest.mark.parametrize("name, extra", [
    ("sac", {}),
    ("sac", {"asymmetric_critic": True, "critic_layer_norm": True}),
    ("sac", {"critic_layer_norm": True, "critic_dropout": 0.1}),  # the masks' stream too
    ("td3", {"asymmetric_critic": True, "critic_layer_norm": True, "policy_delay": 2}),
])
def test_checkpoint_round_trip(tmp_path, name, extra):
    cfg = {**SMALL, **extra}
    priv = PRIV if extra.get("asymmetric_critic") else 0
    data = batches(6, seed=1, critic_obs_dim=priv)
    agent = make_agent(name, cfg, OBS, ACT, critic_obs_dim=priv, seed=3)
    agent.observe(data[0]["obs"], data[0].get("critic_obs"))
    for b in data[:3]:  # TD3: 3 updates, so the next one (4th) also moves the actor
        agent.update(b)
    path = tmp_path / "agent.npz"
    agent.save(path)

    fresh = make_agent(name, cfg, OBS, ACT, critic_obs_dim=priv, seed=99)
    fresh.load(path)
    obs = data[4]["obs"]
    np.testing.assert_array_equal(agent.act(obs, True), fresh.act(obs, True))
    np.testing.assert_array_equal(agent.act(obs, False), fresh.act(obs, False))  # RNG too
    m1, m2 = agent.update(data[3]), fresh.update(data[3])
    assert m1 == m2
    p1, p2 = params(agent), params(fresh)
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k], err_msg=k)
    s1, s2 = agent.get_state(), fresh.get_state()
    assert s1.keys() == s2.keys()
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k], err_msg=k)


def test_state_mismatch_is_refused_with_the_key():
    sac = make_agent("sac", SMALL, OBS, ACT)
    state = sac.get_state()
    wider = make_agent("sac", {**SMALL, "critic_hidden": (32, 16)}, OBS, ACT)
    with pytest.raises(CheckpointError, match=r"'critic1/l0/w' has shape \(7, 16\)"):
        wider.set_state(state)
    with pytest.raises(CheckpointError, match="holds state of 'sac', not 'td3'"):
        make_agent("td3", SMALL, OBS, ACT).set_state(state)
    with pytest.raises(CheckpointError, match=r"\(obs_dim, act_dim, critic_obs_dim\)"):
        make_agent("sac", SMALL, OBS + 1, ACT).set_state(state)
    del state["opt_critic/m/critic2/l1/b"]
    before = params(sac)
    with pytest.raises(CheckpointError, match="missing 'opt_critic/m/critic2/l1/b'"):
        sac.set_state(state)
    after = params(sac)  # nothing was assigned
    assert all(np.array_equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("name", ["sac", "td3"])
def test_same_seed_same_parameters(name):
    data = batches(5, seed=2)
    runs = []
    for seed in (7, 7, 8):
        agent = make_agent(name, SMALL, OBS, ACT, seed=seed)
        agent.observe(data[0]["obs"])
        for b in data:
            agent.update(b)
        runs.append(params(agent))
    same = all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])
    differ = any(not np.array_equal(runs[0][k], runs[2][k]) for k in runs[0] if "/l0/w" in k)
    assert same and differ


@pytest.mark.parametrize("name", ["sac", "td3"])
def test_stacked_updates_equal_one_by_one(name):
    k = 3
    stacked = batches(1, seed=4, stacked=k)[0]
    one = make_agent(name, SMALL, OBS, ACT, seed=5)
    many = make_agent(name, SMALL, OBS, ACT, seed=5)
    for i in range(k):
        m_one = one.update({f: v[i] for f, v in stacked.items()})
    m_many = many.update_stacked(stacked)
    assert m_one == pytest.approx(m_many, rel=1e-6)
    p1, p2 = params(one), params(many)
    for key in p1:
        np.testing.assert_allclose(p1[key], p2[key], rtol=1e-6, atol=1e-7, err_msg=key)
    assert int(many.update_step.numpy()) == k


def test_update_checks_the_batch():
    agent = make_agent("sac", SMALL, OBS, ACT)
    b = batches(1)[0]
    with pytest.raises(ValueError, match="batch lacks field 'terminated'"):
        agent.update({k: v for k, v in b.items() if k != "terminated"})
    with pytest.raises(ValueError, match=r"batch field 'obs' has shape \(8, 5\)"):
        agent.update({**b, "obs": b["obs"][:8]})


def test_asymmetric_critic_sees_privileged_state_and_actor_does_not():
    agent = make_agent("sac", {**SMALL, "asymmetric_critic": True}, OBS, ACT,
                       critic_obs_dim=PRIV)
    assert agent.critics.online[0].in_dim == OBS + PRIV + ACT
    assert agent.actor.in_dim == OBS
    b = batches(1, critic_obs_dim=PRIV)[0]
    q = agent.update(b)["q_mean"]
    assert np.isfinite(q)
    cfg = dataclasses.replace(agent.config, asymmetric_critic=False)
    plain = make_agent("sac", cfg, OBS, ACT, critic_obs_dim=PRIV)  # privileged dims ignored
    assert plain.critics.online[0].in_dim == OBS + ACT
    plain.update(b)  # extra fields are ignored


@pytest.mark.parametrize("name", ["sac", "td3"])
def test_the_actor_anchor_is_the_weighted_mean_squared_action_difference(name):
    """actor_anchor 0.5: zero at the anchor; after the actor moves, 0.5 x the mean over rows
    and joints of (its deterministic action - the anchor's)^2, worked out from act()."""
    agent = make_agent(name, {**SMALL, "actor_anchor": 0.5}, OBS, ACT, seed=3)
    obs = np.random.default_rng(0).normal(size=(8, OBS)).astype(np.float32)
    normalised = agent.obs_norm.normalize_tf(obs)

    def penalty():
        return float(anchor_penalty(agent._action_head, agent.actor, agent.anchor, 0.5,
                                    normalised))
    assert penalty() == 0.0
    before = agent.act(obs, deterministic=True)
    for w in agent.actor.weights:
        w.assign(w * 1.5)
    after = agent.act(obs, deterministic=True)
    want = 0.5 * np.mean((after - before) ** 2)
    assert want > 1e-4
    assert penalty() == pytest.approx(want, rel=1e-5)
    agent.set_anchor()  # anchored where it is now
    assert penalty() == 0.0
    with pytest.raises(ValueError, match="actor_anchor 0"):
        make_agent(name, SMALL, OBS, ACT).set_anchor()


def test_a_conservative_critic_values_the_logged_actions_above_the_policys():
    """The same 60 updates from the same start on data whose actions are all -0.5 (a
    deterministic log): with critic_conservative the critic's Q(s, a_data) - Q(s, pi(s))
    ends larger than without (the actor climbs the critic meanwhile); only with it does the
    update report the gap."""
    data = batches(60, seed=8)
    for b in data:
        b["action"] = np.full_like(b["action"], -0.5)
    margin, reported = {}, {}
    for weight in (0.0, 10.0):
        agent = make_agent("sac", {**SMALL, "critic_conservative": weight}, OBS, ACT, seed=5)
        for b in data:
            reported[weight] = agent.update(b).get("conservative_gap")
        obs = agent.obs_norm.normalize_tf(data[0]["obs"])
        q_data = agent.critics.min_q(obs, tf.constant(data[0]["action"]))
        q_pi = agent.critics.min_q(obs, tf.constant(agent.act(data[0]["obs"],
                                                              deterministic=True)))
        margin[weight] = float(tf.reduce_mean(q_data - q_pi))
    assert reported[0.0] is None and reported[10.0] is not None  # off: not computed
    assert margin[10.0] > margin[0.0] + 0.05  # measured: -0.021 against -0.127
    with pytest.raises(ValueError, match="critic_conservative"):
        make_agent("sac", {**SMALL, "critic_conservative": -1.0}, OBS, ACT)


def test_an_anchored_actor_stays_nearer_its_parent():
    """The same 30 updates from the same start: with a strong anchor the deterministic
    actions move less from where they started than without."""
    obs = batches(1, seed=6)[0]["obs"]
    moved = {}
    for weight in (0.0, 50.0):
        agent = make_agent("sac", {**SMALL, "actor_anchor": weight}, OBS, ACT, seed=5)
        start = agent.act(obs, deterministic=True)
        for b in batches(30, seed=7):
            agent.update(b)
        moved[weight] = np.mean((agent.act(obs, deterministic=True) - start) ** 2)
    assert moved[50.0] < 0.5 * moved[0.0]

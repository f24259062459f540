"""Losses against numbers worked out by hand on tiny fixed networks.

Every network here is a single linear layer (hidden=()) with weights set by hand, so each
expected value is a few lines of plain arithmetic, written out with comments.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from gaitforge.agents import make_agent, sac, td3
from gaitforge.agents.critics import CriticEnsemble
from gaitforge.agents.networks import MLP


def set_linear(net, w, b):
    net.params["l0/w"].assign(np.array(w, np.float32).reshape(net.in_dim, net.out_dim))
    net.params["l0/b"].assign(np.array(b, np.float32).reshape(net.out_dim))
    return net


def linear(in_dim, out_dim, w, b, name="net"):
    return set_linear(MLP(in_dim, (), out_dim, rng=tf.random.Generator.from_seed(0), name=name),
                      w, b)


def twin(online, targets=(([[0.0], [0.0]], [0.0]),) * 2):
    """The twin pair over (s, a) in 1 + 1 dims, its four networks linear with hand weights:
    online = ((w1, b1), (w2, b2)) for Q1, Q2; targets likewise for Q1', Q2'."""
    return ensemble(online, targets)


def ensemble(online, targets, subset=2):
    """CriticEnsemble of len(online) linear critics with hand weights, as `twin`."""
    critics = CriticEnsemble(2, (), rng=tf.random.Generator.from_seed(0), lr=1e-3,
                             num=len(online), subset=subset)
    for net, (w, b) in zip(critics.online + critics.targets, [*online, *targets], strict=True):
        set_linear(net, w, b)
    return critics


# Q(s, a) = w_s * s + w_a * a + b: the critics and targets of the loss tests below
CRITICS = (([[1.0], [1.0]], [0.0]), ([[0.0], [2.0]], [0.5]))  # Q1 = s + a, Q2 = 2a + 0.5
TARGETS = (([[1.0], [2.0]], [0.0]), ([[0.5], [-1.0]], [1.0]))  # Q1' = s + 2a, Q2' = s/2 - a + 1


def test_twin_critics_q_values_min_and_td_loss():
    critics = twin(CRITICS, TARGETS)
    s, a, y = f32([[1.0], [-1.0]]), f32([[0.5], [2.0]]), f32([1.0, 0.0])
    q1, q2 = critics.q_values(s, a)
    np.testing.assert_allclose(q1.numpy(), [1.5, 1.0])  # s + a
    np.testing.assert_allclose(q2.numpy(), [1.5, 4.5])  # 2a + 0.5
    t1, t2 = critics.q_values(s, a, target=True)
    np.testing.assert_allclose(t1.numpy(), [2.0, 3.0])  # s + 2a
    np.testing.assert_allclose(t2.numpy(), [1.0, -1.5])  # s/2 - a + 1
    np.testing.assert_allclose(critics.min_q(s, a).numpy(), [1.5, 1.0])
    np.testing.assert_allclose(critics.min_q(s, a, target=True).numpy(), [1.0, -1.5])
    loss, q_mean = critics.td_loss(s, a, y)
    # mean((Q1 - y)^2) + mean((Q2 - y)^2) = (0.25 + 1) / 2 + (0.25 + 20.25) / 2 = 10.875
    assert float(loss) == pytest.approx(10.875, rel=1e-6)
    assert float(q_mean) == pytest.approx(1.25, rel=1e-6)


def test_an_ensemble_bootstraps_from_the_min_of_a_drawn_subset_and_the_actor_from_its_mean():
    # Q1' .. Q4' = s + a, 2a + 0.5, s + 2a, s/2 - a + 1; at (s, a) = (1, 0.5), (-1, 2):
    targets = (*CRITICS, *TARGETS)
    critics = ensemble(targets, targets)
    s, a = f32([[1.0], [-1.0]]), f32([[0.5], [2.0]])
    values = np.array([[1.5, 1.0], [1.5, 4.5], [2.0, 3.0], [1.0, -1.5]])
    rng = tf.random.Generator.from_seed(7)
    twin_rng = tf.random.Generator.from_seed(7)
    picked = np.argsort(twin_rng.uniform([4]).numpy())[:2]  # the same draw, made here
    np.testing.assert_allclose(critics.min_q(s, a, target=True, rng=rng).numpy(),
                               values[picked].min(axis=0))
    # the actor climbs the ensemble's mean: ((1.5 + 1.5 + 2 + 1) / 4, (1 + 4.5 + 3 - 1.5) / 4)
    np.testing.assert_allclose(critics.actor_q(s, a).numpy(), [1.5, 1.75])
    with pytest.raises(ValueError, match="pass rng"):
        critics.min_q(s, a, target=True)
    # over many draws every pair turns up: the min of all four is not what it bootstraps from
    draws = {tuple(critics.min_q(s, a, target=True, rng=rng).numpy()) for _ in range(60)}
    assert len(draws) > 2 and (1.0, -1.5) in draws and (1.5, 1.0) in draws
    # the twin pair draws nothing: its rng is untouched
    pair, before = twin(CRITICS, TARGETS), rng.state.numpy().copy()
    np.testing.assert_allclose(pair.min_q(s, a, target=True, rng=rng).numpy(), [1.0, -1.5])
    np.testing.assert_array_equal(rng.state.numpy(), before)
    np.testing.assert_allclose(pair.actor_q(s, a).numpy(), [1.5, 1.0])  # min(Q1, Q2)


def test_ensemble_loss_sums_over_every_critic_and_sac_learns_with_one():
    critics = ensemble((*CRITICS, *CRITICS), (*TARGETS, *TARGETS), subset=3)
    s, a, y = f32([[1.0], [-1.0]]), f32([[0.5], [2.0]]), f32([1.0, 0.0])
    loss, _ = critics.td_loss(s, a, y)
    assert float(loss) == pytest.approx(2 * 10.875, rel=1e-6)  # twice the pair's loss
    with pytest.raises(ValueError, match="critic_subset \\(3\\) must be at most num_critics"):
        sac.SACConfig(num_critics=2, critic_subset=3)
    for algo in ("sac", "td3"):  # five critics, the TD target's min over three of them
        agent = make_agent(algo, {"actor_hidden": (8,), "critic_hidden": (8,), "batch_size": 4,
                                  "num_critics": 5, "critic_subset": 3}, obs_dim=3, act_dim=2,
                           seed=0)
        rng = np.random.default_rng(0)
        batch = {"obs": rng.normal(size=(4, 3)), "action": rng.uniform(-1, 1, (4, 2)),
                 "reward": rng.normal(size=4), "next_obs": rng.normal(size=(4, 3)),
                 "terminated": np.array([0, 0, 1, 0])}
        before = [c.params["l0/w"].numpy() for c in agent.critics.online]
        metrics = agent.update(batch)
        assert np.isfinite(metrics["critic_loss"])
        assert all(not np.array_equal(b, c.params["l0/w"].numpy())  # every critic learns
                   for b, c in zip(before, agent.critics.online, strict=True))
        assert {f"critic{i}/l0/w" for i in range(1, 6)} <= set(agent.state_variables())


def test_twin_critics_polyak_and_checkpoint_names():
    critics = twin(CRITICS, TARGETS)
    critics.update_targets(0.25)
    # target <- 0.75 * target + 0.25 * critic: Q1' weights (1, 2) -> (1, 1.75)
    np.testing.assert_allclose(critics.targets[0].params["l0/w"].numpy()[:, 0], [1.0, 1.75])
    np.testing.assert_allclose(critics.targets[1].params["l0/b"].numpy(), [0.875])
    nets = {f"{net}/l0/{p}" for net in ("critic1", "critic2", "target1", "target2")
            for p in "wb"}
    slots = {f"opt_critic/{slot}/critic{i}/l0/{p}" for slot in "mv" for i in (1, 2) for p in "wb"}
    assert set(critics.state_variables()) == nets | slots | {"opt_critic/step"}


def test_dropout_zeroes_hidden_units_from_the_generator_and_scales_the_rest():
    # one hidden layer of 4 units, each h_j = x * (j + 1) for x = 1; the output sums them
    net = MLP(1, (4,), 1, rng=tf.random.Generator.from_seed(0), dropout=0.5)
    net.params["l0/w"].assign([[1.0, 2.0, 3.0, 4.0]])
    net.params["l1/w"].assign([[1.0], [1.0], [1.0], [1.0]])
    x = f32([[1.0], [1.0], [1.0]])
    assert net(x).numpy()[:, 0].tolist() == [10.0] * 3  # no generator: every unit
    kept = tf.random.Generator.from_seed(7).uniform([3, 4]).numpy() >= 0.5
    out = net(x, tf.random.Generator.from_seed(7)).numpy()[:, 0]
    # each row: the units it keeps, times 1 / (1 - 0.5)
    np.testing.assert_allclose(out, 2.0 * (kept * [1.0, 2.0, 3.0, 4.0]).sum(axis=1))
    assert 0 < kept.sum() < 12  # the seed drops some units and keeps others
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        MLP(1, (4,), 1, rng=tf.random.Generator.from_seed(0), dropout=1.0)


def test_critics_with_dropout_draw_masks_in_every_evaluation_from_their_stream():
    kw = {"rng": tf.random.Generator.from_seed(0), "lr": 1e-3, "layer_norm": True}
    with pytest.raises(ValueError, match="dropout need dropout_rng"):
        CriticEnsemble(2, (8,), dropout=0.1, **kw)
    stream = tf.random.Generator.from_seed(3)
    critics = CriticEnsemble(2, (8,), dropout=0.5, dropout_rng=stream, **kw)
    s, a = f32([[0.3]] * 64), f32([[0.1]] * 64)
    before = stream.state.numpy().copy()
    q1, _ = critics.q_values(s, a)
    assert not np.array_equal(stream.state.numpy(), before)  # the masks came from the stream
    assert np.unique(q1.numpy()).size > 1  # the same input, different masks
    plain = CriticEnsemble(2, (8,), rng=tf.random.Generator.from_seed(0), lr=1e-3,
                           layer_norm=True)
    assert plain.dropout_rng is None and np.unique(plain.q_values(s, a)[0]).size == 1


def f32(x):
    return tf.constant(np.array(x, np.float32))


# ---------------------------------------------------------------------------------- SAC

BOUNDS = (-2.0, 0.0)  # log_std = -2 + 1 * (tanh(raw) + 1); raw = 0 gives log_std = -1


def sac_actor():
    # out = [mean, raw_log_std] = [0.5 * s + 0.1, 0]
    return linear(1, 2, w=[[0.5, 0.0]], b=[0.1, 0.0], name="actor")


def hand_sample(s, noise):
    """Squashed Gaussian by hand for the actor above: returns (action, log pi)."""
    mean, log_std = 0.5 * s + 0.1, -1.0
    u = mean + math.exp(log_std) * noise
    a = math.tanh(u)
    log_gauss = -0.5 * noise**2 - log_std - 0.5 * math.log(2 * math.pi)
    return a, log_gauss - math.log(1.0 - a**2)


def test_squashed_gaussian_matches_hand_formula():
    a, logp = sac.squashed_gaussian(f32([[0.3]]), f32([[-1.0]]), f32([[0.5]]))
    u = 0.3 + math.exp(-1.0) * 0.5  # 0.48394
    expected_logp = (-0.5 * 0.25 + 1.0 - 0.5 * math.log(2 * math.pi)  # Gaussian density
                     - math.log(1.0 - math.tanh(u) ** 2))  # tanh change of variables
    assert float(a[0, 0]) == pytest.approx(math.tanh(u), rel=1e-6)
    assert float(logp[0]) == pytest.approx(expected_logp, rel=1e-5)
    # The stable form survives a saturated tanh, where 1 - tanh(u)^2 rounds to 0 in float32.
    _, logp_far = sac.squashed_gaussian(f32([[30.0]]), f32([[-1.0]]), f32([[0.0]]))
    assert np.isfinite(float(logp_far[0]))


def test_soft_td_target_plain_numbers():
    # y = r + gamma * (1 - d) * (min(q1', q2') - alpha * logp'); the min is CriticEnsemble.min_q
    y = sac.soft_td_target(reward=f32([1.0, 1.0]), terminated=f32([0.0, 1.0]),
                           next_q=f32([4.0, 4.0]),  # min(q1' = 5, q2' = 4)
                           next_logp=f32([-2.0, -2.0]), alpha=0.5, gamma=0.9)
    # row 0: 1 + 0.9 * (min(5, 4) - 0.5 * -2) = 1 + 0.9 * 5 = 5.5 ; row 1 is terminal: 1
    np.testing.assert_allclose(y.numpy(), [5.5, 1.0], rtol=1e-6)


def test_sac_critic_loss_on_linear_networks():
    actor = sac_actor()
    # critics and targets: Q(s, a) = w_s * s + w_a * a + b
    critics = twin(CRITICS, TARGETS)
    s, s_next, a, r, d = [1.0, -1.0], [2.0, 0.0], [0.5, -0.2], [1.0, -0.5], [0.0, 1.0]
    noise = [0.5, -1.0]
    alpha, gamma = 0.2, 0.9
    batch = {"obs": f32([[x] for x in s]), "next_obs": f32([[x] for x in s_next]),
             "q_obs": f32([[x] for x in s]), "next_q_obs": f32([[x] for x in s_next]),
             "action": f32([[x] for x in a]), "reward": f32(r), "terminated": f32(d)}
    loss, q_mean = sac.critic_loss(actor, critics, batch, alpha, gamma,
                                   f32([[x] for x in noise]), BOUNDS)

    q1_sq, q2_sq, q1_sum = 0.0, 0.0, 0.0
    for i in range(2):
        a_next, logp_next = hand_sample(s_next[i], noise[i])
        tq1 = 1.0 * s_next[i] + 2.0 * a_next + 0.0  # target critic 1
        tq2 = 0.5 * s_next[i] - 1.0 * a_next + 1.0  # target critic 2
        y = r[i] + gamma * (1 - d[i]) * (min(tq1, tq2) - alpha * logp_next)
        q1 = 1.0 * s[i] + 1.0 * a[i] + 0.0  # online critic 1 at the stored action
        q2 = 0.0 * s[i] + 2.0 * a[i] + 0.5  # online critic 2
        q1_sq += (q1 - y) ** 2
        q2_sq += (q2 - y) ** 2
        q1_sum += q1
    expected = q1_sq / 2 + q2_sq / 2  # mean over the batch, summed over both critics
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(q_mean) == pytest.approx(q1_sum / 2, rel=1e-6)


def test_sac_actor_loss_on_linear_networks():
    actor = sac_actor()
    critics = twin(CRITICS)
    s, noise, alpha = [1.0, -2.0], [0.3, -0.7], 0.1
    obs = f32([[x] for x in s])
    loss, logp = sac.actor_loss(actor, critics, obs, obs, alpha, f32([[x] for x in noise]),
                                BOUNDS)
    total = 0.0
    for i in range(2):
        a_i, logp_i = hand_sample(s[i], noise[i])
        q1 = s[i] + a_i  # critic 1 at the sampled action
        q2 = 2.0 * a_i + 0.5  # critic 2
        total += alpha * logp_i - min(q1, q2)
        assert float(logp[i]) == pytest.approx(logp_i, rel=1e-5)
    assert float(loss) == pytest.approx(total / 2, rel=1e-5)


def test_conservative_gap_on_linear_networks():
    critics = twin(CRITICS)
    s, a_data, a_pi = f32([[1.0], [-1.0]]), f32([[0.5], [2.0]]), f32([[-0.5], [1.0]])
    # Q1 = s + a, Q2 = 2a + 0.5: Q1(pi) - Q1(data) = a_pi - a_data = -1, -1 (mean -1);
    # Q2(pi) - Q2(data) = 2 (a_pi - a_data) = -2, -2 (mean -2); summed over the critics: -3
    gap = sac.conservative_gap(critics, s, a_data, a_pi)
    assert float(gap) == pytest.approx(-3.0, rel=1e-6)
    with tf.GradientTape() as tape:
        gap = sac.conservative_gap(critics, s, a_data, a_pi)
    # d/dw_a of Q1's term: mean(a_pi - a_data) = -1; of Q2's: the same -1 (its slope is w_a)
    grads = tape.gradient(gap, critics.weights)
    assert float(grads[0].numpy()[1, 0]) == pytest.approx(-1.0, rel=1e-6)
    assert float(grads[2].numpy()[1, 0]) == pytest.approx(-1.0, rel=1e-6)
    assert float(grads[1].numpy()[0]) == 0.0  # a bias cancels between the two actions


def test_temperature_loss_and_its_gradient():
    log_alpha = tf.Variable(math.log(0.5))
    logp, target_entropy = f32([-1.0, 0.5]), -1.0
    with tf.GradientTape() as tape:
        loss = sac.temperature_loss(log_alpha, logp, target_entropy)
    # -mean(log_alpha * (logp + target)) = -log(0.5) * mean(-2.0, -0.5) = 1.25 * log(0.5)
    assert float(loss) == pytest.approx(1.25 * math.log(0.5), rel=1e-6)
    # d/dlog_alpha = -mean(logp + target) = 1.25 > 0: entropy (mean 0.25) is above the
    # target (-1), so gradient descent lowers alpha.
    assert float(tape.gradient(loss, log_alpha)) == pytest.approx(1.25, rel=1e-6)


def test_sac_update_moves_targets_by_polyak_tau():
    agent = make_agent("sac", {"actor_hidden": (8,), "critic_hidden": (8,), "batch_size": 4,
                               "tau": 0.25}, obs_dim=3, act_dim=2, seed=0)
    rng = np.random.default_rng(0)
    batch = {"obs": rng.normal(size=(4, 3)), "action": rng.uniform(-1, 1, (4, 2)),
             "reward": rng.normal(size=4), "next_obs": rng.normal(size=(4, 3)),
             "terminated": np.array([0, 0, 1, 0])}
    old_target = agent.critics.targets[0].params["l0/w"].numpy()
    agent.update(batch)
    new_critic = agent.critics.online[0].params["l0/w"].numpy()
    # target <- 0.75 * target + 0.25 * critic (the critic after this update)
    np.testing.assert_allclose(agent.critics.targets[0].params["l0/w"].numpy(),
                               0.75 * old_target + 0.25 * new_critic, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------- TD3

def test_td3_target_smoothing_clips_noise_and_action():
    target_actor = linear(1, 1, [[1.0]], [0.0])  # mu'(s) = tanh(s)
    s_next = [[0.5], [0.5], [2.0]]
    noise = [[3.0], [-0.5], [1.0]]  # standard normal draws
    a = td3.smoothed_target_action(target_actor, f32(s_next), f32(noise), noise_std=0.2,
                                   noise_clip=0.5).numpy()[:, 0]
    # row 0: 0.2 * 3.0 = 0.6, clipped to 0.5        -> tanh(0.5) + 0.5 = 0.9621
    # row 1: 0.2 * -0.5 = -0.1, inside the clip     -> tanh(0.5) - 0.1 = 0.3621
    # row 2: 0.2 * 1.0 = 0.2; tanh(2) + 0.2 = 1.164 -> action clipped to 1.0
    np.testing.assert_allclose(a, [math.tanh(0.5) + 0.5, math.tanh(0.5) - 0.1, 1.0], rtol=1e-6)


def test_td3_critic_loss_on_linear_networks():
    target_actor = linear(1, 1, [[1.0]], [0.0])
    critics = twin(CRITICS, TARGETS)
    s, s_next, a, r, d, noise = [1.0, -1.0], [0.5, 2.0], [0.5, -0.2], [1.0, -0.5], [0.0, 0.0], \
        [3.0, -0.5]
    gamma = 0.9
    batch = {"obs": f32([[x] for x in s]), "next_obs": f32([[x] for x in s_next]),
             "q_obs": f32([[x] for x in s]), "next_q_obs": f32([[x] for x in s_next]),
             "action": f32([[x] for x in a]), "reward": f32(r), "terminated": f32(d)}
    loss, _ = td3.critic_loss(target_actor, critics, batch, gamma,
                              f32([[x] for x in noise]), 0.2, 0.5)
    expected = 0.0
    for i in range(2):
        eps = max(-0.5, min(0.5, 0.2 * noise[i]))  # clipped smoothing noise
        a_next = max(-1.0, min(1.0, math.tanh(s_next[i]) + eps))
        tq1 = s_next[i] + 2.0 * a_next
        tq2 = 0.5 * s_next[i] - a_next + 1.0
        y = r[i] + gamma * (1 - d[i]) * min(tq1, tq2)
        q1, q2 = s[i] + a[i], 2.0 * a[i] + 0.5
        expected += ((q1 - y) ** 2 + (q2 - y) ** 2) / 2  # mean over 2 rows, both critics
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_td3_actor_loss_uses_critic_one():
    actor = linear(1, 1, [[2.0]], [0.0])  # a = tanh(2 s)
    critic1 = linear(2, 1, [[1.0], [3.0]], [0.5])
    loss = td3.actor_loss(actor, critic1, f32([[0.25], [-0.5]]), f32([[0.25], [-0.5]]))
    q = [0.25 + 3.0 * math.tanh(0.5) + 0.5, -0.5 + 3.0 * math.tanh(-1.0) + 0.5]
    assert float(loss) == pytest.approx(-(q[0] + q[1]) / 2, rel=1e-6)


def test_td3_policy_delay():
    agent = make_agent("td3", {"actor_hidden": (8,), "critic_hidden": (8,), "batch_size": 8,
                               "policy_delay": 3}, obs_dim=3, act_dim=2, seed=1)
    rng = np.random.default_rng(1)

    def snapshot(net):
        return np.concatenate([v.numpy().ravel() for v in net.weights])

    changed = []
    for _ in range(7):
        before = [snapshot(n) for n in (agent.actor, agent.target_actor,
                                        agent.critics.online[0], agent.critics.targets[0])]
        metrics = agent.update({"obs": rng.normal(size=(8, 3)),
                                "action": rng.uniform(-1, 1, (8, 2)),
                                "reward": rng.normal(size=8),
                                "next_obs": rng.normal(size=(8, 3)),
                                "terminated": np.zeros(8)})
        after = [snapshot(n) for n in (agent.actor, agent.target_actor,
                                       agent.critics.online[0], agent.critics.targets[0])]
        changed.append([not np.array_equal(b, a) for b, a in zip(before, after, strict=True)])
        assert metrics["actor_updated"] == (1.0 if changed[-1][0] else 0.0)
    # updates 1..7: the critic learns every time; actor and both targets on updates 3 and 6
    assert [c[2] for c in changed] == [True] * 7
    for column in (0, 1, 3):
        assert [c[column] for c in changed] == [False, False, True, False, False, True, False]

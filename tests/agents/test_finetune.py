"""Fine-tuning pieces: the offline partition and symmetric sampling, critic-only updates,
and the per-partition critic loss that changes nothing."""

from __future__ import annotations

import numpy as np
import pytest

from gaitforge.agents import config_class, make_agent
from gaitforge.agents.finetune import (
    AveragedActor,
    CriticOnly,
    choose_best,
    mixed_sample,
    nominal_limit,
    offline_replay,
    partition_losses,
    restore_matching,
    tracking_cost,
)

OBS, ACT, CRITIC = 5, 2, 3


def transitions(n, rng, reward=1.0):
    return {"obs": rng.normal(size=(n, OBS)), "action": rng.uniform(-1, 1, (n, ACT)),
            "reward": np.full(n, reward), "next_obs": rng.normal(size=(n, OBS)),
            "terminated": np.zeros(n), "critic_obs": rng.normal(size=(n, CRITIC)),
            "next_critic_obs": rng.normal(size=(n, CRITIC))}


def agent(seed=2, **fields):
    cfg = config_class("sac")(actor_hidden=(16,), critic_hidden=(16,), batch_size=8,
                              asymmetric_critic=True, critic_layer_norm=True, **fields)
    return make_agent("sac", cfg, OBS, ACT, critic_obs_dim=CRITIC, seed=seed)


def test_a_twin_run_fills_the_first_two_critics_of_an_ensemble():
    """Fine-tuning with `--set agent.num_critics=10` (RLPD's ensemble) from a run trained
    with the twin pair: the actor, critic1/2 and their targets come from the run, the other
    critics start fresh (so `gaitforge finetune` warms the critics up first)."""
    parent, rng = agent(seed=3), np.random.default_rng(4)
    parent.observe(rng.normal(size=(50, OBS)), rng.normal(size=(50, CRITIC)))
    state = {k: v.numpy() for k, v in parent.state_variables().items()}
    state.update({f"obs_norm/{k}": v for k, v in parent.obs_norm.get_state().items()})
    child = agent(seed=5, num_critics=4)
    left = restore_matching(child, state)
    assert {n.split("/")[0] for n in left if not n.startswith("opt_")} == {
        "critic3", "critic4", "target3", "target4", "critic_obs_norm"}
    for name in ("actor/l0/w", "critic2/l0/w", "target1/l1/w"):
        np.testing.assert_array_equal(child.state_variables()[name].numpy(), state[name])
    np.testing.assert_array_equal(child.obs_norm.get_state()["mean"],
                                  parent.obs_norm.get_state()["mean"])


def test_minibatches_are_half_logs_half_fresh_once_there_is_fresh_data():
    rng = np.random.default_rng(0)
    replay = offline_replay(OBS, ACT, CRITIC, 100, transitions(30, rng, reward=1.0))
    only_logs = mixed_sample(replay, 8, rng, 2, offline_fraction=0.5)
    assert (only_logs["reward"] == 1.0).all()  # nothing fresh yet: all from the logs
    fresh = transitions(20, rng, reward=-1.0)
    replay.add(fresh["obs"], fresh["action"], fresh["reward"], fresh["next_obs"],
               fresh["terminated"], fresh["critic_obs"], fresh["next_critic_obs"],
               partition="online")
    mixed = mixed_sample(replay, 8, rng, 3, offline_fraction=0.5)
    assert mixed["reward"].shape == (3, 8)
    assert ((mixed["reward"] == 1.0).sum(axis=1) == 4).all()  # 4 of 8 from the logs, always


def test_critic_only_updates_leave_the_actor_and_its_state_alone():
    a, rng = agent(), np.random.default_rng(1)
    replay = offline_replay(OBS, ACT, CRITIC, 10, transitions(40, rng))
    before = {k: v.numpy().copy() for k, v in a.state_variables().items()}
    with CriticOnly(a):
        a.update_stacked(mixed_sample(replay, 8, rng, 5, offline_fraction=1.0))
    after = {k: v.numpy() for k, v in a.state_variables().items()}
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed and all(k.startswith(("critic", "target", "opt_critic")) for k in changed)
    assert any(k.startswith("critic") for k in changed)


def test_partition_losses_measure_without_changing_anything():
    a, rng = agent(), np.random.default_rng(2)
    replay = offline_replay(OBS, ACT, CRITIC, 100, transitions(40, rng))
    fresh = transitions(20, rng, reward=5.0)
    replay.add(*(fresh[k] for k in ("obs", "action", "reward", "next_obs", "terminated",
                                    "critic_obs", "next_critic_obs")), partition="online")
    before = {k: v.numpy().copy() for k, v in a.state_variables().items()}
    losses = partition_losses(a, replay, rng)
    assert set(losses) == {"critic_offline", "critic_online"}
    assert losses["critic_online"] > losses["critic_offline"]  # rewards of 5 against 1
    for k, v in a.state_variables().items():
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)


def test_the_averaged_actor_moves_its_rate_per_update_and_is_lent_to_the_actor():
    a = agent()
    weights = a.actor.params["l0/w"]
    weights.assign(np.zeros(weights.shape, np.float32))
    averaged = AveragedActor(a, 0.5)
    weights.assign(np.ones(weights.shape, np.float32))
    averaged.follow(2)  # two updates at 0.5: 1 - 0.5^2 = 0.75 of the way from 0 to 1
    np.testing.assert_allclose(averaged.mean["actor/l0/w"], 0.75)
    with averaged:
        np.testing.assert_allclose(weights.numpy(), 0.75)
    np.testing.assert_array_equal(weights.numpy(), 1.0)  # the actor's own weights again
    with pytest.raises(ValueError, match="actor_average"):
        AveragedActor(a, 1.5)


# --- FineTuner on a small fake env ---------------------------------------------------------
def _fine_tuner(tmp_path, offline_fraction, warmup=0, steps=200, **train):
    import sys
    from pathlib import Path

    from gaitforge.agents.finetune import FineTuner
    from gaitforge.agents.trainer import TrainConfig
    from gaitforge.sim.vec_env import VecEnv

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sim"))
    import fake_envs

    cfg = config_class("sac")(actor_hidden=(16,), critic_hidden=(16,), batch_size=16,
                              asymmetric_critic=True, critic_layer_norm=True)
    a = make_agent("sac", cfg, fake_envs.OBS_DIM, 2, critic_obs_dim=fake_envs.CRITIC_DIM,
                   seed=4)
    env = VecEnv([fake_envs.PointMassEnv] * 2, workers=0, seed=0)
    rng = np.random.default_rng(9)
    n = 64
    offline = {"obs": rng.normal(size=(n, fake_envs.OBS_DIM)),
               "action": rng.uniform(-1, 1, (n, 2)), "reward": np.ones(n),
               "next_obs": rng.normal(size=(n, fake_envs.OBS_DIM)),
               "terminated": np.zeros(n),
               "critic_obs": rng.normal(size=(n, fake_envs.CRITIC_DIM)),
               "next_critic_obs": rng.normal(size=(n, fake_envs.CRITIC_DIM))}
    evaluate = train.pop("evaluate", None)
    average = train.pop("actor_average", 0.0)
    ratchet = train.pop("ratchet", False)
    config = TrainConfig(**{"total_env_steps": steps, "warmup_steps": 0,
                            "replay_capacity": 500, "eval_every_steps": 10_000,
                            "checkpoint_every_steps": 100, "log_every_steps": 50, **train})
    tuner = FineTuner(a, env, config, tmp_path / "ckpt", offline=offline,
                      offline_fraction=offline_fraction, critic_warmup_updates=warmup,
                      actor_average=average, ratchet=ratchet, evaluate=evaluate)
    return tuner, env


def test_a_mixed_fine_tune_keeps_the_logs_and_adds_fresh_data(tmp_path):
    tuner, env = _fine_tuner(tmp_path, 0.5)
    try:
        tuner.train()
    finally:
        env.close()
    assert tuner.replay.size("offline") == 64 and tuner.replay.size("online") == 200
    assert tuner.updates == 200
    assert {"loss/critic_offline", "loss/critic_online"} <= set(tuner.last_scalars)


def test_a_logs_only_fine_tune_never_steps_the_env_and_resumes(tmp_path):
    tuner, env = _fine_tuner(tmp_path, 1.0, warmup=100)
    actor_before = tuner.agent.actor.params["l0/w"].numpy().copy()
    env.step = None  # any step would fail
    try:
        tuner.train(until_env_steps=100)  # the critic warm-up: the actor must not move
        np.testing.assert_array_equal(tuner.agent.actor.params["l0/w"].numpy(), actor_before)
        tuner.train()
        assert not np.array_equal(tuner.agent.actor.params["l0/w"].numpy(), actor_before)
        assert tuner.replay.size("online") == 0 and tuner.updates == 200
        final = {k: v.numpy().copy() for k, v in tuner.agent.state_variables().items()}
        again, env2 = _fine_tuner(tmp_path, 1.0, warmup=100)
        again.load_checkpoint()
        assert again.updates == 200
        for k, v in again.agent.state_variables().items():
            np.testing.assert_array_equal(v.numpy(), final[k], err_msg=k)
        env2.close()
    finally:
        env.close()


def test_an_averaged_fine_tune_evaluates_and_checkpoints_the_average(tmp_path):
    from gaitforge.agents.checkpoint import load_arrays

    seen = []

    def evaluate(agent):
        seen.append(agent.actor.params["l0/w"].numpy().copy())
        return result(0.1, checkpoint="")

    tuner, env = _fine_tuner(tmp_path, 0.5, actor_average=0.01, eval_every_steps=200,
                             evaluate=evaluate)
    try:
        tuner.train()
    finally:
        env.close()
    average = tuner.averaged.mean["actor/l0/w"]
    own = tuner.agent.actor.params["l0/w"].numpy()
    assert not np.allclose(average, own) and not np.allclose(average, seen[0])
    np.testing.assert_array_equal(seen[-1], average)  # the evaluation at 200 saw the average
    saved = load_arrays(tmp_path / "ckpt" / f"{200:012d}" / "agent.npz")
    np.testing.assert_array_equal(saved["actor/l0/w"], average)
    again, env2 = _fine_tuner(tmp_path, 0.5, actor_average=0.01)
    try:
        again.load_checkpoint()  # goes on from the average it saved
    finally:
        env2.close()
    np.testing.assert_array_equal(again.averaged.mean["actor/l0/w"], average)
    np.testing.assert_array_equal(again.agent.actor.params["l0/w"].numpy(), average)


def test_the_actors_normaliser_stays_as_the_run_trained_it(tmp_path):
    tuner, env = _fine_tuner(tmp_path, 0.5)
    norm = tuner.agent.obs_norm
    before = {k: v.copy() for k, v in norm.get_state().items()}
    critic_before = tuner.agent.critic_obs_norm.get_state()["count"].copy()
    try:
        tuner.train()
    finally:
        env.close()
    for k, v in norm.get_state().items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)
    # the critic's normaliser saw the 64 logged rows and then the fresh ones
    assert tuner.agent.critic_obs_norm.get_state()["count"] > critic_before + 64


# --- choosing the checkpoint that is the policy ----------------------------------------------
def result(cost, nominal=None, nominal_fell=0.0, checkpoint="x", nominal_vy=0.0):
    """An evaluation whose tracking cost is `cost` (all of it forward error), and `nominal`
    the same on the parent's dynamics (forward error; `nominal_vy` the lateral one)."""
    r = {"vx_tracking_error": cost, "vy_tracking_error": 0.0, "yaw_rate_error": 0.0,
         "fall_rate": 0.0, "checkpoint": checkpoint}
    if nominal is not None:
        r.update({"nominal/vx_tracking_error": nominal, "nominal/vy_tracking_error": nominal_vy,
                  "nominal/yaw_rate_error": 0.0, "nominal/fall_rate": nominal_fell})
    return r


def test_tracking_cost_sums_the_three_errors_and_the_fall_rate():
    r = {"vx_tracking_error": 0.1, "vy_tracking_error": 0.02, "yaw_rate_error": 0.3,
         "fall_rate": 0.5, "nominal/vx_tracking_error": 0.01, "nominal/vy_tracking_error": 0.0,
         "nominal/yaw_rate_error": 0.0, "nominal/fall_rate": 0.0}
    assert tracking_cost(r) == pytest.approx(0.92)
    assert tracking_cost(r, "nominal/") == pytest.approx(0.01)


def test_the_best_checkpoint_tracks_best_without_unlearning_the_nominal_robot():
    # the parent: 0.15 on the identified dynamics; on its own 0.05 forward, 0.05 lateral: the
    # nominal limit of each error is 1.2 x 0.05 = 0.06 (larger than 0.05 + 0.006)
    parent = result(0.15, nominal=0.05, nominal_vy=0.05)
    assert choose_best([parent]) == 0
    history = [parent, result(0.12, nominal=0.06, nominal_vy=0.05),
               result(0.05, nominal=0.061, nominal_vy=0.05),
               result(0.06, nominal=0.01, nominal_fell=0.25), result(0.2, nominal=0.0)]
    # 0.05 unlearned (0.061 > 0.06), 0.06 fell on the nominal robot: 0.12 is kept
    assert choose_best(history) == 1
    assert choose_best([parent, result(0.2, nominal=0.05)]) == 0  # nothing beat the parent
    # an evaluation without a checkpoint is not a policy; none at all: None
    assert choose_best([parent, result(0.01, nominal=0.05, checkpoint="")]) == 0
    assert choose_best([result(0.1, checkpoint="")]) is None
    # without a nominal evaluation (no --dynamics), the cost alone decides
    assert choose_best([result(0.2), result(0.1), result(0.3)]) == 1
    # each error on its own: a forward error 0.008 -> 0.049 is unlearning, though the sum of
    # the errors (0.049 + 0.01 against 0.008 + 0.05) fell; from 0.008 the evaluation's noise
    # is the larger limit, 0.008 + 0.006 = 0.014 (1.2 x 0.008 is 0.0096)
    walker = result(0.16, nominal=0.008, nominal_vy=0.05)
    assert choose_best([walker, result(0.1, nominal=0.049, nominal_vy=0.01)]) == 0
    assert choose_best([walker, result(0.1, nominal=0.014, nominal_vy=0.01)]) == 1
    assert choose_best([walker, result(0.1, nominal=0.015, nominal_vy=0.01)]) == 0


def test_the_nominal_limit_is_the_larger_of_the_growth_and_the_noise_not_their_sum():
    assert nominal_limit(0.049) == pytest.approx(0.0588)  # 1.2 x 0.049
    assert nominal_limit(0.03) == pytest.approx(0.036)  # where the two meet
    assert nominal_limit(0.01) == pytest.approx(0.016)  # 0.01 + 0.006
    # draw 6's evaluations (fine-tune sim, then nominal: forward, lateral, yaw): the 70k
    # checkpoint read 0.062 forward on the nominal robot against the parent's 0.049 (and
    # deployed at 0.066 against 0.048); under the sum's limit (0.0648) it was kept
    parent = {**errors(0.172, 0.022, 0.028), "nominal/vx_tracking_error": 0.049,
              "nominal/vy_tracking_error": 0.014, "nominal/yaw_rate_error": 0.02,
              "nominal/fall_rate": 0.0}
    at_70k = {**errors(0.138, 0.006, 0.027), "nominal/vx_tracking_error": 0.062,
              "nominal/vy_tracking_error": 0.008, "nominal/yaw_rate_error": 0.021,
              "nominal/fall_rate": 0.0}
    assert choose_best([parent, at_70k]) == 0


def errors(vx, vy, yaw):
    return {"vx_tracking_error": vx, "vy_tracking_error": vy, "yaw_rate_error": yaw,
            "fall_rate": 0.0, "checkpoint": "x"}


def test_a_checkpoint_may_not_trade_one_error_for_another_against_the_best_so_far():
    # draw 4's: a cost of 0.047 against the parent's 0.054, but forward 0.029 is over
    # 1.2 x 0.011 + 0.006 = 0.0192: the parent stays
    assert choose_best([errors(0.011, 0.022, 0.021), errors(0.029, 0.006, 0.012)]) == 0
    # draw 3's: 10k beats the parent (lateral 0.027 <= 1.2 x 0.021 + 0.006 = 0.0312, yaw
    # 0.030 <= 0.0324); then 40k is judged against 10k, not the parent: lateral 0.032 is
    # within 1.2 x 0.027 + 0.006 = 0.0384, though over the parent's 0.0312
    history = [errors(0.162, 0.021, 0.022), errors(0.09, 0.027, 0.03),
               errors(0.092, 0.038, 0.036), errors(0.017, 0.032, 0.02)]
    assert choose_best(history) == 3
    assert choose_best(history[:3]) == 1  # 20k: a higher cost than 10k's
    # a lower cost whose yaw error grew past 1.2 x 0.02 + 0.006 = 0.03 does not replace 40k
    assert choose_best([*history, errors(0.01, 0.01, 0.031)]) == 3


def test_a_fine_tune_evaluates_the_parent_first_and_names_its_best_checkpoint(tmp_path):
    """Scripted evaluations (costs 0.15 for the parent at step 0, then 0.1, 0.3, 0.2 at steps
    100-300): checkpoint 100 is named best and outlives the pruning of keep_checkpoints 1;
    a run's policy (export, eval) is that checkpoint; resume goes on from the newest."""
    from gaitforge.agents.checkpoint_folder import best_folder, policy_usable, step_folders

    costs = iter([0.15, 0.1, 0.3, 0.2])
    tuner, env = _fine_tuner(tmp_path, 0.5, steps=300, eval_every_steps=100,
                             keep_checkpoints=1,
                             evaluate=lambda agent: result(next(costs), checkpoint=""))
    try:
        tuner.train()
    finally:
        env.close()
    assert [r["env_steps"] for r in tuner.history] == [0, 100, 200, 300]
    assert [r["checkpoint"] for r in tuner.history] == [f"{s:012d}" for s in (0, 100, 200,
                                                                              300)]
    ckpt = tmp_path / "ckpt"
    assert best_folder(ckpt).name == "000000000100"
    assert [f.name for f in step_folders(ckpt)] == ["000000000100", "000000000300"]
    folder, _ = policy_usable(ckpt, lambda f: None, lambda s: None)
    assert folder.name == "000000000100"
    (ckpt / "best").write_text("000000000200")  # names a pruned one: not trusted
    assert best_folder(ckpt) is None
    assert policy_usable(ckpt, lambda f: None, lambda s: None)[0].name == "000000000300"


def test_the_ratchet_goes_on_from_the_best_checkpoint_and_resumes_from_it(tmp_path):
    """Scripted costs 0.15 (the parent), 0.1 at 100 (a new best: kept, the anchor moves to
    it), 0.3 at 200 (undone: the actor and its optimiser's slots as at 100), 0.2 at 300."""
    from gaitforge.agents.checkpoint import load_arrays

    costs = iter([0.15, 0.1, 0.3, 0.2])
    tuner, env = _fine_tuner(tmp_path, 0.5, steps=200, eval_every_steps=100, ratchet=True,
                             evaluate=lambda agent: result(next(costs), checkpoint=""))
    try:
        tuner.train()
    finally:
        env.close()
    ckpt = tmp_path / "ckpt"
    best = load_arrays(ckpt / f"{100:012d}" / "agent.npz")
    worse = load_arrays(ckpt / f"{200:012d}" / "agent.npz")  # holds the actor evaluated
    assert not np.array_equal(best["actor/l0/w"], worse["actor/l0/w"])
    for name, var in tuner.agent.state_variables().items():
        if name.startswith(("actor/", "opt_actor/")):
            np.testing.assert_array_equal(var.numpy(), best[name], err_msg=name)
    assert not np.array_equal(tuner.agent.critics.state_variables()["critic1/l0/w"].numpy(),
                              best["critic1/l0/w"])  # the critic goes on learning
    again, env2 = _fine_tuner(tmp_path, 0.5, steps=300, eval_every_steps=100, ratchet=True,
                              evaluate=lambda agent: result(next(costs), checkpoint=""))
    try:
        again.load_checkpoint()  # from 200, whose actor was undone: it goes on from 100's
        np.testing.assert_array_equal(again.agent.actor.params["l0/w"].numpy(),
                                      best["actor/l0/w"])
    finally:
        env2.close()
    with pytest.raises(ValueError, match="ratchet and actor_average"):
        _fine_tuner(tmp_path, 0.5, ratchet=True, actor_average=0.1)

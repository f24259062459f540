"""train.utd: gradient updates per env step belong to the trainer (TrainConfig), not to an
agent's config. Checked values; num_envs * utd updates per vectorised step, all in one
stacked call; and utd=2 learns on the same transitions with twice the updates."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from gaitforge.agents import config_class, make_agent
from gaitforge.agents.trainer import TrainConfig, Trainer
from gaitforge.sim.vec_env import VecEnv

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sim"))
import fake_envs  # noqa: E402


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_utd_must_be_a_positive_integer(value):
    with pytest.raises(ValueError, match=r"utd must be a positive integer"):
        TrainConfig(utd=value)
    assert TrainConfig().utd == 1


class _Counting:
    """Wraps an agent and records the K of every update_stacked call."""

    def __init__(self, agent):
        self._agent, self.calls = agent, []

    def __getattr__(self, name):
        return getattr(self._agent, name)

    def update_stacked(self, batches):
        self.calls.append(batches["obs"].shape[0])
        return self._agent.update_stacked(batches)


def _run(tmp_path, utd):
    cfg = config_class("sac")(actor_hidden=(16,), critic_hidden=(16,), batch_size=16)
    agent = _Counting(make_agent("sac", cfg, fake_envs.OBS_DIM, 2, seed=1))
    env = VecEnv([fake_envs.PointMassEnv] * 2, workers=0, seed=0)
    t = TrainConfig(total_env_steps=100, warmup_steps=40, utd=utd,
                    eval_every_steps=10_000, checkpoint_every_steps=10_000,
                    log_every_steps=10_000)
    trainer = Trainer(agent, env, t, tmp_path / f"utd{utd}")
    try:
        trainer.train()
    finally:
        env.close()
    return trainer, agent


def test_utd_sets_the_updates_per_env_step(tmp_path):
    one, agent_one = _run(tmp_path, 1)
    two, agent_two = _run(tmp_path, 2)
    steps = (100 - 40) // 2 + 1  # vectorised steps from the one that ends warm-up
    assert agent_one.calls == [2] * steps and agent_two.calls == [4] * steps
    assert two.updates == 2 * one.updates == 2 * 2 * steps
    assert int(agent_two.update_step.numpy()) == two.updates
    # the same transitions during warm-up (the envs and the trainer's RNG do not depend on utd)
    key = f"{one.replay.get_state()['partitions'][0]}/obs"
    np.testing.assert_array_equal(one.replay.get_state()[key][:40],
                                  two.replay.get_state()[key][:40])

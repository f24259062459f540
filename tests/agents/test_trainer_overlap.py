"""Overlapped collection: envs step in their worker while the agent learns. Same seed ->
same run, bit for bit; the same number of updates as without overlap; and the update of a
step sees the replay only up to the previous step (checked by the replay contents)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from gaitforge.agents import config_class, make_agent
from gaitforge.agents.trainer import TrainConfig, Trainer
from gaitforge.sim.vec_env import VecEnv

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sim"))
import fake_envs  # noqa: E402


def _run(tmp_path, name, overlap, workers):
    cfg = config_class("sac")(actor_hidden=(16,), critic_hidden=(16,), batch_size=16)
    agent = make_agent("sac", cfg, fake_envs.OBS_DIM, 2, seed=1)
    env = VecEnv([fake_envs.PointMassEnv] * 2, workers=workers, seed=0)
    t = TrainConfig(total_env_steps=200, warmup_steps=40, eval_every_steps=10_000,
                    checkpoint_every_steps=10_000, log_every_steps=10_000, overlap=overlap)
    trainer = Trainer(agent, env, t, tmp_path / name)
    try:
        trainer.train()
    finally:
        env.close()
    params = np.concatenate([v.numpy().ravel() for v in agent.actor.weights])
    return trainer, params


def test_overlap_is_deterministic_and_learns_as_often(tmp_path):
    a, pa = _run(tmp_path, "a", True, 1)
    b, pb = _run(tmp_path, "b", True, 1)
    plain, pp = _run(tmp_path, "plain", False, 1)
    np.testing.assert_array_equal(pa, pb)
    assert a.updates == b.updates == plain.updates == 200 - 40 + 2  # learning from step 40
    # the same envs and actions during warm-up: identical first transitions
    key = f"{a.replay.get_state()['partitions'][0]}/obs"
    np.testing.assert_array_equal(a.replay.get_state()[key][:40],
                                  plain.replay.get_state()[key][:40])
    assert not np.array_equal(pa, pp)  # updates saw the replay one step earlier


"""Short learning check: SAC and TD3 each clearly improve on gymnasium's Pendulum-v1.

A random policy scores about -1200 per 200-step episode; a policy that swings up and
balances scores about -150 (less from unlucky starts). After 6000 env steps (500 random
warm-up, then 1 update per step, done 4 at a time with `update_stacked`) the mean return of
10 deterministic evaluation episodes must beat -600. Seeds are fixed; tried across several
seeds while tuning, the worst seen was about -420 for SAC and -350 for TD3.
"""

import gymnasium as gym
import numpy as np
import pytest

from gaitforge.agents import make_agent
from gaitforge.agents.replay import ReplayBuffer

STEPS, WARMUP, CHUNK, EVAL_EPISODES = 6000, 500, 4, 10
CONFIGS = {
    "sac": {"actor_hidden": (64, 64), "critic_hidden": (64, 64), "batch_size": 256,
            "gamma": 0.98, "actor_lr": 1e-3, "critic_lr": 1e-3, "alpha_lr": 1e-3,
            "init_alpha": 0.1},
    "td3": {"actor_hidden": (128, 128), "critic_hidden": (128, 128), "batch_size": 256,
            "gamma": 0.98, "actor_lr": 1e-3, "critic_lr": 1e-3, "exploration_noise": 0.2},
}


def evaluate(agent, episodes, seed):
    env = gym.make("Pendulum-v1")
    returns = []
    for e in range(episodes):
        obs, _ = env.reset(seed=seed + e)
        total, done = 0.0, False
        while not done:
            action = agent.act(obs[None].astype(np.float32), deterministic=True)[0]
            obs, reward, terminated, truncated, _ = env.step(2.0 * action)  # [-1, 1] -> N·m
            total += reward
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


@pytest.mark.parametrize("name", ["sac", "td3"])
def test_learns_pendulum(name):
    seed = 0
    env = gym.make("Pendulum-v1")
    agent = make_agent(name, CONFIGS[name], obs_dim=3, act_dim=1, seed=seed)
    replay = ReplayBuffer(3, 1, capacity=STEPS)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    for t in range(STEPS):
        agent.observe(obs[None])
        if t < WARMUP:
            action = rng.uniform(-1, 1, (1, 1)).astype(np.float32)
        else:
            action = agent.act(obs[None].astype(np.float32), deterministic=False)
        next_obs, reward, terminated, truncated, _ = env.step(2.0 * action[0])
        # a time-limit truncation is not terminal: the critic still bootstraps from next_obs
        replay.add(obs[None], action, [reward], next_obs[None], [float(terminated)])
        obs = env.reset()[0] if terminated or truncated else next_obs
        if t >= WARMUP and (t + 1) % CHUNK == 0:
            agent.update_stacked(replay.sample(agent.config.batch_size, rng, num_batches=CHUNK))
    random_return = evaluate(_RandomAgent(rng), EVAL_EPISODES, seed=1000)
    learned_return = evaluate(agent, EVAL_EPISODES, seed=1000)
    print(f"{name}: random {random_return:.0f}, learned {learned_return:.0f}")
    assert random_return < -800
    assert learned_return > -600


class _RandomAgent:
    def __init__(self, rng):
        self.rng = rng

    def act(self, obs, deterministic):
        return self.rng.uniform(-1, 1, (len(obs), 1)).astype(np.float32)

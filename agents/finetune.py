"""Fine-tuning pieces, RLPD style (Ball et al. 2023): logged real transitions in an offline
partition of replay, every minibatch half offline and half fresh, LayerNorm critics.

    offline_replay(...)      a ReplayBuffer with an "offline" partition holding the logs'
                             transitions and an "online" one for fresh simulation data
    mixed_sample(...)        a stacked batch drawn `offline_fraction` from the logs (0.5:
                             symmetric); 1.0 when there is no fresh data (logs only)
    CriticOnly(agent)        a context in which updates change the critics only: everything
                             else (actor, its optimiser, temperature, counters, RNG streams)
                             is put back afterwards. A fine-tune whose critic is new trains it
                             this way first, so that a good actor is not pulled about by a
                             critic that knows nothing yet
    partition_losses(...)    the critic loss on an offline and on an online batch, measured by
                             a throw-away update (every variable restored), for TensorBoard

Nothing here changes the compiled update of SAC or TD3.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .replay import ReplayBuffer

CRITIC_PREFIXES = ("critic", "target", "opt_critic")  # TwinCritics' checkpoint names


def offline_replay(obs_dim: int, act_dim: int, critic_obs_dim: int, online_capacity: int,
                   offline: Mapping[str, np.ndarray]) -> ReplayBuffer:
    """Replay with the logged transitions (obs, action, reward, next_obs, terminated,
    critic_obs, next_critic_obs) in "offline", and room for `online_capacity` fresh ones."""
    n = len(offline["reward"])
    if n == 0:
        raise ValueError("no logged transitions to fine-tune from")
    replay = ReplayBuffer(obs_dim, act_dim, {"offline": n, "online": online_capacity},
                          critic_obs_dim=critic_obs_dim)
    critic = ({"critic_obs": offline["critic_obs"], "next_critic_obs": offline["next_critic_obs"]}
              if critic_obs_dim else {})
    replay.add(offline["obs"], offline["action"], offline["reward"], offline["next_obs"],
               np.asarray(offline["terminated"], np.float32), partition="offline", **critic)
    return replay


def mixed_sample(replay: ReplayBuffer, batch_size: int, rng: np.random.Generator,
                 num_batches: int, offline_fraction: float) -> dict[str, np.ndarray]:
    """Stacked batches, `offline_fraction` of each from the logs (all of it while there is no
    fresh data yet)."""
    if replay.size("online") == 0 or offline_fraction >= 1.0:
        ratio = {"offline": 1.0}
    elif offline_fraction <= 0.0:
        ratio = {"online": 1.0}
    else:
        ratio = {"offline": offline_fraction, "online": 1.0 - offline_fraction}
    return replay.sample(batch_size, rng, num_batches=num_batches, ratio=ratio)


class CriticOnly:
    """`with CriticOnly(agent): agent.update_stacked(...)` trains the critics only."""

    def __init__(self, agent):
        self.agent = agent

    def __enter__(self):
        self.saved = {name: v.numpy() for name, v in self.agent.state_variables().items()
                      if not name.startswith(CRITIC_PREFIXES)}
        return self

    def __exit__(self, *exc) -> None:
        variables = self.agent.state_variables()
        for name, value in self.saved.items():
            variables[name].assign(value)


def partition_losses(agent, replay: ReplayBuffer, rng: np.random.Generator) -> dict[str, float]:
    """{"critic_offline": ..., "critic_online": ...}: the critic loss on one batch from each
    partition that holds data, at the current parameters (a throw-away update, every variable
    put back)."""
    out = {}
    variables = agent.state_variables()
    saved = {name: v.numpy() for name, v in variables.items()}
    batch_size = agent.config.batch_size
    try:
        for part in ("offline", "online"):
            if replay.size(part) >= 1:
                batch = replay.sample(batch_size, rng, num_batches=1, ratio={part: 1.0})
                out[f"critic_{part}"] = agent.update_stacked(batch)["critic_loss"]
    finally:
        for name, value in saved.items():
            variables[name].assign(value)
    return out

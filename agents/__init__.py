"""Agents: SAC and TD3 in TensorFlow, their networks, replay buffer and normaliser.

Find an agent by name:

    agent = make_agent("sac", {"batch_size": 128}, obs_dim, act_dim, seed=0)

What the rest of the system may use of an agent is the `Agent` protocol below; both agents
implement it through `OffPolicyAgent` (base.py). The algorithm modules import TensorFlow, so
they are loaded only when an agent is made; `gaitforge.agents.config` (the config
dataclasses), `gaitforge.agents.replay` and `gaitforge.agents.checkpoint` stay NumPy-only.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .config import AGENT_CONFIGS, AgentConfig, SACConfig, TD3Config, config_name

if TYPE_CHECKING:
    from .base import DeterministicActor

# name -> (module, agent class); the config classes name themselves (config.AGENT_CONFIGS)
_AGENTS = {"sac": ("gaitforge.agents.sac", "SAC"), "td3": ("gaitforge.agents.td3", "TD3")}
_CONFIGS = {config_name(cls): cls for cls in AGENT_CONFIGS}


@runtime_checkable
class Agent(Protocol):
    """An off-policy agent as the trainer, evaluation, export and the CLI use it.

    Observations are float32 [N, obs_dim]; actions float32 [N, act_dim] in [-1, 1];
    `critic_obs_dim` privileged floats per observation go to an asymmetric critic (0: none).
    Batches are ReplayBuffer.sample dicts (`obs`, `action`, `reward`, `next_obs`,
    `terminated`, and `critic_obs` / `next_critic_obs` when critic_obs_dim > 0).
    """

    algo: str  # the registry name; checkpoints record it
    config: AgentConfig
    obs_dim: int
    act_dim: int
    critic_obs_dim: int

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """Actions for a batch of observations; exploring unless `deterministic`."""

    def observe(self, obs: np.ndarray, critic_obs: np.ndarray | None = None) -> None:
        """Feed fresh observations to the agent's normalisers."""

    def update(self, batch: Mapping[str, np.ndarray]) -> dict[str, float]:
        """One gradient update on a batch of config.batch_size; its metrics."""

    def update_stacked(self, batches: Mapping[str, np.ndarray]) -> dict[str, float]:
        """K updates on K stacked batches in one call; the metrics of the last."""

    def get_state(self) -> dict[str, np.ndarray]:
        """Everything needed to resume exactly, as a flat dict of arrays."""

    def set_state(self, state: Mapping[str, np.ndarray], source: str = "state") -> None:
        """Restore `get_state()`; a mismatch raises CheckpointError naming `source`."""

    def deterministic_actor(self) -> DeterministicActor:
        """A tf.Module: obs [N, obs_dim] float32 -> actions [N, act_dim], the observation
        normaliser inside; the same numbers as act(obs, deterministic=True)."""


def known_agents() -> tuple[str, ...]:
    return tuple(sorted(_AGENTS))


def _check_name(name: str) -> None:
    if name not in _AGENTS:
        raise ValueError(f"unknown agent '{name}' (known: {', '.join(known_agents())})")


def config_class(name: str) -> type[AgentConfig]:
    """The frozen config dataclass of agent `name` (imports no TensorFlow)."""
    _check_name(name)
    return _CONFIGS[name]


def agent_class(name: str) -> type:
    """The agent class of `name` (imports TensorFlow)."""
    _check_name(name)
    module_name, cls_name = _AGENTS[name]
    return getattr(importlib.import_module(module_name), cls_name)


def make_agent(name: str, config: Any, obs_dim: int, act_dim: int, critic_obs_dim: int = 0,
               seed: int = 0) -> Agent:
    """Build agent `name` ("sac" or "td3") for observations of obs_dim floats and actions of
    act_dim floats in [-1, 1]; critic_obs_dim privileged floats go to an asymmetric critic.

    config: its config dataclass, or a mapping of field -> value (unknown keys raise a
    ValueError that names them), or None for the defaults. `seed` fixes initial weights and
    every random draw of the agent (tf.random.Generator), so runs reproduce.
    """
    config_cls = config_class(name)
    if config is None:
        config = config_cls()
    elif isinstance(config, Mapping):
        fields = {f.name for f in dataclasses.fields(config_cls)}
        unknown = sorted(set(config) - fields)
        if unknown:
            raise ValueError(f"unknown key '{unknown[0]}' in {config_cls.__name__} "
                             f"(known: {', '.join(sorted(fields))})")
        config = config_cls(**config)
    elif not isinstance(config, config_cls):
        raise ValueError(f"config for '{name}' must be a {config_cls.__name__} or a mapping, "
                         f"got {type(config).__name__}")
    for dim_name, value, low in (("obs_dim", obs_dim, 1), ("act_dim", act_dim, 1),
                                 ("critic_obs_dim", critic_obs_dim, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{dim_name} must be an integer >= {low}, got {value!r}")
    return agent_class(name)(config, obs_dim, act_dim, critic_obs_dim=critic_obs_dim, seed=seed)


__all__ = ["Agent", "AgentConfig", "SACConfig", "TD3Config", "agent_class", "config_class",
           "known_agents", "make_agent"]

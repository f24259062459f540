"""Agents: SAC and TD3 in TensorFlow, their networks, replay buffer and normaliser.

Find an agent by name:

    agent = make_agent("sac", {"batch_size": 128}, obs_dim, act_dim, seed=0)

The algorithm modules import TensorFlow, so they are loaded only when an agent is made;
`gaitforge.agents.replay` and `gaitforge.agents.checkpoint` stay NumPy-only.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any

# name -> (module, agent class, config class)
_REGISTRY = {
    "sac": ("gaitforge.agents.sac", "SAC", "SACConfig"),
    "td3": ("gaitforge.agents.td3", "TD3", "TD3Config"),
}


def known_agents() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def _lookup(name: str) -> tuple[type, type]:
    if name not in _REGISTRY:
        raise ValueError(f"unknown agent '{name}' (known: {', '.join(known_agents())})")
    module_name, agent_cls, config_cls = _REGISTRY[name]
    module = importlib.import_module(module_name)
    return getattr(module, agent_cls), getattr(module, config_cls)


def config_class(name: str) -> type:
    """The frozen config dataclass of agent `name` (for the CLI's YAML loader)."""
    return _lookup(name)[1]


def make_agent(name: str, config: Any, obs_dim: int, act_dim: int, critic_obs_dim: int = 0,
               seed: int = 0):
    """Build agent `name` ("sac" or "td3") for observations of obs_dim floats and actions of
    act_dim floats in [-1, 1]; critic_obs_dim privileged floats go to an asymmetric critic.

    config: its config dataclass, or a mapping of field -> value (unknown keys raise a
    ValueError that names them), or None for the defaults. `seed` fixes initial weights and
    every random draw of the agent (tf.random.Generator), so runs reproduce.
    """
    agent_cls, config_cls = _lookup(name)
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
    return agent_cls(config, obs_dim, act_dim, critic_obs_dim=critic_obs_dim, seed=seed)


__all__ = ["config_class", "known_agents", "make_agent"]

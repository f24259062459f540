"""The agents' config dataclasses: what SAC and TD3 share in `AgentConfig`, and each algorithm's
own fields in `SACConfig` and `TD3Config`.

They live here rather than beside their algorithms because this module does not import
TensorFlow: the CLI reads and checks a run's `agent:` section before it builds anything.

A concrete config re-declares `name` as a Literal, its registry name. That field selects the
class when a RunConfig's flat `agent:` section is loaded (`agent: {name: td3, gamma: 0.98}`;
robots/configio.py resolves a Union of such dataclasses by `name`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class AgentConfig:
    """Fields every off-policy actor-critic agent here has. Not used on its own: build a
    SACConfig or a TD3Config."""

    name: str = ""  # a concrete config re-declares it as Literal["<its name>"]
    actor_hidden: tuple[int, ...] = (256, 256)
    critic_hidden: tuple[int, ...] = (256, 256)
    critic_layer_norm: bool = False  # LayerNorm after each hidden layer of the critics
    # > 0: each hidden unit of the critics is dropped with this probability in every update
    # (DroQ: 0.01, with LayerNorm), so that they do not memorise a small replay
    critic_dropout: float = 0.0
    num_critics: int = 2  # > 2: an ensemble (REDQ, RLPD: 10)
    critic_subset: int = 2  # the TD target's min is over this many critics, drawn per batch
    asymmetric_critic: bool = False  # critics also see critic_obs (privileged sim state)
    batch_size: int = 256
    gamma: float = 0.99  # discount per control step
    tau: float = 0.005  # Polyak rate of the target networks
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    # Fine-tuning: the actor's loss gains this times the mean squared difference between its
    # deterministic action and that of the actor it started from (`set_anchor`), so that it
    # improves on its parent without wandering from it (0: off; TD3+BC's strength is ~0.6)
    actor_anchor: float = 0.0
    normalize_obs: bool = True
    obs_clip: float = 10.0  # normalised observations are clipped to [-obs_clip, obs_clip]

    def __post_init__(self):
        expected = config_name(type(self))
        if not expected:
            raise ValueError(f"{type(self).__name__} names no agent: build one of "
                             f"{', '.join(c.__name__ for c in AGENT_CONFIGS)}")
        if self.name != expected:
            raise ValueError(f"name of a {type(self).__name__} must be {expected!r}, "
                             f"got {self.name!r}")
        check_hidden(self, "actor_hidden")
        check_hidden(self, "critic_hidden")
        for name in ("critic_layer_norm", "asymmetric_critic", "normalize_obs"):
            check_bool(self, name)
        check_int(self, "batch_size")
        check_int(self, "num_critics", low=2)
        check_int(self, "critic_subset", low=1)
        if self.critic_subset > self.num_critics:
            raise ValueError(f"critic_subset ({self.critic_subset}) must be at most "
                             f"num_critics ({self.num_critics})")
        check_number(self, "gamma", low=0.0, high=1.0)
        check_number(self, "tau", low=0.0, high=1.0)
        for name in ("actor_lr", "critic_lr", "obs_clip"):
            check_number(self, name, low=0.0)
        check_number(self, "actor_anchor", low=0.0, low_open=False)
        check_number(self, "critic_dropout", low=0.0, low_open=False, high=1.0, high_open=True)


@dataclass(frozen=True)
class SACConfig(AgentConfig):
    """Soft Actor-Critic (agents/sac.py)."""

    name: Literal["sac"] = "sac"
    alpha_lr: float = 3e-4
    # The locomotion rewards are scaled by the control period (about 0.03 a step at 50 Hz);
    # at alpha 1 the entropy bonus (about 12 a step) swamped them and servo_dog's critics
    # learned the entropy for the first 60k steps while alpha fell. From 0.001 the two are of
    # a size at the first update. Rewards of order 1 a step (dm-control) may want 1.0.
    init_alpha: float = 0.001
    learn_alpha: bool = True
    target_entropy: float | None = None  # None: -act_dim
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    # Fine-tuning on logs: the critics' loss gains this times the mean of Q(s, a ~ pi) -
    # Q(s, a_logged) over the minibatch (CQL, Kumar et al. 2020, its eq. 2 with mu = pi), so
    # that actions the data never showed are not valued above the ones it did (0: off)
    critic_conservative: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        check_bool(self, "learn_alpha")
        check_number(self, "critic_conservative", low=0.0, low_open=False)
        for name in ("alpha_lr", "init_alpha"):
            check_number(self, name, low=0.0)
        if self.target_entropy is not None:
            check_number(self, "target_entropy")
        check_number(self, "log_std_min")
        check_number(self, "log_std_max", low=self.log_std_min)


@dataclass(frozen=True)
class TD3Config(AgentConfig):
    """TD3 (agents/td3.py)."""

    name: Literal["td3"] = "td3"
    policy_delay: int = 2  # actor and targets update once per this many critic updates
    target_noise: float = 0.2  # std of the target policy smoothing noise (action units)
    target_noise_clip: float = 0.5
    exploration_noise: float = 0.1  # std of the Gaussian noise act() adds when exploring

    def __post_init__(self):
        super().__post_init__()
        check_int(self, "policy_delay")
        for name in ("target_noise", "target_noise_clip", "exploration_noise"):
            check_number(self, name, low=0.0, low_open=False)


# Every concrete agent config; the registry (agents/__init__.py) and RunConfig use this list.
AGENT_CONFIGS: tuple[type[AgentConfig], ...] = (SACConfig, TD3Config)


def config_name(cls: type[AgentConfig]) -> str:
    """The registry name a config class declares (its `name` default)."""
    return cls.__dataclass_fields__["name"].default


# --- checks shared by the config dataclasses (each raises ValueError naming the field) ---

def check_number(obj, name: str, *, low: float | None = None, high: float | None = None,
                 low_open: bool = True, high_open: bool = False) -> None:
    """`obj.<name>` must be a real number in the (by default) half-open range (low, high]."""
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value!r}")


def check_int(obj, name: str, *, low: int = 1) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")


def check_bool(obj, name: str) -> None:
    if not isinstance(getattr(obj, name), bool):
        raise ValueError(f"{name} must be true or false, got {getattr(obj, name)!r}")


def check_hidden(obj, name: str) -> None:
    """Hidden layer sizes: a tuple of positive ints (a YAML list is turned into a tuple)."""
    value = getattr(obj, name)
    if not isinstance(value, list | tuple):
        raise ValueError(f"{name} must be a list of layer sizes, got {value!r}")
    for size in value:
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"{name} must hold positive integers, got {list(value)!r}")
    object.__setattr__(obj, name, tuple(value))

"""External benchmark envs (gymnasium, dm-control suite) behind our single-env gymnasium API.

Our agents train on anything ``gaitforge.sim.vec_env.VecEnv`` can batch. This module
adapts third-party continuous-control envs to that contract, so results can be compared
with published numbers and with peer libraries (SB3, TF-Agents):

    env = make_external_env("dmc:quadruped-walk", seed=0)
    env = make_external_env("gym:Pendulum-v1")
    VecEnv([external_env_factory("dmc:walker-walk")] * 8, workers=2, seed=0)

Ids
    ``gym:<gymnasium id>``      any registered gymnasium env with a ``Box`` action space.
    ``dmc:<domain>-<task>``     a dm-control suite task, split on the FIRST '-'
                                (``dmc:ball_in_cup-catch``); see ``dm_control.suite.ALL_TASKS``.
    Unknown prefixes, gymnasium ids, domains or tasks raise ``ValueError`` naming the id
    and listing the known ones. Extra keyword arguments of ``make_external_env`` go to
    ``gymnasium.make`` (e.g. ``max_episode_steps=200``) or to the suite task function
    (``time_limit`` in seconds, ``environment_kwargs``); use ``seed``, not ``random``.

Conventions shared by both kinds
    action       ``Box(-1, 1, (A,), float32)``. Actions are clipped to [-1, 1], then mapped
                 affinely onto the env's real bounds [low, high] (``rescale_action``:
                 -1 -> low, 0 -> midpoint, +1 -> high). Bounds must be finite.
    observation  flat ``Box((O,), float32)``, cast from the env's dtype.
    reward       Python float.
    critic       ``critic_observation_space = None``: no privileged state for an asymmetric
                 critic (so a VecEnv's ``single_critic_observation_space`` is None).
    info         always ``{}`` at reset and step (VecEnv needs the same keys every step;
                 gymnasium envs add keys at episode end, so their info is dropped).
    seed         ``make_external_env(seed=s)`` seeds the first ``reset()`` that passes no
                 seed; ``reset(seed=s)`` makes the episode reproducible; ``reset()`` with no
                 seed continues the env's own RNG stream.

dm-control specifics (``DmControlEnv``)
    Observation order: the task's own ``observation_spec()`` order (the order in which
    the task builds its OrderedDict; the same as dm-control's ``flat_observation=True``),
    each entry raveled in C order; ``env.observation_layout`` maps key -> slice. E.g.
    walker: orientations[0:14], height[14:15], velocity[15:24]; quadruped:
    egocentric_state[0:44], torso_velocity[44:47], torso_upright[47:48], imu[48:54],
    force_torque[54:78]; cartpole: position[0:3], velocity[3:5]. (Gymnasium's ``Dict``
    space sorts its keys, so an adapter that goes through ``Dict`` + ``FlattenObservation``
    orders them alphabetically instead.)
    ``reset(seed=s)`` re-seeds the task's ``RandomState`` in place with ``s``, so the
    episode equals that of ``suite.load(..., task_kwargs={"random": s}).reset()``.
    A LAST time step gives terminated = (discount == 0), truncated = (discount != 0, i.e.
    the time limit). After LAST, ``step`` raises until ``reset`` (dm-control would
    otherwise reset silently). ``PhysicsError`` (divergent simulation) propagates.
    dm-control is imported lazily; on a machine without a display set ``MUJOCO_GL=disable``
    (or egl/osmesa) before it is imported, else it probes GLFW and warns.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import FlattenObservation, RescaleAction, TransformObservation

__all__ = ["DmControlEnv", "external_env_factory", "make_external_env", "rescale_action"]

_PREFIXES = ("gym", "dmc")


def rescale_action(action, low, high) -> np.ndarray:
    """Map a normalised action in [-1, 1] (clipped first) affinely onto [low, high], float64."""
    a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    return np.clip(0.5 * (high + low) + a * (0.5 * (high - low)), low, high)


def _unknown(what: str, name: str, env_id: str, known: list[str]) -> ValueError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ValueError(
        f"unknown {what} {name!r} in env id {env_id!r}.{hint} Known: {', '.join(known)}"
    )


class DmControlEnv(gymnasium.Env):
    """A dm-control suite task as a ``gymnasium.Env`` (conventions: see the module docstring)."""

    metadata = {"render_modes": []}

    def __init__(self, domain: str, task: str, *, seed: int | None = None, **task_kwargs: Any):
        from dm_control import suite

        if (domain, task) not in suite.ALL_TASKS:
            known = [f"{d}-{t}" for d, t in suite.ALL_TASKS]
            raise _unknown("dm-control task", f"{domain}-{task}", f"dmc:{domain}-{task}", known)
        if "random" in task_kwargs:
            raise ValueError("pass the task seed as seed=..., not random=...")
        self._env = suite.load(domain, task, task_kwargs={**task_kwargs, "random": seed})
        spec = self._env.action_spec()
        self._low = np.broadcast_to(spec.minimum, spec.shape).astype(np.float64)
        self._high = np.broadcast_to(spec.maximum, spec.shape).astype(np.float64)
        if len(spec.shape) != 1 or not np.all(np.isfinite(self._low) & np.isfinite(self._high)):
            raise ValueError(f"dmc:{domain}-{task}: need a 1-D action spec with finite bounds")
        self.observation_layout: dict[str, slice] = {}
        size = 0
        for key, obs_spec in self._env.observation_spec().items():
            n = int(np.prod(obs_spec.shape, dtype=np.int64))
            self.observation_layout[key] = slice(size, size + n)
            size += n
        self.observation_space = spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, spec.shape, np.float32)
        self.critic_observation_space = None  # no privileged state
        self._needs_reset = True

    @property
    def dm_env(self):
        """The wrapped ``dm_control.rl.control.Environment`` (physics, task, specs)."""
        return self._env

    def _flatten(self, observation) -> np.ndarray:
        return np.concatenate(
            [np.asarray(observation[k], dtype=np.float32).ravel() for k in self.observation_layout]
        )

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(seed)  # in place: every holder of the RNG sees it
        time_step = self._env.reset()
        self._needs_reset = False
        return self._flatten(time_step.observation), {}

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("DmControlEnv.step() before reset(), or after the episode ended")
        action = np.asarray(action)
        if action.shape != self.action_space.shape:
            raise ValueError(f"action shape {action.shape}, expected {self.action_space.shape}")
        time_step = self._env.step(rescale_action(action, self._low, self._high))
        terminated = truncated = False
        if time_step.last():
            self._needs_reset = True
            terminated = bool(time_step.discount == 0.0)
            truncated = not terminated
        return (
            self._flatten(time_step.observation),
            float(time_step.reward),
            terminated,
            truncated,
            {},
        )

    def close(self):
        self._env.close()


class _GymAdapter(gymnasium.Wrapper, gymnasium.utils.RecordConstructorArgs):
    """Outermost gymnasium wrapper: float32 [-1, 1] actions (clipped), empty infos, first seed."""

    def __init__(self, env: gymnasium.Env, seed: int | None):
        gymnasium.utils.RecordConstructorArgs.__init__(self, seed=seed)  # env.spec.make() works
        super().__init__(env)
        self._inner_dtype = env.action_space.dtype
        self.action_space = spaces.Box(-1.0, 1.0, env.action_space.shape, np.float32)
        self.critic_observation_space = None  # no privileged state
        self._pending_seed = seed

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        seed = self._pending_seed if seed is None else seed
        self._pending_seed = None
        obs, _ = self.env.reset(seed=seed, options=options)
        return obs, {}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=self._inner_dtype), -1.0, 1.0)
        obs, reward, terminated, truncated, _ = self.env.step(action)
        return obs, float(reward), bool(terminated), bool(truncated), {}


def _to_float32(obs) -> np.ndarray:
    return np.asarray(obs, dtype=np.float32)


def _make_gym(env_id: str, gym_id: str, seed: int | None, kwargs: dict) -> gymnasium.Env:
    if gym_id not in gymnasium.registry:
        raise _unknown("gymnasium id", gym_id, env_id, sorted(gymnasium.registry))
    env = gymnasium.make(gym_id, **kwargs)
    act = env.action_space
    if not isinstance(act, spaces.Box) or not (act.is_bounded("both") and len(act.shape) == 1):
        env.close()
        raise ValueError(
            f"{env_id}: need a continuous action space (1-D Box with finite bounds), got {act}"
        )
    if not (
        isinstance(env.observation_space, spaces.Box) and len(env.observation_space.shape) == 1
    ):
        env = FlattenObservation(env)  # Dict, Tuple, images, ...
    box = env.observation_space  # float32 bounds cast here (Box would warn); huge ones -> inf
    with np.errstate(over="ignore"):
        f32_space = spaces.Box(box.low.astype(np.float32), box.high.astype(np.float32), box.shape)
    env = TransformObservation(env, _to_float32, f32_space)
    one = act.dtype.type(1.0)  # bounds in the action's own dtype, so that Box does not warn
    env = RescaleAction(env, -one, one)
    return _GymAdapter(env, seed)


def make_external_env(env_id: str, seed: int | None = None, **kwargs: Any) -> gymnasium.Env:
    """Build ``gym:<id>`` or ``dmc:<domain>-<task>`` with our conventions (module docstring)."""
    prefix, sep, name = env_id.partition(":")
    if not sep or prefix not in _PREFIXES:
        raise ValueError(
            f"unknown env id {env_id!r}: expected 'gym:<gymnasium id>' or "
            f"'dmc:<domain>-<task>' (known prefixes: {', '.join(_PREFIXES)})"
        )
    if prefix == "gym":
        return _make_gym(env_id, name, seed, kwargs)
    domain, sep, task = name.partition("-")
    if not sep:
        raise ValueError(f"dm-control env id {env_id!r} must be 'dmc:<domain>-<task>'")
    return DmControlEnv(domain, task, seed=seed, **kwargs)


def external_env_factory(env_id: str, seed: int | None = None, **kwargs: Any) -> functools.partial:
    """A picklable zero-arg factory of ``make_external_env(env_id, seed, **kwargs)`` for VecEnv."""
    return functools.partial(make_external_env, env_id, seed, **kwargs)

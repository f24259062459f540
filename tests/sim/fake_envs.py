"""Small deterministic gymnasium envs for the VecEnv tests (module-level, so picklable).

``PointMassEnv``: a 2-D point mass pushed by a bounded force. Its initial state and its
episode length (truncation) are drawn from the seeded ``np_random``; it terminates when
it leaves a box. Info follows the locomotion env's shape: named reward terms in a dict,
and a privileged ``critic_obs`` vector (in ``critic_observation_space``) in both the step and
the reset info.
"""

from __future__ import annotations

import os
import signal

import gymnasium
import numpy as np
from gymnasium import spaces

OBS_DIM = 4
CRITIC_DIM = 6


class PointMassEnv(gymnasium.Env):
    """State (x, y, vx, vy); action: force in [-1, 1]^2; dt = 0.1 s."""

    bound_m = 1.5
    dt_s = 0.1

    def __init__(self, min_len: int = 8, max_len: int = 40):
        self.min_len, self.max_len = min_len, max_len
        self.observation_space = spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.critic_observation_space = spaces.Box(-np.inf, np.inf, (CRITIC_DIM,), np.float64)
        self._state = np.zeros(4)
        self._t = 0
        self._limit = max_len
        self._gain = 1.0

    def set_gain(self, gain: float) -> float:
        self._gain = float(gain)
        return self._gain

    def _obs(self) -> np.ndarray:
        return self._state.astype(np.float32)

    def _critic_obs(self) -> np.ndarray:
        return np.concatenate([self._state, [self._t, self._limit]])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._state = self.np_random.uniform(-1.0, 1.0, size=4)
        self._limit = int(self.np_random.integers(self.min_len, self.max_len + 1))
        self._t = 0
        return self._obs(), {"critic_obs": self._critic_obs(), "episode_len": self._limit}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0) * self._gain
        self._state[2:] += self.dt_s * a
        self._state[:2] += self.dt_s * self._state[2:]
        self._t += 1
        dist = float(np.linalg.norm(self._state[:2]))
        terms = {"distance": -dist, "effort": -0.1 * float(a @ a)}
        terminated = bool(np.abs(self._state[:2]).max() > self.bound_m)
        truncated = not terminated and self._t >= self._limit
        info = {"reward_terms": terms, "critic_obs": self._critic_obs(), "t": self._t}
        return self._obs(), sum(terms.values()), terminated, truncated, info


def _bomb_goes_off(where: str) -> None:
    raise ValueError(f"boom in {where}")


class BombEnv(PointMassEnv):
    """Raises in ``where`` ("init", "reset" or "step"; the latter on step ``at_step``)."""

    def __init__(self, where: str = "step", at_step: int = 3):
        if where == "init":
            _bomb_goes_off("init")
        super().__init__()
        self.where, self.at_step, self._n = where, at_step, 0

    def reset(self, *, seed=None, options=None):
        if self.where == "reset":
            _bomb_goes_off("reset")
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self._n += 1
        if self.where == "step" and self._n == self.at_step:
            _bomb_goes_off("step")
        return super().step(action)


class DyingEnv(PointMassEnv):
    """Kills its own process on step ``at_step``: ``os._exit(3)`` or SIGKILL."""

    def __init__(self, how: str = "exit", at_step: int = 2):
        super().__init__()
        self.how, self.at_step, self._n = how, at_step, 0

    def step(self, action):
        self._n += 1
        if self._n == self.at_step:
            if self.how == "exit":
                os._exit(3)
            os.kill(os.getpid(), signal.SIGKILL)
        return super().step(action)


class OtherSpaceEnv(PointMassEnv):
    """Like PointMassEnv but with a 3-D action: for the space-mismatch check."""

    def __init__(self):
        super().__init__()
        self.action_space = spaces.Box(-1.0, 1.0, (3,), np.float32)


class OtherCriticEnv(PointMassEnv):
    """Like PointMassEnv but with a 3-D critic observation space: for the mismatch check."""

    def __init__(self):
        super().__init__()
        self.critic_observation_space = spaces.Box(-np.inf, np.inf, (3,), np.float64)


class NoCriticEnv(PointMassEnv):
    """A PointMassEnv that declares no privileged state (no critic_observation_space)."""

    def __init__(self):
        super().__init__()
        del self.critic_observation_space

"""Evaluation with the deterministic actor: does the robot follow the whole command?

Locomotion metrics, per episode then averaged:
    return              sum of rewards
    fell                1 if the episode terminated (trunk contact, tilt, height) early
    vx_tracking_error   m/s: mean over windows (after the first second) of
                        |window-mean forward body velocity - commanded vx|. A window is 1 s,
                        or with a gait the fewest whole strides that last at least 1 s (1.2 s
                        at 2.5 Hz): averaging over whole strides keeps the stride's own speed
                        and yaw ripple out of the figure (over 2.5 strides, half a stride's
                        ripple stays in). An episode shorter than 2 s is judged on its whole
                        mean velocity.
    vy_tracking_error   m/s: the same for the lateral body velocity against commanded vy
    yaw_rate_error      rad/s: the same for the yaw rate against the commanded yaw rate, the
                        yaw rate of a window being its heading change (from the IMU quaternion,
                        as a robot measures it) over the window's duration
    vx_mean, vy_mean, yaw_rate_mean   the means the errors are taken from
    heading_change_deg  heading at the end minus at the start (degrees; a robot told to walk
                        straight that walks in a circle shows it here)
    rate_limited_share  share of the steps whose action the deploy's rate limit held back
                        (`env.deploy_limits`; what `gaitforge deploy` reports as the same)
`walking(result)` is the criterion: no fall, and every error below its bound.
`evaluate_grid` judges every cell of a robot's command grid (forward, backward, standing,
turning on the spot, side steps, walking while turning: `evaluation.grid` in its robot file);
`walking_on_grid` needs every cell walking.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from gaitforge.control.policy_io import heading_rad

from .env import EnvConfig, make_env

Act = Callable[[np.ndarray], np.ndarray]  # (N, obs_dim) -> (N, act_dim), deterministic


def evaluate_locomotion(act: Act, env_config: EnvConfig, *, episodes: int = 5,
                        command=(0.3, 0.0, 0.0), episode_length_s: float | None = None,
                        seed: int = 1_000_000, frames: list | None = None) -> dict:
    """Run `episodes` episodes at a fixed command; append RGB frames of the first to `frames`,
    one per control step."""
    if episode_length_s is not None:
        task = dataclasses.replace(env_config.task, episode_length_s=episode_length_s)
        env_config = dataclasses.replace(env_config, task=task)
    env = make_env(env_config, render_mode="rgb_array" if frames is not None else None)
    per_second = round(1.0 / env_config.sim.control_dt_s)
    results = []
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep, options={"command": command})
            total, fell, done, held = 0.0, False, False, []
            track = Track(env_config.action.gait.frequency_hz)
            while not done:
                obs, reward, terminated, truncated, info = env.step(act(obs[None])[0])
                total += reward
                held.append(info["rate_limited"])
                track.add(env.body.read())
                fell, done = terminated, terminated or truncated
                if frames is not None and ep == 0:
                    frames.append(env.render())
            results.append({"return": total, "fell": float(fell),
                            **track.judge(command, per_second),
                            "rate_limited_share": float(np.mean(held))})
    finally:
        env.close()
    out = {key: float(np.mean([r[key] for r in results])) for key in results[0]}
    out["fall_rate"] = out.pop("fell")
    out["episodes"] = episodes
    out["command"] = [float(c) for c in command]
    return out


def evaluate_grid(act: Act, env_config: EnvConfig, grid: dict, *, episodes: int = 1,
                  episode_length_s: float | None = None, seed: int = 1_000_000) -> dict:
    """{cell name: `evaluate_locomotion` at that cell's command} for a grid {name: command}."""
    return {name: evaluate_locomotion(act, env_config, episodes=episodes, command=command,
                                      episode_length_s=episode_length_s, seed=seed)
            for name, command in grid.items()}


def walking_on_grid(results: dict) -> list[str]:
    """The cells of an `evaluate_grid` result that are not walking (empty: all are)."""
    return [name for name, result in results.items() if not walking(result)]


class Track:
    """One episode's samples for judging tracking: true body-frame velocities (simulation)
    and the heading from the IMU quaternion (what a robot measures); `stride_hz`: the gait's
    frequency (0: none), which sizes the judging windows."""

    def __init__(self, stride_hz: float = 0.0):
        self.stride_hz = stride_hz
        self.vx: list[float] = []
        self.vy: list[float] = []
        self.heading: list[float] = []

    def add(self, state) -> None:
        v = state.privileged.base_lin_vel_m_s
        self.vx.append(float(v[0]))
        self.vy.append(float(v[1]))
        self.heading.append(heading_rad(state.imu_quat_wxyz))

    def judge(self, command, per_second: int) -> dict:
        """The tracking metrics of the module docstring for this episode, `per_second` samples
        a second."""
        out, window = {}, judging_window(per_second, self.stride_hz)
        for name, samples, wanted in (("vx", self.vx, command[0]), ("vy", self.vy, command[1])):
            out[f"{name}_tracking_error"], out[f"{name}_mean"] = window_error(
                samples, wanted, per_second, window)
        heading = np.unwrap(np.asarray(self.heading, np.float64))
        rate = np.gradient(heading) * per_second if len(heading) > 1 else np.zeros(1)
        out["yaw_rate_error"], out["yaw_rate_mean"] = window_error(rate, command[2], per_second,
                                                                   window)
        out["heading_change_deg"] = float(np.degrees(heading[-1] - heading[0])) \
            if len(heading) else 0.0
        return out


def judging_window(per_second: int, stride_hz: float = 0.0) -> int:
    """Samples in a judging window: a second's, or with a gait of `stride_hz` the fewest whole
    strides that last at least a second."""
    if stride_hz <= 0:
        return per_second
    strides = math.ceil(stride_hz - 1e-9)
    return round(strides / stride_hz * per_second)  # >= per_second: the strides last >= 1 s


def window_error(samples, wanted: float, per_second: int,
                 window: int | None = None) -> tuple[float, float]:
    """(mean over windows of `window` samples (default: a second's) after the first second of
    |window mean - wanted|, mean after the first second); an episode shorter than 2 s is
    judged on its whole mean."""
    window = window or per_second
    x = np.asarray(samples[per_second:] if len(samples) > 2 * per_second else samples,
                   np.float64)
    windows = x[: len(x) // window * window].reshape(-1, window).mean(axis=1)
    if not windows.size:  # fell within a second or two: judge the whole episode
        windows = x.mean(keepdims=True)
    return float(np.mean(np.abs(windows - wanted))), float(x.mean())


def evaluate_returns(act: Act, make: Callable, *, episodes: int = 5,
                     seed: int = 1_000_000) -> dict:
    """Mean return of a generic (gymnasium / dm-control) env."""
    env = make()
    returns = []
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(act(obs[None])[0])
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return {"return": float(np.mean(returns)), "return_std": float(np.std(returns)),
            "episodes": episodes}


ERRORS = ("vx_tracking_error", "vy_tracking_error", "yaw_rate_error")


def walking(result: dict, max_error_m_s: float = 0.1, max_yaw_error_rad_s: float = 0.1) -> bool:
    """The walking criterion: no fall in any episode, forward and lateral tracking errors below
    `max_error_m_s` and the yaw-rate error below `max_yaw_error_rad_s`."""
    bounds = {"vx_tracking_error": max_error_m_s, "vy_tracking_error": max_error_m_s,
              "yaw_rate_error": max_yaw_error_rad_s}
    return result["fall_rate"] == 0.0 and all(result.get(k, 0.0) < b for k, b in bounds.items())

"""Evaluation with the deterministic actor.

Locomotion metrics, per episode then averaged:
    return              sum of rewards
    fell                1 if the episode terminated (trunk contact, tilt, height) early
    vx_tracking_error   m/s: mean over 1-s windows (after the first second) of
                        |window-mean forward body velocity - commanded vx|. Averaging over a
                        window keeps the stride's own speed ripple out of the figure. An
                        episode shorter than 2 s is judged on its whole mean velocity.
    vx_mean             m/s: mean forward body velocity (after the first second)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from .env import EnvConfig, make_env

Act = Callable[[np.ndarray], np.ndarray]  # (N, obs_dim) -> (N, act_dim), deterministic


def evaluate_locomotion(act: Act, env_config: EnvConfig, *, episodes: int = 5,
                        command=(0.3, 0.0, 0.0), episode_length_s: float | None = None,
                        seed: int = 1_000_000, frames: list | None = None) -> dict:
    """Run `episodes` episodes at a fixed command; append RGB frames of the first to `frames`."""
    if episode_length_s is not None:
        task = dataclasses.replace(env_config.task, episode_length_s=episode_length_s)
        env_config = dataclasses.replace(env_config, task=task)
    env = make_env(env_config, render_mode="rgb_array" if frames is not None else None)
    per_step = round(1.0 / env_config.sim.control_dt_s)
    results = []
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep, options={"command": command})
            total, vx, fell, done = 0.0, [], False, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(act(obs[None])[0])
                total += reward
                vx.append(env.body.read().privileged.base_lin_vel_m_s[0])
                fell, done = terminated, terminated or truncated
                if frames is not None and ep == 0 and len(vx) % 2 == 0:
                    frames.append(env.render())
            error, vx_mean = vx_tracking(vx, command[0], per_step)
            results.append({"return": total, "fell": float(fell), "vx_tracking_error": error,
                            "vx_mean": vx_mean})
    finally:
        env.close()
    out = {key: float(np.mean([r[key] for r in results])) for key in results[0]}
    out["fall_rate"] = out.pop("fell")
    out["episodes"] = episodes
    out["command_vx"] = float(command[0])
    return out


def vx_tracking(vx, command_vx: float, per_second: int) -> tuple[float, float]:
    """(vx_tracking_error, vx_mean) of one episode's forward velocities, as defined above;
    `per_second` samples make one second."""
    vx = np.asarray(vx[per_second:] if len(vx) > 2 * per_second else vx, np.float64)
    windows = vx[: len(vx) // per_second * per_second].reshape(-1, per_second).mean(axis=1)
    if not windows.size:  # fell within a second or two: judge the whole episode
        windows = vx.mean(keepdims=True)
    return float(np.mean(np.abs(windows - command_vx))), float(vx.mean())


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


def walking(result: dict, max_error_m_s: float = 0.1) -> bool:
    """The time-to-walk criterion: no fall in any episode and tracking error below the bound."""
    return result["fall_rate"] == 0.0 and result["vx_tracking_error"] < max_error_m_s

"""Vectorised-env throughput with 1, 2 and 4 subprocess workers, relative to 1 worker.

    python bench/vec_bench.py                      # CPU-heavy fake env, ~1 ms per step
    python bench/vec_bench.py --env pkg.mod:make_default_env --kwargs '{"robot": "a1"}'

All worker counts are built first, then stepped in interleaved rounds (the order
rotates every round), so they see the same machine noise; each figure is the median
over rounds. The env factory must be a module-level zero-arg callable (after
``--kwargs`` are bound); its action space must be a Box. A second table gives the
per-batch-step overhead of the VecEnv itself on a no-op env.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import statistics
import time

import gymnasium
import numpy as np
from gymnasium import spaces

from gaitforge.sim.vec_env import VecEnv


class CpuHeavyEnv(gymnasium.Env):
    """Deterministic fake env doing ``reps`` rounds of elementwise numpy work per step.

    Elementwise ufuncs only (no BLAS), so one step uses exactly one core.
    """

    def __init__(self, reps: int = 40, size: int = 2048, episode_len: int = 200):
        self.reps, self.episode_len = reps, episode_len
        self.observation_space = spaces.Box(-np.inf, np.inf, (48,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (12,), np.float32)
        self._x = np.zeros(size)
        self._t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._x = self.np_random.uniform(-1.0, 1.0, self._x.shape)
        self._t = 0
        return self._obs(), {"critic_obs": self._x[:16].copy()}

    def _obs(self) -> np.ndarray:
        return self._x[:48].astype(np.float32)

    def step(self, action):
        x = self._x
        x[:12] += 0.01 * np.asarray(action)
        for _ in range(self.reps):
            x = np.sin(x) * 0.9 + np.cos(x) * 0.1
        self._x = x
        self._t += 1
        terms = {"a": float(x[0]), "b": float(x[1])}
        info = {"reward_terms": terms, "critic_obs": x[:16].copy()}
        return self._obs(), sum(terms.values()), False, self._t >= self.episode_len, info


class NoopEnv(gymnasium.Env):
    """Does nothing: measures the VecEnv's own cost per batch step."""

    observation_space = spaces.Box(-1.0, 1.0, (48,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (12,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(48, np.float32), {}

    def step(self, action):
        return np.zeros(48, np.float32), 0.0, False, False, {}


def calibrate_reps(target_ms: float) -> int:
    """Number of work rounds that makes one CpuHeavyEnv step take about target_ms."""
    env = CpuHeavyEnv(reps=50)
    env.reset(seed=0)
    action = np.zeros(12, np.float32)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(20):
            env.step(action)
        times.append((time.perf_counter() - t0) / 20)
    return max(1, round(50 * target_ms * 1e-3 / statistics.median(times)))


def load_factory(spec: str, kwargs: dict):
    module, _, name = spec.partition(":")
    if not name:
        raise SystemExit(f"--env must look like module:function, got {spec!r}")
    fn = getattr(importlib.import_module(module), name)
    return functools.partial(fn, **kwargs) if kwargs else fn


def measure(factory, num_envs: int, worker_counts, steps: int, rounds: int, seed: int):
    """Env steps/s (batch steps x num_envs) of every round, per worker count."""
    venvs = {w: VecEnv([factory] * num_envs, workers=w) for w in worker_counts}
    try:
        space = next(iter(venvs.values())).single_action_space
        rng = np.random.default_rng(seed)
        actions = rng.uniform(space.low, space.high, (steps, num_envs, *space.shape))
        actions = actions.astype(space.dtype)
        for venv in venvs.values():  # warm up
            venv.reset(seed=seed)
            for a in actions[:5]:
                venv.step(a)
        rates: dict[int, list[float]] = {w: [] for w in worker_counts}
        order = list(worker_counts)
        for r in range(rounds):
            for w in order[r % len(order) :] + order[: r % len(order)]:
                venv = venvs[w]
                t0 = time.perf_counter()
                for a in actions:
                    venv.step(a)
                rates[w].append(steps * num_envs / (time.perf_counter() - t0))
        return rates
    finally:
        for venv in venvs.values():
            venv.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--env", default=None, help="module:function, a zero-arg env factory")
    p.add_argument("--kwargs", default="{}", help="JSON keyword arguments for --env")
    p.add_argument("--work-ms", type=float, default=1.0, help="step cost of the fake env")
    p.add_argument("--num-envs", type=int, default=8)
    p.add_argument("--workers", default="1,2,4", help="comma-separated; 1 is the reference")
    p.add_argument("--steps", type=int, default=100, help="batch steps per round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--in-process", action="store_true", help="also measure workers=0")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    worker_counts = sorted({int(w) for w in args.workers.split(",")} | {1})
    if args.in_process:
        worker_counts = [0, *worker_counts]
    if args.env:
        factory, label = load_factory(args.env, json.loads(args.kwargs)), args.env
    else:
        reps = calibrate_reps(args.work_ms)
        factory = functools.partial(CpuHeavyEnv, reps=reps)
        label = f"CpuHeavyEnv (~{args.work_ms:g} ms/step, reps={reps})"

    load_before = os.getloadavg()[0]
    rates = measure(factory, args.num_envs, worker_counts, args.steps, args.rounds, args.seed)
    load_after = os.getloadavg()[0]
    print(f"env: {label}; num_envs={args.num_envs}, {args.rounds} rounds x {args.steps} steps")
    print(
        f"cores: {os.cpu_count()}; 1-min load average before/after: "
        f"{load_before:.2f}/{load_after:.2f} (other load skews the ratios)"
    )
    print("median over rounds; ratio = median (min-max) of per-round ratios to workers=1")
    print(f"{'workers':>8} {'env steps/s':>12} {'vs 1 worker':>12} {'range':>12}")
    for w in worker_counts:
        ratios = [r / r1 for r, r1 in zip(rates[w], rates[1], strict=True)]
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        print(
            f"{w:>8} {statistics.median(rates[w]):>12.0f} "
            f"{statistics.median(ratios):>11.2f}x {spread:>12}"
        )

    noop = measure(NoopEnv, args.num_envs, [0, 1, 2], steps=300, rounds=5, seed=args.seed)
    print(f"\nVecEnv overhead per batch step (NoopEnv, num_envs={args.num_envs}):")
    print(f"{'workers':>8} {'us/step':>12}")
    for w, r in noop.items():
        print(f"{w:>8} {args.num_envs / statistics.median(r) * 1e6:>12.1f}")


if __name__ == "__main__":
    main()

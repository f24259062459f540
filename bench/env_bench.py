"""Environment speed: single-env steps/s per robot x engine, overhead against the bare engine,
and vectorised throughput with 1, 2 and 4 subprocess workers.

    python bench/env_bench.py [--steps 2000] [--rounds 3] [--robots servo_dog,a1,mini_cheetah]
                              [--vec-envs 8] [--skip-vec]

Overhead = our env step time / the time the engine itself spends in the same physics substeps,
both measured in the same run: every physics-step call (stepSimulation / mj_step) is timed,
so "bare" is exactly the physics our env asked for, with the same contacts; everything else
(servo model, IMU, observation, reward terms, randomisation, the Python around the calls) is
the overhead. Rounds repeat; the median of the per-round ratios is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from gaitforge.cli.run_config import env_config
from gaitforge.sim.env import env_factory, make_env


def time_env(env, actions: np.ndarray) -> tuple[float, float]:
    """(seconds per env.step, seconds per step inside the engine's physics calls)."""
    body = env.unwrapped.body
    physics, in_physics = body._physics_step, [0.0]

    def timed():
        t0 = time.perf_counter()
        physics()
        in_physics[0] += time.perf_counter() - t0

    body._physics_step = timed
    try:
        start = time.perf_counter()
        for a in actions:
            _, _, term, trunc, _ = env.step(a)
            if term or trunc:
                env.reset()
        total = time.perf_counter() - start
    finally:
        del body._physics_step
    return total / len(actions), in_physics[0] / len(actions)


def single_env_table(robots, steps: int, rounds: int) -> None:
    print(f"\n{'robot':14s} {'engine':9s} {'env steps/s':>12s} {'bare steps/s':>13s} "
          f"{'overhead':>9s}")
    for robot in robots:
        for engine in ("pybullet", "mujoco"):
            env = make_env(env_config(robot, "walk", engine))
            rng = np.random.default_rng(0)
            ours, bare, ratios = [], [], []
            for _ in range(rounds):
                # Near-default actions keep the robot up for the whole episode.
                actions = rng.uniform(-0.2, 0.2, size=(steps, env.action_space.shape[0]))
                env.reset(seed=1)
                t_env, t_bare = time_env(env, actions)
                ours.append(t_env)
                bare.append(t_bare)
                ratios.append(t_env / t_bare)
            env.close()
            print(f"{robot:14s} {engine:9s} {1 / statistics.median(ours):12.0f} "
                  f"{1 / statistics.median(bare):13.0f} {statistics.median(ratios):9.2f}")


def vec_table(robot: str, engine: str, n_envs: int, steps: int, rounds: int) -> None:
    from gaitforge.sim.vec_env import VecEnv

    cfg = env_config(robot, "walk", engine)
    print(f"\nvectorised: {robot} {engine}, {n_envs} envs, {steps} batched steps per round")
    print(f"{'workers':>7s} {'env steps/s':>12s} {'vs 1 worker':>12s}")
    rates: dict[int, list[float]] = {1: [], 2: [], 4: []}
    envs = {w: VecEnv([env_factory(cfg)] * n_envs, workers=w, seed=0) for w in rates}
    try:
        rng = np.random.default_rng(0)
        for venv in envs.values():
            venv.reset(seed=0)
        for _ in range(rounds):
            actions = rng.uniform(-0.2, 0.2, size=(steps, n_envs, 12)).astype(np.float32)
            for w, venv in envs.items():
                start = time.perf_counter()
                for a in actions:
                    venv.step(a)
                rates[w].append(steps * n_envs / (time.perf_counter() - start))
    finally:
        for venv in envs.values():
            venv.close()
    base = statistics.median(rates[1])
    for w, r in rates.items():
        print(f"{w:7d} {statistics.median(r):12.0f} {statistics.median(r) / base:11.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="control steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--robots", default="servo_dog,a1,mini_cheetah")
    parser.add_argument("--vec-envs", type=int, default=8)
    parser.add_argument("--vec-steps", type=int, default=300)
    parser.add_argument("--skip-vec", action="store_true")
    args = parser.parse_args()
    single_env_table(args.robots.split(","), args.steps, args.rounds)
    if not args.skip_vec:
        for engine in ("pybullet", "mujoco"):
            vec_table("servo_dog", engine, args.vec_envs, args.vec_steps, args.rounds)


if __name__ == "__main__":
    main()

"""Environment speed: single-env steps/s per robot x engine, overhead against the bare engine,
and vectorised throughput with 1, 2 and 4 subprocess workers.

    python bench/env_bench.py [--steps 2000] [--rounds 3] [--robots servo_dog,a1,mini_cheetah]
                              [--vec-envs 8] [--skip-vec]

Overhead = our env step time / the bare engine doing the same physics substeps (same model,
same world, torques written once per control step, no servo model, observation or reward),
measured in alternating rounds in one run; the median of the per-round ratios is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from gaitforge.config import env_config
from gaitforge.sim.env import env_factory, make_env


def time_env(env, actions: np.ndarray) -> float:
    """Seconds per env.step over the given actions (resets included when episodes end)."""
    start = time.perf_counter()
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    return (time.perf_counter() - start) / len(actions)


def time_bare(env, steps: int) -> float:
    """Seconds per control step for the bare engine on the same body: substeps only."""
    body, n = env.unwrapped.body, env.unwrapped.config.sim.substeps
    tau = np.zeros(body.spec.n_joints)
    if body.engine == "pybullet":
        import pybullet

        p, robot, ids = body.client, body.robot, body._joint_ids
        start = time.perf_counter()
        for _ in range(steps):
            p.setJointMotorControlArray(robot, ids, pybullet.TORQUE_CONTROL, forces=tau.tolist())
            for _ in range(n):
                p.stepSimulation()
        return (time.perf_counter() - start) / steps
    import mujoco

    m, d = body.model, body.data
    start = time.perf_counter()
    for _ in range(steps):
        d.ctrl[:] = tau
        mujoco.mj_step(m, d, nstep=n)
    return (time.perf_counter() - start) / steps


def single_env_table(robots, steps: int, rounds: int) -> None:
    print(f"\n{'robot':14s} {'engine':9s} {'env steps/s':>12s} {'bare steps/s':>13s} "
          f"{'overhead':>9s}")
    for robot in robots:
        for engine in ("pybullet", "mujoco"):
            env = make_env(env_config(robot, "walk", engine))
            env.reset(seed=0)
            rng = np.random.default_rng(0)
            ours, bare, ratios = [], [], []
            for _ in range(rounds):
                # Near-default actions keep the robot up, so both loops see similar contacts.
                actions = rng.uniform(-0.2, 0.2, size=(steps, env.action_space.shape[0]))
                env.reset(seed=1)
                t_env = time_env(env, actions)
                env.reset(seed=1)
                t_bare = time_bare(env, steps)
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
    parser.add_argument("--steps", type=int, default=2000)
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

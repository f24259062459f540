"""What a trained policy earns, term by term, against the gait prior alone, on grid cells.

    .venv/bin/python bench/reward_terms.py --run RUN [--cells turn_left walk_turn]
                                           [--episodes 2] [--seconds 20] [--engine E]

For each cell of the run's robot grid (all by default): the episode return of every weighted
reward term (sim/tasks.py; summed over the episode, times control_dt, as training pays them),
for the run's deterministic actor and for the zero action (the trot of configs/robots/ROBOT.yaml
with no residual), with the yaw rate each reached. A cell the policy tracks worse than the
prior while earning more in total shows which term paid it to unlearn the prior.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from gaitforge.cli.run_folders import load_run_agent
from gaitforge.sim.env import make_env


def term_returns(act, env_config, command, episodes: int, seconds: float) -> dict:
    """{term: mean episode return}, plus `yaw_rate` (mean rad/s) and `falls` (share)."""
    task = dataclasses.replace(env_config.task, episode_length_s=seconds)
    env = make_env(dataclasses.replace(env_config, task=task))
    totals, yaw, falls = [], [], 0
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=1_000_000 + ep, options={"command": command})
            sums, done = {}, False
            while not done:
                obs, _, terminated, truncated, info = env.step(act(obs[None])[0])
                for name, value in info["reward_terms"].items():
                    sums[name] = sums.get(name, 0.0) + value
                yaw.append(env.body.read().privileged.base_ang_vel_rad_s[2])
                done = terminated or truncated
                falls += int(terminated)
            totals.append(sums)
    finally:
        env.close()
    out = {name: float(np.mean([t[name] for t in totals])) for name in totals[0]}
    return {**out, "total": sum(out.values()), "yaw_rate": float(np.mean(yaw)),
            "falls": falls / episodes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--cells", nargs="*", help="grid cells (default: all)")
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--engine", choices=["pybullet", "mujoco"])
    args = ap.parse_args()
    _, cfg, agent, _ = load_run_agent(args.run, args.engine)
    env_config = cfg.evaluation_env()
    grid = dict(cfg.evaluation.grid)
    unknown = [cell for cell in args.cells or [] if cell not in grid]
    if unknown:
        ap.error(f"--cells: {', '.join(unknown)} not in {cfg.env.robot}'s grid "
                 f"({', '.join(grid)})")

    actors = {"policy": lambda obs: agent.act(obs, deterministic=True),
              "prior": lambda obs: np.zeros((len(obs), agent.act_dim), np.float32)}
    for cell in args.cells or list(grid):
        rows = {who: term_returns(act, env_config, grid[cell], args.episodes, args.seconds)
                for who, act in actors.items()}
        print(f"\n{cell} {grid[cell]}: return per episode of {args.seconds:g} s")
        print(f"  {'term':18s} {'policy':>9s} {'prior':>9s} {'policy-prior':>13s}")
        for name in rows["policy"]:
            p, z = rows["policy"][name], rows["prior"][name]
            print(f"  {name:18s} {p:9.3f} {z:9.3f} {p - z:+13.3f}")


if __name__ == "__main__":
    main()

"""The open-loop trot on one grid cell, one randomised parameter at a time, in each engine.

    .venv/bin/python bench/turn_sensitivity.py [--robot minitaur] [--cell turn_left]
        [--engines pybullet mujoco] [--seconds 10] [--seeds 5] [--set key=value ...]

The robot's gait prior with the policy's residual held at zero (as bench/open_loop_grid.py),
first at nominal dynamics (no randomisation, no initial-pose noise, no pushes), then with each
of training's randomised parameters alone at each end of its range (the run config's: the robot
file's where it sets one; an end at nominal is the nominal row), then with everything
randomised as in training over `--seeds` episodes. Each row: the cell's mean forward speed and
yaw rate (sim/evaluation.py's, from the IMU heading) and falls, per engine. What it answers:
does an engine's gait follow the cell only at nominal dynamics, or across what training
samples?
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

from gaitforge.cli.run_config import load_run_config
from gaitforge.robots.spec import load_robot_spec
from gaitforge.sim.evaluation import evaluate_locomotion
from gaitforge.sim.randomization import RandomizationConfig

# the dynamics training draws per episode (sim/randomization.py's sample_dynamics), each
# varied alone; the neutral value holds it at the nominal dynamics
VARIED = {"friction": 1.0, "added_mass_frac": 0.0, "com_offset_m": 0.0, "motor_strength": 1.0,
          "kp_scale": 1.0, "kd_scale": 1.0, "latency_s": 0.0}


def rows(randomization: RandomizationConfig) -> list[tuple[str, RandomizationConfig, int]]:
    """(label, randomisation config, episodes) for every row of the table."""
    neutral = dataclasses.replace(randomization, enabled=True, init_joint_noise_rad=0.0,
                                  init_yaw=False, push_interval_s=0.0,
                                  **{name: (value, value) for name, value in VARIED.items()})
    out = [("nominal", neutral, 1)]
    for name in VARIED:
        for end in dict.fromkeys(getattr(randomization, name)):
            if end == VARIED[name]:
                continue  # the nominal row
            out.append((f"{name} {end:g}",
                        dataclasses.replace(neutral, **{name: (end, end)}), 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--robot", default="minitaur")
    ap.add_argument("--cell", default="turn_left", help="a cell of the robot's grid")
    ap.add_argument("--engines", nargs="+", default=["pybullet", "mujoco"])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--seeds", type=int, default=5, help="episodes of the randomised row")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    n_joints = load_robot_spec(args.robot).n_joints
    table: dict[str, list[str]] = {}
    for engine in args.engines:
        run = load_run_config(None, [f"env.robot={args.robot}", f"env.sim.engine={engine}",
                                     *args.set])
        grid = run.evaluation.grid
        if args.cell not in grid:
            raise SystemExit(f"--cell: '{args.cell}' is not in {args.robot}'s grid "
                             f"({', '.join(grid)})")
        randomized = run.env.randomization
        for label, randomization, episodes in [
                *rows(randomized), (f"as trained, {args.seeds} episodes", randomized, args.seeds)]:
            env = dataclasses.replace(run.env, randomization=randomization)
            r = evaluate_locomotion(lambda obs: np.zeros((len(obs), n_joints)), env,
                                    episodes=episodes, command=grid[args.cell],
                                    episode_length_s=args.seconds)
            table.setdefault(label, []).append(
                f"{r['vx_mean']:+.2f} / {r['yaw_rate_mean']:+.3f} / {r['fall_rate']:.2f}")
            print(f"{engine:8s} {label:24s} {table[label][-1]}", flush=True)
    print(f"\n{args.robot}, {args.cell} {tuple(grid[args.cell])}, zero action, "
          f"{args.seconds:g} s: vx m/s / yaw rate rad/s / fall share")
    print("| dynamics | " + " | ".join(args.engines) + " |")
    print("| --- |" + " --- |" * len(args.engines))
    for label, cells in table.items():
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

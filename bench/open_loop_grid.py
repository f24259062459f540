"""The robot's open-loop trot alone (zero policy action) on every cell of its command grid.

    .venv/bin/python bench/open_loop_grid.py [--robot servo_dog] [--engines pybullet mujoco]
                                             [--seconds 20] [--set key=value ...]

What a policy starts from: the gait prior of configs/robots/ROBOT.yaml with the policy's
residual held at zero, randomisation as in training, one episode per cell. The errors and the
walking criterion are sim/evaluation.py's (windows of whole strides). A trained policy that
does worse than this on a cell has unlearned what the prior gave it.
"""

from __future__ import annotations

import argparse

import numpy as np

from gaitforge.cli.run_config import load_run_config
from gaitforge.robots.spec import load_robot_spec
from gaitforge.sim.evaluation import evaluate_grid, walking


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--robot", default="servo_dog")
    ap.add_argument("--engines", nargs="+", default=["pybullet", "mujoco"])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    n_joints = load_robot_spec(args.robot).n_joints
    for engine in args.engines:
        run = load_run_config(None, [f"env.robot={args.robot}", f"env.sim.engine={engine}",
                                     *args.set])
        results = evaluate_grid(lambda obs: np.zeros((len(obs), n_joints)), run.env,
                                run.evaluation.grid, episode_length_s=args.seconds)
        print(f"\n{args.robot}, {engine}, zero action | vx m/s (err) | vy err | "
              "yaw rad/s (err) | falls")
        for name, r in results.items():
            print(f"{name:11s} | {r['vx_mean']:+.3f} ({r['vx_tracking_error']:.3f}) | "
                  f"{r['vy_tracking_error']:.3f} | {r['yaw_rate_mean']:+.3f} "
                  f"({r['yaw_rate_error']:.3f}) | {r['fall_rate']:.0f}"
                  + ("  walking" if walking(r) else ""))
        print(f"walking on {sum(walking(r) for r in results.values())} of {len(results)} cells")


if __name__ == "__main__":
    main()

"""What each engine calls touching the ground: the open-loop trot's foot contacts, side by side.

    .venv/bin/python bench/contact_duty.py [--robots servo_dog a1 mini_cheetah minitaur]
                                           [--cell forward] [--seconds 8] [--seed 0]

Each robot's trot (configs/robots/ROBOT.yaml, zero policy action) at one cell of its command
grid, in PyBullet and MuJoCo: the share of control ticks each foot touches (what the critic's
privileged contacts and `feet_air_time` see) and the links other than feet touching per tick
(what `collision` and the trunk-contact fall see). The first second is left out (the robot
settles). For PyBullet it also gives what every contact point PyBullet reports would make of
it: those include points up to a few mm apart, which `sim/pybullet_body.py` no longer counts.
"""

from __future__ import annotations

import argparse

import numpy as np

from gaitforge.cli.run_config import load_run_config
from gaitforge.sim.env import make_env


def contact_shares(robot: str, engine: str, cell: str, seconds: float, seed: int) -> dict:
    """{'feet': per-foot contact share, 'others': other links per tick, 'fell': bool}, with
    'feet_all' / 'others_all' from every reported point (PyBullet only)."""
    run = load_run_config(None, [f"env.robot={robot}", f"env.sim.engine={engine}"])
    env = make_env(run.env)
    body, feet = env.body, list(env.robot_spec.feet)
    ticks = round(seconds / run.env.sim.control_dt_s)
    settle = round(1.0 / run.env.sim.control_dt_s)
    counted, every, fell = [], [], False
    try:
        env.reset(seed=seed, options={"command": run.evaluation.grid[cell]})
        for k in range(ticks):
            _, _, fell, _, _ = env.step(np.zeros(env.action_space.shape))
            if fell:
                break
            if k < settle:
                continue
            counted.append(_split(body.link_contacts(), feet))
            if engine == "pybullet":
                every.append(_split(_every_point(body), feet))
    finally:
        env.close()
    out = {"feet": np.mean([f for f, _ in counted], 0), "others": np.mean([o for _, o in counted]),
           "fell": fell}
    if every:
        out["feet_all"] = np.mean([f for f, _ in every], 0)
        out["others_all"] = np.mean([o for _, o in every])
    return out


def _split(links: set, feet: list) -> tuple[list, int]:
    return [f in links for f in feet], len(links - set(feet))


def _every_point(body) -> set:
    """Links with any contact point PyBullet reports, whatever its distance (aliases applied)."""
    names = {body._link_names[c[3]] for g in body._grounds
             for c in body.client.getContactPoints(body.robot, g)}
    return {body._contact_alias.get(n, n) for n in names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--robots", nargs="+", default=["servo_dog", "a1", "mini_cheetah", "minitaur"])
    ap.add_argument("--cell", default="forward")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"open-loop trot, cell {args.cell}, {args.seconds:g} s | contact share per foot | "
          "other links per tick")
    for robot in args.robots:
        for engine in ("pybullet", "mujoco"):
            r = contact_shares(robot, engine, args.cell, args.seconds, args.seed)
            line = (f"{robot:12s} {engine:8s} | {np.round(r['feet'], 2)} | {r['others']:.2f}"
                    + (" (fell)" if r["fell"] else ""))
            if "feet_all" in r:
                line += (f" | every reported point: {np.round(r['feet_all'], 2)} | "
                         f"{r['others_all']:.2f}")
            print(line, flush=True)


if __name__ == "__main__":
    main()

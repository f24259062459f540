"""`gaitforge envs`: robots x tasks x engines."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("envs", help="list robots x tasks x engines")
    p.set_defaults(func=run)


def run(args) -> int:
    from gaitforge.robots.spec import available_robots, load_robot_spec
    from gaitforge.sim.config import ENGINES
    from gaitforge.sim.tasks import TASKS

    print(f"{'robot':14s} {'joints':>6s} {'mass kg':>8s}  tasks          engines")
    for name in available_robots():
        spec = load_robot_spec(name)
        print(f"{name:14s} {spec.n_joints:6d} {spec.nominal_mass_kg:8.2f}  "
              f"{', '.join(TASKS):14s} {', '.join(ENGINES)}")
    print("\nany robot x task x engine combines: "
          "gaitforge check ROBOT --engine E, gaitforge train --set env.robot=ROBOT ...")
    return 0

"""Does a trained policy follow its robot's whole command grid, through the deploy path?

    .venv/bin/python bench/command_grid.py --run RUN [--engines pybullet mujoco] [--seconds 20]

Exports RUN's bundle if it has none, then for every engine and every cell of the robot's
command grid (`evaluation.grid` in configs/robots/ROBOT.yaml) runs `gaitforge deploy BUNDLE
--body sim:ENGINE --command CELL --duration 20`: the exported TFLite actor, the safety layer
and the logger, as on the robot. The deploy report gives the errors (yaw rate from the IMU, as
a robot measures it), the fall and the share of policy ticks the rate limit held back. A cell
walks when sim/evaluation.py's `walking` says so: no fall, vx and vy errors < 0.1 m/s, yaw-rate
error < 0.1 rad/s. Prints one table per engine and writes bench/out/command_grid.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from gaitforge.cli.run_config import load_run_config
from gaitforge.robots.configio import load_yaml
from gaitforge.sim.evaluation import walking

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "command_grid.json"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MUJOCO_GL": "disable"}
KEYS = ("vx_tracking_error", "vy_tracking_error", "yaw_rate_error", "rate_limited_share")


def deploy(bundle: Path, engine: str, command, seconds: float, logs: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "gaitforge.cli", "deploy", str(bundle), "--body", f"sim:{engine}",
         "--duration", str(seconds), "--command=" + ",".join(f"{c:g}" for c in command),
         "--log-dir", str(logs)], env=ENV, capture_output=True, text=True)
    if done.returncode not in (0, 1):  # 1: it fell
        raise RuntimeError(f"deploy -> {done.returncode}\n{done.stdout}\n{done.stderr[-2000:]}")
    values = dict(re.findall(r"^\s+(\w+)\s+(\S+)$", done.stdout, flags=re.M))
    return {k: float(values[k]) for k in KEYS} | {"fall_rate": float(values["fell"] == "True")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a trained run folder")
    ap.add_argument("--engines", nargs="+", default=["pybullet", "mujoco"])
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args()
    run = Path(args.run)
    if not (run / "bundle" / "bundle.json").is_file():
        subprocess.run([sys.executable, "-m", "gaitforge.cli", "export", str(run)], env=ENV,
                       check=True, capture_output=True)
    robot = load_yaml(run / "config.yaml")["env"]["robot"]
    grid = load_run_config(None, [f"env.robot={robot}"]).evaluation.grid
    logs, results = Path(tempfile.mkdtemp(prefix="grid-")), {}
    for engine in args.engines:
        rows = results[engine] = {}
        print(f"\n{robot} from {run}, deployed in {engine}, {args.seconds:g} s a cell")
        print(f"  {'cell':11s} {'command':>14s} {'vx err':>7s} {'vy err':>7s} {'yaw err':>8s}"
              f" {'fell':>5s} {'rate-limited':>13s}")
        for name, command in grid.items():
            r = rows[name] = deploy(run / "bundle", engine, command, args.seconds, logs)
            print(f"  {name:11s} {','.join(f'{c:g}' for c in command):>14s} "
                  f"{r['vx_tracking_error']:7.3f} {r['vy_tracking_error']:7.3f} "
                  f"{r['yaw_rate_error']:8.3f} {r['fall_rate']:5.0f} "
                  f"{100 * r['rate_limited_share']:12.1f}%"
                  + ("  walking" if walking(r) else ""), flush=True)
        print(f"  walking on {sum(map(walking, rows.values()))} of {len(rows)} cells")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"run": str(run), "grid": grid, "results": results}, indent=1))
    print(f"\nwritten: {OUT}")


if __name__ == "__main__":
    main()

"""Rough ground: a policy trained with the terrain curriculum, judged on the curriculum's top level.

    python bench/rough_ground.py [--run RUN | --steps 200000] [--episodes 10] [--set k=v ...]

Without --run, trains `gaitforge train configs/rough_ground.yaml` (servo_dog, PyBullet, terrain
levels with the curriculum) for --steps env steps first, printing its terrain level as it
climbs. Then the run's newest checkpoint is judged with the deterministic actor, --episodes of
20 s at vx 0.3 m/s, in both engines: on the top level (a new field every episode, the
curriculum held) and on flat ground for reference. Prints falls, tracking errors and the mean
speed per row, and writes rough_ground.json beside the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "rough_ground.yaml"
COLUMNS = ("fall_rate", "vx_mean", "vx_tracking_error", "vy_tracking_error", "yaw_rate_error",
           "heading_change_deg")


def train(steps: int, sets: list[str]) -> Path:
    runs = Path(tempfile.mkdtemp(prefix="rough-"))
    cmd = [sys.executable, "-m", "gaitforge.cli", "train", str(CONFIG), "--name", "rough",
           "--no-progress", "--set", f"train.total_env_steps={steps}",
           "--set", f"train.eval_every_steps={steps}"]
    for item in sets:
        cmd += ["--set", item]
    print("running:", " ".join(cmd), flush=True)
    env = {**os.environ, "GAITFORGE_RUNS": str(runs), "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    return runs / "rough"


def levels_climbed(run_dir: Path) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["train/terrain_level"]) for r in rows if "train/terrain_level" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run trained on terrain levels")
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    run_dir = args.run or train(args.steps, args.set)

    from gaitforge.cli.run_folders import load_run_agent
    from gaitforge.sim.config import TerrainConfig
    from gaitforge.sim.evaluation import evaluate_locomotion

    climbed = levels_climbed(run_dir)
    every = max(1, len(climbed) // 10)
    print("terrain level (mean over envs) while training: " + ", ".join(
        f"{step // 1000}k {level:.1f}" for step, level in climbed[::every]))
    results = {}
    for engine in ("pybullet", "mujoco"):
        _, cfg, agent, checkpoint = load_run_agent(str(run_dir), engine)
        top = cfg.evaluation_env()
        flat = dataclasses.replace(top, sim=dataclasses.replace(top.sim, terrain=TerrainConfig()))
        for ground, env_config in (("top level", top), ("flat", flat)):
            r = evaluate_locomotion(lambda o, a=agent: a.act(o, deterministic=True), env_config,
                                    episodes=args.episodes, command=(0.3, 0.0, 0.0),
                                    episode_length_s=20.0)
            results[f"{engine}, {ground}"] = {k: r[k] for k in COLUMNS}
    terrain = cfg.env.sim.terrain
    print(f"\n{run_dir} ({checkpoint.name}), {args.episodes} episodes of 20 s at vx 0.3 m/s; "
          f"top level {terrain.levels - 1}: grade {terrain.slope}, bumps up to "
          f"{terrain.rough_amplitude_m} m")
    print(f"  {'':22s}" + "".join(f"{c:>20s}" for c in COLUMNS))
    for name, r in results.items():
        print(f"  {name:22s}" + "".join(f"{r[c]:20.3f}" for c in COLUMNS))
    (run_dir / "rough_ground.json").write_text(json.dumps(
        {"checkpoint": checkpoint.name, "episodes": args.episodes, "results": results,
         "levels_while_training": climbed}, indent=1))


if __name__ == "__main__":
    main()

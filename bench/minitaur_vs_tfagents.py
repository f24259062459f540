"""The seed's comparison: TF-Agents' SAC on its own PyBullet Minitaur env against gaitforge SAC on
`minitaur`, the same wall-clock budget each, one after the other in one run.

    python bench/minitaur_vs_tfagents.py [--budget-min 20] [--peer-python PATH]
        [--only both|ours|peer] [--out-dir DIR] [--set key=value ...]

Each system gets the whole machine for --budget-min, the clock running from its process start
(imports included), then 10 episodes of 10 s with its deterministic policy on a fresh env:
- TF-Agents (bench/peers/tfa_minitaur.py in the TF-Agents venv, ../shared/peers/README.md):
  `MinitaurBulletEnv-v0`, its reward the forward distance minus an energy cost;
- gaitforge: `gaitforge train --set env.robot=minitaur` (PyBullet, the default job's settings
  and the robot's config, including its open-loop trot), stopped at the budget; its newest
  checkpoint (one every --checkpoint-every env steps) is judged at the command vx 0.5 m/s, the
  top of its training range.
Both are judged the same way: forward speed is the trunk's displacement along its starting
heading over the episode's time (gaitforge starts each episode at a random heading; TF-Agents'
env always at yaw 0, so there it is the world-x displacement); a fall is the env's own
(TF-Agents: `is_fallen()`; gaitforge: the episode's termination by trunk contact, tilt or
height). Prints a table and writes comparison.json; `--judge RUN` judges a gaitforge run again.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_PEER = Path(os.environ.get("PEERS_VENVS", "/work/peer-venvs")) / "tfa/bin/python"


def run_peer(args, out_dir: Path) -> dict:
    out = out_dir / "tfa.json"
    cmd = [str(args.peer_python), str(HERE / "peers" / "tfa_minitaur.py"),
           "--budget-s", str(args.budget_min * 60), "--episodes", str(args.episodes),
           "--out", str(out)]
    print("running:", " ".join(cmd), flush=True)
    with open(out_dir / "tfa.log", "w") as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=True)
    return json.loads(out.read_text())


def run_ours(args, out_dir: Path) -> dict:
    runs = out_dir / "runs"
    cmd = [sys.executable, "-m", "gaitforge.cli", "train", "--name", "minitaur", "--no-progress",
           "--set", "env.robot=minitaur", "--set", "train.total_env_steps=100000000",
           "--set", "train.eval_every_steps=100000000",
           "--set", f"train.checkpoint_every_steps={args.checkpoint_every}"]
    for item in args.set:
        cmd += ["--set", item]
    env = {**os.environ, "GAITFORGE_RUNS": str(runs), "TF_CPP_MIN_LOG_LEVEL": "3"}
    print("running:", " ".join(cmd), flush=True)
    start = time.time()
    with open(out_dir / "gaitforge.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        while time.time() - start < args.budget_min * 60 and proc.poll() is None:
            time.sleep(1.0)
        trained_s = time.time() - start
        proc.terminate()
        proc.wait()
    return {"system": "gaitforge SAC, minitaur (PyBullet)", "budget_s": args.budget_min * 60,
            "trained_s": trained_s, **judge_ours(runs / "minitaur", args.episodes)}


def judge_ours(run_dir: Path, episodes: int) -> dict:
    """The run's newest checkpoint, and its open-loop trot alone (zero action) for reference."""
    from gaitforge.cli.run_folders import load_run_agent

    _, cfg, agent, checkpoint = load_run_agent(str(run_dir))
    env_config = cfg.evaluation_env()
    env_config = dataclasses.replace(env_config, task=dataclasses.replace(
        env_config.task, episode_length_s=10.0))
    policy = judge_policy(lambda o: agent.act(o, deterministic=True), env_config, episodes)
    trot = judge_policy(lambda o: np.zeros((len(o), agent.act_dim), np.float32), env_config,
                        episodes)
    steps = int(checkpoint.name) if checkpoint.name.isdigit() else None
    return {"checkpoint": checkpoint.name, "env_steps": steps, "episodes": policy,
            "trot_alone": trot}


def judge_policy(act, env_config, episodes: int) -> list[dict]:
    from gaitforge.control.policy_io import heading_rad
    from gaitforge.sim.env import make_env

    env = make_env(env_config)
    env.set_command([0.5, 0.0, 0.0])
    results = []
    for i in range(episodes):
        obs, _ = env.reset(seed=1_000_000 + i)
        start = env.body.read()
        heading = heading_rad(start.imu_quat_wxyz)
        done = fell = False
        while not done:
            obs, _, fell, truncated, _ = env.step(act(obs[None].astype(np.float32))[0])
            done = fell or truncated
        moved = env.body.read().privileged.base_pos_m[:2] - start.privileged.base_pos_m[:2]
        seconds = env.steps * env_config.sim.control_dt_s
        forward = moved[0] * np.cos(heading) + moved[1] * np.sin(heading)
        results.append({"forward_m_s": float(forward / seconds), "seconds": seconds,
                        "fell": bool(fell)})
    env.close()
    return results


def summary(result: dict, key: str = "episodes") -> str:
    eps = result[key]
    speeds = [e["forward_m_s"] for e in eps]
    return (f"{result['system']:40s} {result['trained_s'] / 60:6.1f} min  "
            f"{result.get('env_steps') or 0:8d} steps  forward {np.mean(speeds):+.3f} m/s "
            f"(min {min(speeds):+.3f}, max {max(speeds):+.3f})  falls "
            f"{sum(e['fell'] for e in eps)}/{len(eps)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-min", type=float, default=20.0)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--checkpoint-every", type=int, default=5000)
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER,
                        help="the TF-Agents venv's python (default $PEERS_VENVS/tfa/bin/python)")
    parser.add_argument("--only", choices=["both", "ours", "peer"], default="both")
    parser.add_argument("--judge", type=Path, metavar="RUN",
                        help="only judge this gaitforge run's newest checkpoint again")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="passed to gaitforge train")
    args = parser.parse_args()
    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="minitaur-vs-tfa-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.judge:
        result = {"system": "gaitforge SAC, minitaur (PyBullet)", "trained_s": 0.0,
                  **judge_ours(args.judge, args.episodes)}
        print(summary(result) + "\n  (its trot alone, zero action: "
              + summary(result, "trot_alone").split("steps  ", 1)[1] + ")")
        return
    results = {}
    if args.only in ("both", "peer"):
        results["tf-agents"] = run_peer(args, out_dir)
    if args.only in ("both", "ours"):
        results["gaitforge"] = run_ours(args, out_dir)
    (out_dir / "comparison.json").write_text(json.dumps(results, indent=1))
    print(f"\nbudget {args.budget_min:g} min each, {args.episodes} episodes of 10 s "
          f"(results in {out_dir}):")
    for result in results.values():
        print("  " + summary(result))
    if "gaitforge" in results:
        print("  (gaitforge's trot alone, zero action: "
              + summary(results["gaitforge"], "trot_alone").split("steps  ", 1)[1] + ")")


if __name__ == "__main__":
    main()

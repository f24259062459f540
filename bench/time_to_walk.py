"""Time-to-walk: wall-clock of the default `gaitforge train` until evaluation shows a walking gait.

    python bench/time_to_walk.py [--budget-min 20] [--eval-every 20000] [--robot NAME] [--grid]
                                 [--set key=value ...]

Runs `gaitforge train` (configs/default.yaml, plus any --set) in a subprocess, with evaluation
every --eval-every env steps over 10 episodes of 20 s at the command vx = 0.3 m/s (the
deterministic actor, randomisation as in training). Walking means: no fall in 10 of 10
episodes, forward and lateral tracking errors < 0.1 m/s and yaw-rate error < 0.1 rad/s
(sim/evaluation.py defines them: a gait that walks in a circle is not walking). The clock
runs from the subprocess start (imports included) to the moment the first walking evaluation
is written, so evaluation time counts too. Stops at the first walking
evaluation or at the budget. Prints the learning curve and writes it to the run folder.

--robot trains another robot (its file in configs/robots/ sizes the commands). --grid asks
more: once an evaluation at vx = 0.3 m/s walks, that checkpoint is judged on every cell of the
robot's command grid (`gaitforge eval RUN --grid`, one episode of 20 s a cell, while training
goes on; its time counts), and walking means walking on every cell.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gaitforge.sim.evaluation import walking


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-min", type=float, default=20.0)
    parser.add_argument("--eval-every", type=int, default=20_000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--runs-dir", default=None, help="where the run folder goes "
                        "(default: a temporary folder)")
    parser.add_argument("--robot", default="servo_dog")
    parser.add_argument("--grid", action="store_true", help="walking means on the whole grid")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    runs = Path(args.runs_dir or tempfile.mkdtemp(prefix="ttw-"))
    sets = [f"train.eval_every_steps={args.eval_every}", f"train.eval_episodes={args.episodes}",
            "evaluation.episode_length_s=20.0", "evaluation.command=[0.3, 0.0, 0.0]",
            "train.total_env_steps=10000000", f"env.robot={args.robot}", *args.set]
    cmd = [sys.executable, "-m", "gaitforge.cli", "train", "--name", "ttw", "--no-progress"]
    for item in sets:
        cmd += ["--set", item]
    env = {**os.environ, "GAITFORGE_RUNS": str(runs), "TF_CPP_MIN_LOG_LEVEL": "3"}
    print("running:", " ".join(cmd), f"(runs in {runs})", flush=True)
    start = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    evals_path, seen, walked = runs / "ttw" / "eval.jsonl", 0, None
    try:
        while time.time() - start < args.budget_min * 60 and proc.poll() is None:
            time.sleep(2.0)
            rows = _rows(evals_path)
            for row in rows[seen:]:
                minutes = (row["time"] - start) / 60
                ok = walking(row) and (not args.grid or grid_walks(runs, env, row["env_steps"]))
                print(f"{minutes:6.1f} min  {row['env_steps']:8d} steps  return "
                      f"{row['return']:7.2f}  falls {row['fall_rate']:.1f}  vx "
                      f"{row['vx_mean']:.3f} m/s  errors vx {row['vx_tracking_error']:.3f} "
                      f"vy {row.get('vy_tracking_error', 0):.3f} m/s yaw "
                      f"{row.get('yaw_rate_error', 0):.3f} rad/s  heading "
                      f"{row.get('heading_change_deg', 0):+.0f} deg  rate-limited "
                      f"{100 * row.get('rate_limited_share', 0):.0f}%"
                      + ("  WALKING" if ok else ""), flush=True)
                if ok and walked is None:
                    walked = (minutes, row["env_steps"])
            seen = len(rows)
            if walked:
                break
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    if proc.returncode not in (0, -15, None) and not walked:
        print(proc.stderr.read().decode()[-3000:])
    if walked:
        print(f"\ntime-to-walk: {walked[0]:.1f} min wall-clock ({walked[1]} env steps)")
    else:
        print(f"\ntime-to-walk: not reached within {args.budget_min:.0f} min")
    subprocess.run([sys.executable, "-m", "gaitforge.cli", "plot", str(runs / "ttw")], env=env,
                   check=False)


def grid_walks(runs: Path, env: dict, steps: int) -> bool:
    """`gaitforge eval --grid` on the run's newest checkpoint (the one at `steps`, or later)."""
    done = subprocess.run([sys.executable, "-m", "gaitforge.cli", "eval", str(runs / "ttw"),
                           "--grid", "--episodes", "1"], env=env, capture_output=True, text=True)
    print(f"    grid at {steps} steps or later:\n" + done.stdout.rstrip(), flush=True)
    return done.returncode == 0 and "grid: walking on every cell" in done.stdout


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    main()

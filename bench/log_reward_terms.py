"""Are the logs and a fine-tune's fresh simulation rewarded alike? Each named reward term's mean
a step, on a fine-tune's logs (recomputed from them as `gaitforge finetune` does, with the
velocity estimate) and in its simulation (the env it collects in, around the identified
dynamics), the parent's bundle acting with the logs' exploration:

    .venv/bin/python bench/log_reward_terms.py --run FINETUNE_RUN [--episodes 4]
        [--reward-inputs privileged|estimated] [--set env.sim.accel_window_s=0.004]

Also the velocity estimate's spread in each, and in simulation its RMS error per tick against
the truth: what a reward judged by the estimate pays for the estimator's noise.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a gaitforge finetune run folder")
    ap.add_argument("--episodes", type=int, default=4, help="simulated episodes of 20 s")
    ap.add_argument("--reward-inputs", choices=("privileged", "estimated"),
                    help="what the simulation's rewards judge (default: the run's)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override the run's config (e.g. env.sim.accel_window_s=0.004)")
    args = ap.parse_args()

    from gaitforge.cli.run_config import RunConfig, upgrade_saved_config
    from gaitforge.cli.run_folders import load_config
    from gaitforge.control.logger import read_log
    from gaitforge.control.policy_io import ObservationBuilder
    from gaitforge.control.runner import ExploringRunner, PolicyRunner
    from gaitforge.robots.configio import apply_overrides, from_dict
    from gaitforge.robots.spec import load_robot_spec
    from gaitforge.sim.env import make_env
    from gaitforge.sim.log_rewards import log_transitions

    run = Path(args.run)
    cfg = from_dict(RunConfig, apply_overrides(upgrade_saved_config(load_config(run)),
                                               args.set), source=str(run))
    spec = load_robot_spec(cfg.env.robot)
    builder = ObservationBuilder(spec, cfg.env.observation, cfg.env.action.gait)
    logged, estimates, sigma = {}, [], 0.0
    for path in cfg.finetune.logs:
        log = read_log(path)
        sigma = log.metadata.get("explore", {}).get("sigma", sigma)
        t = log_transitions(log, spec, cfg.env.task, observation=builder, reestimate=True)
        for name, values in t.reward_terms.items():
            logged.setdefault(name, []).append(values)
        estimates.append(t.critic_obs[:, :3])
    logged = {k: float(np.concatenate(v).mean()) for k, v in logged.items()}
    log_est = np.concatenate(estimates)

    env_config = cfg.env if args.reward_inputs is None else dataclasses.replace(
        cfg.env, reward_inputs=args.reward_inputs)
    env = make_env(env_config)
    env.set_command(tuple(cfg.evaluation.command))
    bundle = Path(cfg.finetune.parent_run) / "bundle"
    policy = PolicyRunner(bundle)
    if sigma > 0:
        policy = ExploringRunner(policy, sigma, seed=0)
    simulated, est, true = {}, [], []
    for episode in range(args.episodes):
        obs, _ = env.reset(seed=episode)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(policy.act(obs.astype(np.float32)))
            done = terminated or truncated
            for name, value in info["reward_terms"].items():
                simulated.setdefault(name, []).append(value)
            est.append(info["estimate"][:3])
            true.append(env._obs_state.privileged.base_lin_vel_m_s.copy())
    env.close()
    est, true = np.asarray(est), np.asarray(true)

    print(f"{run.name}: {len(log_est)} logged steps (explore {sigma:g}); {len(est)} simulated, "
          f"rewards judged by the {env_config.reward_inputs} state, accel window "
          f"{env_config.sim.accel_window_s:g} s")
    print(f"  estimate's spread, vx vy vz (m/s): logs {np.round(log_est.std(0), 3)}, "
          f"simulation {np.round(est.std(0), 3)} (the truth's {np.round(true.std(0), 3)})")
    print(f"  estimate's RMS error per tick in simulation: "
          f"{np.round(np.sqrt(np.mean((est - true) ** 2, axis=0)), 3)}")
    print(f"  {'term':18s} {'logs':>9s} {'simulation':>11s}   (mean a step)")
    for name, value in logged.items():
        print(f"  {name:18s} {value:9.5f} {np.mean(simulated[name]):11.5f}")
    print(f"  {'sum':18s} {sum(logged.values()):9.5f} "
          f"{sum(np.mean(v) for v in simulated.values()):11.5f}")


if __name__ == "__main__":
    main()

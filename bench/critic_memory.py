"""Does a fine-tune's critic learn the logs, or remember them? Critic-only training from the
parent, as a fine-tune's critic warm-up runs, with some of the logs held out:

    .venv/bin/python bench/critic_memory.py --run FINETUNE_RUN [--held-out 2] [--sim-mix 0.5]
        [--steps 16000] [--dropout P]

FINETUNE_RUN is a `gaitforge finetune` run folder: its config (the parent, the logs, the
dynamics, the fresh simulation's settings) is used again, with the actor held (the critic
warms up for the whole run) and no evaluation. The last `--held-out` of its logs are kept out
of replay. Every `--steps / 8` fresh-simulation steps it prints the critic's TD loss (a
throw-away update, agents/finetune.py `partition_losses`, averaged over 8 batches) on the
logs in replay, on the held-out logs and on the fresh simulation: a loss that falls on the
logs in replay while it rises on the held-out ones is the critic remembering transitions,
not learning the robot. At the end, for each of the three: the mean TD error of the target
(r + gamma (min Q'(s', a') - alpha log pi) - mean Q(s, a): its sign says which way the target
leans) and how far the critics disagree (mean |Q1 - Q2|: large where the data lie outside
what the critics were trained on). `--sim-mix 1` trains on the simulation alone: how well the
simulation alone predicts the logs. `--dropout P` gives the critics DroQ's dropout
(`agent.critic_dropout`); the losses are then measured with dropout, as the updates see them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a gaitforge finetune run folder")
    ap.add_argument("--held-out", type=int, default=2, help="logs kept out of replay (the last)")
    ap.add_argument("--sim-mix", type=float, default=0.5, help="fresh simulation's share of a "
                    "minibatch (1: the simulation alone)")
    ap.add_argument("--steps", type=int, default=16_000, help="fresh simulation steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dropout", type=float, default=None,
                    help="agent.critic_dropout (default: the run's)")
    args = ap.parse_args()

    from gaitforge.agents.finetune import offline_replay, partition_losses
    from gaitforge.cli import cmd_finetune
    from gaitforge.cli.run_config import RunConfig, upgrade_saved_config
    from gaitforge.cli.run_folders import configure_tensorflow, load_config
    from gaitforge.robots.configio import from_dict

    run = Path(args.run)
    cfg = from_dict(RunConfig, upgrade_saved_config(load_config(run)), source=str(run))
    logs = list(cfg.finetune.logs)
    if not 0 < args.held_out < len(logs):
        sys.exit(f"--held-out must be 1 .. {len(logs) - 1}: the run has {len(logs)} logs")
    never = 10**12  # no checkpoint, no evaluation, the actor never updated
    cfg = dataclasses.replace(
        cfg, finetune=dataclasses.replace(cfg.finetune, sim_mix=args.sim_mix, ratchet=False,
                                          critic_warmup_updates=never),
        train=dataclasses.replace(cfg.train, total_env_steps=args.steps, seed=args.seed,
                                  checkpoint_every_steps=never, eval_every_steps=never))
    if args.dropout is not None:
        cfg = dataclasses.replace(
            cfg, agent=dataclasses.replace(cfg.agent, critic_dropout=args.dropout))
    kept = cmd_finetune._transitions(cfg, logs[:-args.held_out], skip_bad=False)
    held_out = cmd_finetune._transitions(cfg, logs[-args.held_out:], skip_bad=False)
    configure_tensorflow()
    env = cmd_finetune._env(cfg)
    try:
        tuner = cmd_finetune._fine_tuner(cfg, env, Path(tempfile.mkdtemp()), kept)
        tuner.evaluate = None
        held = offline_replay(tuner.obs_dim, tuner.act_dim, tuner.critic_obs_dim, 1,
                              cmd_finetune.offline_part(held_out))
        rng = np.random.default_rng(args.seed)
        print(f"{run.name}: {len(kept['reward'])} logged transitions in replay, "
              f"{len(held_out['reward'])} held out; sim mix {args.sim_mix:g}, "
              f"critic dropout {cfg.agent.critic_dropout:g}")
        print(f"{'steps':>7s} {'logs in replay':>15s} {'held-out logs':>14s} {'simulation':>11s}")
        every = max(args.steps // 8, 1)
        for step in range(0, args.steps + 1, every):
            if step:
                tuner.train(until_env_steps=step)
            rows = []
            for _ in range(8):
                replayed = partition_losses(tuner.agent, tuner.replay, rng)
                rows.append((replayed["critic_offline"],
                             partition_losses(tuner.agent, held, rng)["critic_offline"],
                             replayed.get("critic_online", np.nan)))
            print(f"{step:7d} " + " ".join(f"{x:14.2e}" for x in np.mean(rows, axis=0)),
                  flush=True)
        print("at the end: mean TD error of the target, mean |Q1 - Q2|, mean reward a step")
        for name, replay, part in (("logs in replay", tuner.replay, "offline"),
                                   ("held-out logs", held, "offline"),
                                   ("simulation", tuner.replay, "online")):
            if replay.size(part):
                bias, spread, reward = target_error(tuner.agent, replay, part, rng)
                print(f"  {name:15s} {bias:+.4f} {spread:.4f} {reward:.5f}")
    finally:
        env.close()


def target_error(agent, replay, part: str, rng, n: int = 4096) -> tuple[float, float, float]:
    """(mean of y - mean_i Qi(s, a), mean |Q1 - Q2|, mean reward) over n rows of `part`, y the
    SAC target (agents/sac.py `soft_td_target`) with a fresh policy sample at s'."""
    import tensorflow as tf

    from gaitforge.agents.sac import sample_action, soft_td_target

    batch = replay.sample(n, rng, ratio={part: 1.0})
    b = agent._inputs({k: tf.constant(v) for k, v in batch.items()})
    next_action, next_logp = sample_action(agent.actor, b["next_obs"],
                                           tf.random.normal(tf.shape(b["action"])), agent.bounds)
    next_q = agent.critics.min_q(b["next_q_obs"], next_action, target=True, rng=agent._rng)
    y = soft_td_target(b["reward"], b["terminated"], next_q, next_logp,
                       tf.exp(agent.log_alpha), agent.config.gamma)
    qs = agent.critics.q_values(b["q_obs"], b["action"])
    q = tf.reduce_mean(tf.stack(qs), 0)
    return (float(tf.reduce_mean(y - q)), float(tf.reduce_mean(tf.abs(qs[0] - qs[1]))),
            float(np.mean(batch["reward"])))


if __name__ == "__main__":
    main()

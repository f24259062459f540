"""TF-Agents' SAC on its own PyBullet Minitaur (`MinitaurBulletEnv-v0`) for a wall-clock budget,
then judged like gaitforge's side of bench/minitaur_vs_tfagents.py. Runs in the TF-Agents venv
(../shared/peers/README.md), not gaitforge's:

    $PEERS_VENVS/tfa/bin/python bench/peers/tfa_minitaur.py --budget-s 1200 --out tfa.json

The agent is set up as ../shared/peers/tfagents_bench.py sets it up (TF-Agents' SAC Minitaur
example: 256x256 actor and critic, Adam 3e-4, tau 0.005, gamma 0.99, batch 256, 10k random
warm-up steps, then one env step and one gradient update per iteration). The clock runs from
the process start, imports included, as gaitforge's does. After the budget: 10 episodes with
the greedy policy on a fresh env, each up to the env's 1000 steps (10 s); forward speed is the
trunk's displacement along its starting heading over the episode's time (the env starts every
episode at yaw 0: its world-x displacement), a fall is the env's own `is_fallen()`.
"""

from __future__ import annotations

import time

START = time.time()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def judge(policy, py_env, episodes: int) -> list[dict]:
    minitaur_env = py_env.gym.unwrapped
    dt = minitaur_env._time_step * minitaur_env._action_repeat  # 0.002 s x 5 = 0.01 s
    results = []
    for _ in range(episodes):
        ts = py_env.reset()
        robot = minitaur_env.minitaur
        x0, y0, _ = robot.GetBasePosition()
        x, y, z, w = robot.GetBaseOrientation()
        heading = np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
        steps = 0
        while not ts.is_last():
            ts = py_env.step(policy.action(ts).action)
            steps += 1
        x1, y1, _ = robot.GetBasePosition()
        forward = (x1 - x0) * np.cos(heading) + (y1 - y0) * np.sin(heading)
        results.append({"forward_m_s": float(forward / (steps * dt)), "seconds": steps * dt,
                        "fell": bool(minitaur_env.is_fallen())})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=1200.0)
    parser.add_argument("--warmup", type=int, default=10_000)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import tensorflow as tf
    from tf_agents.agents.ddpg import critic_network
    from tf_agents.agents.sac import sac_agent, tanh_normal_projection_network
    from tf_agents.drivers import dynamic_step_driver
    from tf_agents.environments import suite_pybullet, tf_py_environment
    from tf_agents.networks import actor_distribution_network
    from tf_agents.policies import greedy_policy, py_tf_eager_policy, random_tf_policy
    from tf_agents.replay_buffers import tf_uniform_replay_buffer
    from tf_agents.utils import common

    np.random.seed(args.seed)  # noqa: NPY002 - the Minitaur env draws from the global RNG
    tf.random.set_seed(args.seed)
    tf_env = tf_py_environment.TFPyEnvironment(suite_pybullet.load("MinitaurBulletEnv-v0"))
    obs_spec, act_spec, ts_spec = (tf_env.observation_spec(), tf_env.action_spec(),
                                   tf_env.time_step_spec())
    critic = critic_network.CriticNetwork(
        (obs_spec, act_spec), joint_fc_layer_params=(256, 256),
        kernel_initializer="glorot_uniform", last_kernel_initializer="glorot_uniform")
    actor = actor_distribution_network.ActorDistributionNetwork(
        obs_spec, act_spec, fc_layer_params=(256, 256),
        continuous_projection_net=tanh_normal_projection_network.TanhNormalProjectionNetwork)
    step = tf.Variable(0, dtype=tf.int64)
    agent = sac_agent.SacAgent(
        ts_spec, act_spec, actor_network=actor, critic_network=critic,
        actor_optimizer=tf.keras.optimizers.Adam(3e-4),
        critic_optimizer=tf.keras.optimizers.Adam(3e-4),
        alpha_optimizer=tf.keras.optimizers.Adam(3e-4), target_update_tau=0.005,
        target_update_period=1, td_errors_loss_fn=tf.math.squared_difference, gamma=0.99,
        train_step_counter=step)
    agent.initialize()
    replay = tf_uniform_replay_buffer.TFUniformReplayBuffer(
        agent.collect_data_spec, batch_size=tf_env.batch_size, max_length=1_000_000)
    warm = common.function(dynamic_step_driver.DynamicStepDriver(
        tf_env, random_tf_policy.RandomTFPolicy(ts_spec, act_spec), [replay.add_batch],
        num_steps=args.warmup).run)
    collect = common.function(dynamic_step_driver.DynamicStepDriver(
        tf_env, agent.collect_policy, [replay.add_batch], num_steps=1).run)
    train = common.function(agent.train)

    time_step, _ = warm()
    env_steps = args.warmup
    batches = iter(replay.as_dataset(num_parallel_calls=3, sample_batch_size=256,
                                     num_steps=2).prefetch(3))
    policy_state = agent.collect_policy.get_initial_state(tf_env.batch_size)
    while time.time() - START < args.budget_s:
        time_step, policy_state = collect(time_step=time_step, policy_state=policy_state)
        train(next(batches)[0])
        env_steps += 1
    trained_s = time.time() - START

    greedy = py_tf_eager_policy.PyTFEagerPolicy(greedy_policy.GreedyPolicy(agent.policy),
                                                use_tf_function=True)
    episodes = judge(greedy, suite_pybullet.load("MinitaurBulletEnv-v0"), args.episodes)
    out = {"system": "tf-agents 0.19.0 SAC, MinitaurBulletEnv-v0", "budget_s": args.budget_s,
           "trained_s": trained_s, "env_steps": env_steps, "updates": int(step.numpy()),
           "episodes": episodes}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({k: v for k, v in out.items() if k != "episodes"}))


if __name__ == "__main__":
    main()

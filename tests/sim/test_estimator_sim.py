"""The velocity estimator in simulation: a short deploy through `control.runtime.deploy` logs
the estimate and the truth every tick in both engines; the env reports the same estimator's
output in `info["estimate"]` without changing observations, rewards or the random draws."""

from __future__ import annotations

import numpy as np
import pytest

from gaitforge.cli.run_config import env_config
from gaitforge.control.deploy import clock_and_sleep
from gaitforge.control.estimator import VelocityEstimate, VelocityEstimator
from gaitforge.control.logger import TRUTH_FIELDS, read_log
from gaitforge.control.policy_io import ActionMapper, ObservationBuilder
from gaitforge.control.runtime import DeployRuntime, deploy
from gaitforge.control.safety import SafetyConfig, SafetyLayer, rate_limit_for
from gaitforge.robots.spec import load_robot_spec
from gaitforge.sim.config import SimConfig
from gaitforge.sim.env import make_body, make_env, make_vec_env
from gaitforge.sim.robot_adapters import SimulatedRobot

SPEC = load_robot_spec("servo_dog")
DT = 0.02
COMMAND = (0.3, 0.0, 0.0)


class ZeroActor:
    """The actor of an untrained policy whose last layer is zero: the gait prior walks."""

    backend = "zero"

    def check_body(self, *args):
        pass

    def act(self, obs):
        return np.zeros(SPEC.n_joints, np.float32)


def walking_runtime(clock) -> DeployRuntime:
    env = env_config("servo_dog", "walk")
    builder = ObservationBuilder(SPEC, env.observation, env.action.gait)
    mapper = ActionMapper(SPEC, env.action)
    safety = SafetyLayer(SPEC, SafetyConfig(soft_start_s=0.3, exit_damping_s=0.1,
                                            max_step_rad=rate_limit_for(SPEC, DT)), clock=clock)
    return DeployRuntime(SPEC, builder, mapper, ZeroActor(), safety, DT, {"kind": "test"},
                         estimator=VelocityEstimator(SPEC, env.action.gait))


@pytest.mark.parametrize("engine", ["pybullet", "mujoco"])
def test_a_simulated_deploy_logs_the_estimate_and_the_truth_every_tick(tmp_path, engine):
    clock, sleep = clock_and_sleep(False)
    runtime = walking_runtime(clock)
    robot = SimulatedRobot(make_body(SPEC, SimConfig(engine=engine)), command=COMMAND)
    report = deploy(runtime, robot, duration_s=3.0, command=COMMAND, clock=clock, sleep=sleep,
                    log_path=tmp_path / "walk.gflog", metadata={"body": f"sim:{engine}"},
                    on_tick=robot.observe)
    robot.close()
    assert report["outcome"] == "completed", report
    # the open-loop trot steps under the limit, but for its first ticks: the soft start ends
    # in the default pose and the trot's phase is then mid-stride (2 of 150 ticks)
    assert report["rate_limited_share"] <= 2 / 150
    log = read_log(tmp_path / "walk.gflog")
    t = log.ticks
    assert log.metadata["estimator"]["contact_source"] == "kinematic"
    assert log.metadata["n_feet"] == 4
    assert t["state_valid"].all()
    for name in ("est_lin_vel_m_s", "est_foot_contact", *TRUTH_FIELDS):
        assert np.isfinite(t[name]).all(), name
    policy = np.isfinite(t["action"]).all(axis=1)
    assert policy.sum() == 150
    assert 0.08 < t["true_base_height_m"][policy].min() < 0.14
    assert not t["true_collisions"][policy].any()  # (after torque off it sinks to its knees)
    used, touching = t["est_foot_contact"][policy] > 0.5, t["true_foot_contact"][policy] > 0.5
    assert (used & touching).sum() >= 0.8 * used.sum()  # a foot it used was on the ground
    assert report["vx_mean"] > 0.1  # it walks
    err = t["est_lin_vel_m_s"][policy] - t["true_lin_vel_m_s"][policy]
    rms = float(np.sqrt(np.mean(np.sum(err * err, axis=1))))
    assert rms < 0.08, rms


def test_the_env_reports_the_estimate_without_changing_what_it_returned_before():
    cfg = env_config("servo_dog", "walk", "mujoco",
                     ["env.randomization.push_interval_s=0.5"])
    env, reference = make_env(cfg), make_env(cfg)
    dummy = VelocityEstimate(np.zeros(3), np.zeros(4, bool))
    reference.estimator.update = lambda state: dummy  # as if there were no estimator
    rng = np.random.default_rng(0)
    for e in (env, reference):
        e.set_command(COMMAND)
    (obs, info), (ref_obs, _) = env.reset(seed=3), reference.reset(seed=3)
    np.testing.assert_array_equal(obs, ref_obs)
    assert info["estimate"].dtype == np.float32 and info["estimate"].shape == (7,)
    assert np.abs(info["estimate"][:3]).max() < 0.1  # at rest, but its joints read noisy rates
    errors = []
    for _ in range(100):
        action = rng.uniform(-0.2, 0.2, 12)
        obs, reward, term, trunc, info = env.step(action)
        ref = reference.step(action)
        np.testing.assert_array_equal(obs, ref[0])
        assert reward == ref[1] and (term, trunc) == ref[2:4]
        np.testing.assert_array_equal(info["critic_obs"], ref[4]["critic_obs"])
        assert set(info["estimate"][3:]) <= {0.0, 1.0}
        errors.append(info["estimate"][:3] - info["critic_obs"][1:4])  # body-frame velocity
    assert np.sqrt(np.mean(np.sum(np.square(errors), axis=1))) < 0.1
    env.close()
    reference.close()


def test_estimated_reward_inputs_judge_the_motion_by_the_estimate_as_a_log_is():
    """env.reward_inputs=estimated: the rewards judge the trunk's motion by what a robot's log
    holds (sim/log_rewards.py), the episode itself unchanged: lin_vel_z is weight x the
    estimated vz^2 x dt where the truth's is weight x the true vz^2 x dt; the terms of the
    joints and the action are the truth's; observations and falls are the same."""
    overrides = ["env.randomization.push_interval_s=0.5"]
    truth = make_env(env_config("servo_dog", "walk", "mujoco", overrides))
    judged = make_env(env_config("servo_dog", "walk", "mujoco",
                                 [*overrides, "env.reward_inputs=estimated"]))
    for e in (truth, judged):
        e.set_command(COMMAND)
        e.reset(seed=3)
    weight, rng, differed = truth.task.weights["lin_vel_z"], np.random.default_rng(0), 0
    for _ in range(100):
        action = rng.uniform(-0.2, 0.2, 12)
        obs, _, term, trunc, info = truth.step(action)
        j_obs, _, j_term, j_trunc, j_info = judged.step(action)
        np.testing.assert_array_equal(obs, j_obs)
        assert (term, trunc) == (j_term, j_trunc)
        true_vz, est_vz = info["critic_obs"][3], j_info["estimate"][2]  # body frame
        assert info["reward_terms"]["lin_vel_z"] == pytest.approx(weight * true_vz**2 * DT)
        assert j_info["reward_terms"]["lin_vel_z"] == pytest.approx(weight * est_vz**2 * DT)
        for name in ("torque", "joint_vel", "action_rate", "orientation"):
            assert info["reward_terms"][name] == j_info["reward_terms"][name], name
        differed += abs(true_vz - est_vz) > 0.01
    assert differed > 50  # the two judges did see different motions
    truth.close()
    judged.close()


def test_the_vec_env_stacks_the_estimate():
    venv = make_vec_env(env_config("servo_dog", "walk", "pybullet"), n=2, seed=0)
    _, info = venv.reset()
    assert info["estimate"].shape == (2, 7)
    _, _, _, _, info = venv.step(np.zeros((2, 12), np.float32))
    assert info["estimate"].shape == (2, 7) and np.isfinite(info["estimate"]).all()
    venv.close()

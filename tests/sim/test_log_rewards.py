"""Rewards from logs: on a log written by a simulated body, the task's reward terms recomputed
from logged quantities (the estimator's output replaced by the logged truth) equal the rewards
computed online from the live simulator state, to 1e-6; transitions skip soft start and
shutdown; a tilt e-stop is a termination and the end of the duration a truncation; a log
without the estimator's fields is refused naming the field."""

from __future__ import annotations

import numpy as np
import pytest

from gaitforge.control.deploy import Deployment, VirtualClock, run_episode
from gaitforge.control.estimator import VelocityEstimator
from gaitforge.control.logger import EpisodeLogger, read_log
from gaitforge.control.policy_io import (
    ActionConfig,
    ActionMapper,
    HeadingHoldConfig,
    ObservationBuilder,
    ObservationConfig,
)
from gaitforge.control.safety import SafetyConfig, SafetyLayer
from gaitforge.robots.spec import load_robot_spec
from gaitforge.sim.config import SimConfig
from gaitforge.sim.env import make_body
from gaitforge.sim.log_rewards import LogContentError, log_transitions, require_fields
from gaitforge.sim.robot_adapters import SimulatedRobot
from gaitforge.sim.tasks import Task, TaskConfig

SPEC = load_robot_spec("servo_dog")
DT = 0.02
COMMAND = (0.2, 0.05, 0.3)
TASK = TaskConfig(rewards={"rate_limit": -1.0,  # the deploy rate limit's term takes part too
                           "heading": -0.5},  # and the heading, from the logged IMU
                  yaw_rate_window_s=0.4, lin_vel_window_s=0.2,  # velocities over windows
                  heading_cap_rad=0.2)
MAX_STEP = 0.03  # rad per tick: holds some of WobbleActor's target steps (up to 0.036 rad)


class WobbleActor:
    """A stand-in actor that moves every joint, so every reward term is non-zero."""

    def __init__(self):
        self.calls = 0

    def check_body(self, *args):
        pass

    def act(self, obs):
        self.calls += 1
        return 0.4 * np.sin(0.3 * self.calls + np.arange(12))


def deploy_with_online_rewards(tmp_path, engine, seconds=3.0, builder=None):
    """A logged deploy episode, and the rewards computed online as the env computes them
    (Task.step on the simulator's privileged state after each policy step, judging the
    command the observation carried)."""
    builder = builder or ObservationBuilder(SPEC)
    task = Task(TASK, SPEC, DT)
    task.reset(np.random.default_rng(0), command=COMMAND)
    online, previous = [], {"action": None, "last": np.zeros(12), "sent": None, "held": None,
                            "shown": None}

    def judge(state, action, sent, phase):
        if previous["action"] is not None and state is not None:
            contacts = frozenset(f"x{i}" for i in range(int(state.privileged.collisions)))
            step = task.step(state, previous["action"], previous["last"], ground_z_m=0.0,
                             link_contacts=contacts, rate_limited=previous["held"],
                             shown_command=previous["shown"])
            online.append(step.reward)
            previous["last"] = previous["action"]
        previous["action"] = None if action is None else np.clip(action, -1, 1)
        previous["shown"] = d.shown_command.copy()
        # a joint the rate limit held moved by exactly the limit
        previous["held"] = None if previous["sent"] is None else \
            np.abs(sent.position_rad - previous["sent"]) >= MAX_STEP - 1e-9
        previous["sent"] = sent.position_rad.copy()

    body = make_body(SPEC, SimConfig(engine=engine))
    robot = SimulatedRobot(body, command=COMMAND)
    clock = VirtualClock()
    safety = SafetyLayer(SPEC, SafetyConfig(soft_start_s=0.4, exit_damping_s=0.1,
                                            max_step_rad=MAX_STEP), clock=clock)
    path = tmp_path / f"{engine}.gflog"
    logger = EpisodeLogger(path, {"robot": SPEC.name, "control_dt_s": DT,
                                  "command": list(COMMAND), "body": f"sim:{engine}"},
                           n_joints=12, obs_dim=builder.size, n_feet=4)
    d = Deployment(robot, WobbleActor(), builder, ActionMapper(SPEC, ActionConfig(0.3)),
                   safety, control_dt_s=DT, command=COMMAND, logger=logger, on_tick=judge,
                   estimator=VelocityEstimator(SPEC))
    run_episode(d, seconds, clock, clock.sleep)
    logger.close()
    robot.close()
    return read_log(path), np.array(online)


@pytest.mark.parametrize("engine", ["mujoco", "pybullet"])
def test_recomputed_rewards_equal_the_online_ones(tmp_path, engine):
    log, online = deploy_with_online_rewards(tmp_path, engine)
    truth = log_transitions(log, SPEC, TASK, velocity="true")
    # 3 s of policy at 50 Hz; the last one's transition ends in the shutdown (truncated), and
    # the online judge saw it too, one tick later
    assert len(truth) == 150 and truth.truncated[-1] and not truth.terminated.any()
    assert not truth.truncated[:-1].any()
    np.testing.assert_allclose(truth.reward, online[:len(truth)], rtol=0, atol=1e-6)
    took_part = [n for n, v in truth.reward_terms.items() if np.abs(v).max() > 0]
    assert len(took_part) >= len(truth.reward_terms) - 1, took_part  # (no knee touched down)
    held = -truth.reward_terms["rate_limit"] / DT  # share of the joints held back
    assert 0 < held.mean() < 1  # some joints held back, not all
    estimated = log_transitions(log, SPEC, TASK)
    assert not np.allclose(estimated.reward, truth.reward)  # the estimate is not the truth
    assert estimated.critic_obs.shape == (len(truth), 3 + 4)
    np.testing.assert_array_equal(estimated.next_obs[:-1], estimated.obs[1:])


def test_with_a_heading_hold_the_rewards_judge_the_command_each_observation_carried(tmp_path):
    builder = ObservationBuilder(SPEC, ObservationConfig(
        heading_hold=HeadingHoldConfig(gain_per_s=2.0, cap_rad=0.3)))
    log, online = deploy_with_online_rewards(tmp_path, "mujoco", builder=builder)
    truth = log_transitions(log, SPEC, TASK, velocity="true", observation=builder)
    np.testing.assert_allclose(truth.reward, online[:len(truth)], rtol=0, atol=1e-6)
    as_given = log_transitions(log, SPEC, TASK, velocity="true")  # without the builder
    assert np.abs(as_given.reward - truth.reward).max() > 1e-4  # the hold changed them


def test_a_log_without_the_estimator_is_refused_naming_the_field(tmp_path):
    log, _ = deploy_with_online_rewards(tmp_path, "mujoco", seconds=0.5)
    del log.ticks["est_lin_vel_m_s"]
    with pytest.raises(LogContentError, match="has no 'est_lin_vel_m_s'"):
        require_fields(log, ["est_lin_vel_m_s"])
    with pytest.raises(LogContentError, match="'est_lin_vel_m_s'"):
        log_transitions(log, SPEC, TaskConfig())


def test_reestimating_computes_the_estimate_again_from_the_logged_sensors(tmp_path):
    """A log whose estimator fields were written wrong (zeroed here, as by an estimator since
    fixed): with reestimate the fine-tune computes them again from the logged time, joints
    and IMU, and gets what the deploy's estimator (today's) logged, to the logged precision."""
    log, _ = deploy_with_online_rewards(tmp_path, "mujoco", seconds=1.0)
    logged = log_transitions(log, SPEC, TASK)
    for name in ("est_lin_vel_m_s", "est_foot_contact"):
        log.ticks[name] = np.zeros_like(log.ticks[name])
    broken = log_transitions(log, SPEC, TASK)
    again = log_transitions(log, SPEC, TASK, reestimate=True)
    assert not np.allclose(broken.critic_obs, logged.critic_obs)
    np.testing.assert_allclose(again.critic_obs, logged.critic_obs, atol=1e-4)
    np.testing.assert_allclose(again.reward, logged.reward, atol=1e-5)

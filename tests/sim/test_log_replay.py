"""Replay: a log written by a simulated body replays exactly in the same engine with the same
dynamics (hung: nothing else moves it), and a different dynamics shows up as a gap with the
right sign of lag."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gaitforge.control.deploy import Deployment, VirtualClock, run_episode
from gaitforge.control.logger import EpisodeLogger, read_log
from gaitforge.control.policy_io import ActionConfig, ActionMapper, ObservationBuilder
from gaitforge.control.safety import SafetyConfig, SafetyLayer
from gaitforge.robots.spec import load_robot_spec
from gaitforge.sim.config import SimConfig
from gaitforge.sim.dynamics import DynamicsParams
from gaitforge.sim.env import make_body
from gaitforge.sim.replay import LogCommands, make_replay_body, replay, summary
from gaitforge.sim.robot_adapters import SimulatedRobot

SPEC = load_robot_spec("servo_dog")
DT = 0.02
DYNAMICS = DynamicsParams(latency_s=0.006, kp_scale=1.2, joint_friction_nm=0.02,
                          armature_kg_m2=0.002, joint_damping_nm_s_per_rad=0.01)


class SineRunner:
    """A stand-in actor: every joint swings in a sine of its own frequency."""

    def __init__(self):
        self.calls = 0

    def check_body(self, *args):
        pass

    def act(self, obs):
        self.calls += 1
        t = self.calls * DT
        return 0.8 * np.sin(2 * np.pi * (0.7 + 0.11 * np.arange(12)) * t)


def hung_log(tmp_path, engine: str, dynamics: DynamicsParams, seconds: float = 2.0):
    body = make_body(SPEC, SimConfig(engine=engine), fixed_base=True)
    body.set_dynamics(dynamics)
    robot = SimulatedRobot(body)
    clock = VirtualClock()
    safety = SafetyLayer(SPEC, SafetyConfig(soft_start_s=0.2, exit_damping_s=0.1,
                                            max_step_rad=0.24), clock=clock)
    builder = ObservationBuilder(SPEC)
    path = tmp_path / f"{engine}.gflog"
    logger = EpisodeLogger(path, {"robot": SPEC.name, "support": "hung", "control_dt_s": DT,
                                  "body": f"sim:{engine}"}, n_joints=12,
                           obs_dim=builder.size)
    d = Deployment(robot, SineRunner(), builder, ActionMapper(SPEC, ActionConfig(0.3)), safety,
                   control_dt_s=DT, logger=logger)
    run_episode(d, seconds, clock, clock.sleep)
    logger.close()
    robot.close()
    return read_log(path)


@pytest.mark.parametrize("engine", ["mujoco", "pybullet"])
def test_a_simulated_log_replays_exactly_with_its_own_dynamics(tmp_path, engine):
    log = hung_log(tmp_path, engine, DYNAMICS)
    commands = LogCommands.from_log(log)
    body = make_replay_body(SPEC, engine, DT, "hung", DYNAMICS)
    result = replay(body, commands)
    body.close()
    report = summary(result, SPEC, DT)
    assert report["ticks"] == len(log.ticks["tick"]) > 100
    assert max(j["rmse_rad"] for j in report["joints"].values()) <= 1e-6, report["joints"]
    moved = np.ptp(result.logged_q, axis=0)
    assert moved.min() > 0.2  # every joint really moved
    assert report["orientation_max_rad"] < 1e-9  # hung: the trunk does not move


def test_other_dynamics_show_as_a_gap_and_a_later_response_as_lag(tmp_path):
    log = hung_log(tmp_path, "mujoco", DYNAMICS, seconds=3.0)
    commands = LogCommands.from_log(log)
    nominal = make_replay_body(SPEC, "mujoco", DT, "hung", DynamicsParams(armature_kg_m2=0.002))
    gap = summary(replay(nominal, commands), SPEC, DT)
    nominal.close()
    rmse = [j["rmse_rad"] for j in gap["joints"].values()]
    assert min(rmse) > 1e-3  # 6 ms of latency, +20 % kp, friction: not a small difference
    # the log's servos answer 6 ms later: on average its motion lags the replay
    assert np.mean([j["lag_ms"] for j in gap["joints"].values()]) > 1.0


@pytest.mark.parametrize("engine", ["mujoco", "pybullet"])
def test_stepping_zero_physics_steps_changes_nothing(engine):
    """Replay steps 0 physics steps when a logged command was written at the end of a tick."""
    body = make_replay_body(SPEC, engine, DT, "hung", DYNAMICS)
    body.step()
    before = body.read()
    body.step(0)
    after = body.read()
    assert after.time_s == before.time_s
    np.testing.assert_array_equal(after.joint_pos_rad, before.joint_pos_rad)
    np.testing.assert_array_equal(after.accel_m_s2, before.accel_m_s2)
    np.testing.assert_array_equal(after.joint_torque_nm, before.joint_torque_nm)
    body.close()


def test_windows_cut_a_log_into_pieces_each_from_a_read_state(tmp_path):
    """A 2 s log at 50 Hz: pieces of 40 rows, the last one kept when at least half a piece;
    a piece that would start on a state that was not read starts at the next one."""
    whole = LogCommands.from_log(hung_log(tmp_path, "mujoco", DYNAMICS))
    n = len(whole.steps)
    assert LogCommands.windows(whole, 0) == [whole] and whole.windows(n) == [whole]
    pieces = whole.windows(40)
    expected = [40] * (n // 40) + ([n % 40] if n % 40 >= 20 else [])
    assert [len(p.steps) for p in pieces] == expected
    np.testing.assert_array_equal(pieces[1].q, whole.q[40:80])
    assert pieces[1].commands == whole.commands[40:80] and pieces[1].time_s[0] == whole.time_s[40]
    # a state not read at row 40: that piece starts at row 41
    unread = dataclasses.replace(whole, valid=np.where(np.arange(n) == 40, False, whole.valid))
    assert unread.windows(40)[1].time_s[0] == whole.time_s[41]
    # a piece replays from its own first state: off by the command in flight at the cut (6 ms
    # of latency; the log has no record of it) for a tick, then exactly again
    body = make_replay_body(SPEC, "mujoco", DT, "hung", DYNAMICS)
    error = np.abs(replay(body, pieces[1]).error)
    body.close()
    assert error.max() < 0.02 and error[-5:].max() <= 1e-5

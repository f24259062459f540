"""Tasks: every reward term on a hand-made StepContext, weighted sums, config checks, and the
terminations on either side of their thresholds."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from gaitforge.robots.configio import ConfigError, from_dict
from gaitforge.robots.types import PrivilegedState, RobotState
from gaitforge.sim.env import EnvConfig
from gaitforge.sim.tasks import (
    DEFAULT_WEIGHTS,
    REWARD_TERMS,
    CommandRanges,
    StepContext,
    Task,
    TaskConfig,
    TerminationConfig,
)

DT = 0.02
S15, C15 = math.sin(math.radians(15)), math.cos(math.radians(15))


@pytest.fixture
def spec(robot_spec):
    return robot_spec("servo_dog")  # standing 0.13 m, torque limit 1.5 N·m, speed limit 6 rad/s


def make_state(spec, *, quat=(C15, S15, 0.0, 0.0), z=0.104, trunk_contact=False) -> RobotState:
    n = spec.n_joints
    q = spec.default_pose_rad.copy()
    q[0] += 0.25
    q[5] += 0.25
    dq = np.zeros(n)
    dq[0], dq[7] = 3.0, -3.0
    tau = np.zeros(n)
    tau[:4] = 0.75
    return RobotState(
        time_s=0.0, joint_pos_rad=q, joint_vel_rad_s=dq, imu_quat_wxyz=np.array(quat),
        gyro_rad_s=np.zeros(3), accel_m_s2=np.array([0.0, 0.0, 9.81]), joint_torque_nm=tau,
        privileged=PrivilegedState(
            base_pos_m=np.array([0.2, -0.1, z]),
            base_lin_vel_m_s=np.array([0.1, 0.1, 0.2]),
            base_ang_vel_rad_s=np.array([0.3, -0.4, 0.1]),
            foot_contact=np.array([True, True, False, False]), friction=1.0,
            trunk_contact=trunk_contact))


def make_context(spec, command=(0.3, -0.1, 0.5)) -> StepContext:
    action = np.zeros(spec.n_joints)
    action[:2] = 0.5, -0.5
    return StepContext(
        spec=spec, state=make_state(spec), command=np.array(command), action=action,
        last_action=np.zeros(spec.n_joints),
        link_contacts={"FR_foot", "FL_foot", "trunk", "FR_calf", "RL_thigh"},
        first_contact=np.array([True, True, False, False]),
        air_time_s=np.array([0.5, 0.35, 0.3, 0.0]), sigma=0.25, air_time_target_s=0.25,
        rate_limited=np.arange(spec.n_joints) < 3, heading_error=-0.3)


# Hand-computed term values for make_context():
TERMS = {
    # command xy (0.3, -0.1) - base vel xy (0.1, 0.1) = (0.2, -0.2); |err|^2 = 0.08
    "tracking_lin_vel": math.exp(-0.08 / 0.25),  # exp(-0.32) = 0.72615
    # yaw: 0.5 - 0.1 = 0.4; 0.16 / 0.25 = 0.64
    "tracking_ang_vel": math.exp(-0.64),  # 0.52729
    "heading": 0.3,  # |-0.3 rad| (Task.step works the error out: see the heading test below)
    "lin_vel_z": 0.04,  # 0.2^2
    "ang_vel_xy": 0.25,  # 0.3^2 + 0.4^2
    # 30° roll: projected gravity (0, -sin 30°, -cos 30°) -> 0.5^2
    "orientation": 0.25,
    # (0.104 - 0.13) / 0.13 = -0.2 -> 0.04
    "base_height": 0.04,
    "torque": 1.0,  # four joints at 0.75 / 1.5 = 0.5 -> 4 * 0.25
    "joint_vel": 0.5,  # two joints at |3| / 6 = 0.5 -> 2 * 0.25
    "action_rate": 0.5,  # (0.5, -0.5) - 0 -> 0.25 + 0.25
    "residual": 0.5,  # 0.5^2 + (-0.5)^2
    "rate_limit": 0.25,  # the rate limit held 3 of the 12 joints
    "rate_limit_tick": 1.0,  # ... so the tick was limited
    "pose": math.exp(-0.5),  # two joints 0.25 off default: 0.125 / 0.25 = 0.5
    # touch-downs on FR (0.5 s in the air) and FL (0.35 s), target 0.25: 0.25 + 0.10
    "feet_air_time": 0.35,
    "collision": 2.0,  # FR_calf and RL_thigh; feet and trunk are not counted here
    "alive": 1.0,
}


def test_every_term_is_hand_checked():
    assert set(TERMS) == set(REWARD_TERMS)


@pytest.mark.parametrize("name", sorted(TERMS))
def test_reward_term_value(spec, name):
    assert REWARD_TERMS[name](make_context(spec)) == pytest.approx(TERMS[name], rel=1e-12,
                                                                   abs=1e-15)


def test_collision_leaves_out_the_robot_s_ground_contact_links(spec):
    """A shank whose mesh reaches the foot's bottom (mini_cheetah's) is no collision: of
    FR_calf and RL_thigh on the ground, RL_thigh alone counts."""
    ctx = make_context(spec)
    ctx.spec = dataclasses.replace(spec, ground_contact_links=("FR_calf",))
    assert REWARD_TERMS["collision"](ctx) == 1.0


def test_tracking_sigma_yaw_widens_the_yaw_kernel_only(spec):
    ctx = make_context(spec)  # yaw error 0.4 rad/s: exp(-0.16 / 0.1) with its own width
    ctx.sigma_yaw = 0.1
    assert REWARD_TERMS["tracking_ang_vel"](ctx) == pytest.approx(math.exp(-1.6), rel=1e-12)
    assert REWARD_TERMS["tracking_lin_vel"](ctx) == pytest.approx(TERMS["tracking_lin_vel"])


def test_rate_limit_is_zero_where_no_limit_was_applied(spec):
    ctx = make_context(spec)
    ctx.rate_limited = None
    assert REWARD_TERMS["rate_limit"](ctx) == 0.0
    assert REWARD_TERMS["rate_limit_tick"](ctx) == 0.0
    ctx.rate_limited = np.zeros(spec.n_joints, bool)  # applied, nothing held
    assert REWARD_TERMS["rate_limit_tick"](ctx) == 0.0


def test_feet_air_time_only_counts_when_moving(spec):
    # |(0.03, 0.03)| = 0.042 < 0.05: standing still, no stepping reward
    assert REWARD_TERMS["feet_air_time"](make_context(spec, (0.03, 0.03, 0.5))) == 0.0
    # |(0.05, 0.0)| = 0.05 is not below the threshold: counted
    assert REWARD_TERMS["feet_air_time"](make_context(spec, (0.05, 0.0, 0.0))) == pytest.approx(
        0.35)


@pytest.mark.parametrize("task", ["walk", "stand"])
def test_reward_is_weights_times_terms_times_dt(spec, task):
    t = Task(TaskConfig(name=task), spec, DT)
    assert t.weights == DEFAULT_WEIGHTS[task]
    reward, terms = t.reward(make_context(spec))
    assert set(terms) == set(DEFAULT_WEIGHTS[task])
    for name, value in terms.items():
        assert value == pytest.approx(DEFAULT_WEIGHTS[task][name] * TERMS[name] * DT, rel=1e-12)
    assert reward == pytest.approx(sum(terms.values()), rel=1e-12)


def test_walk_reward_by_hand(spec):
    """walk: 1.0*0.72615 + 0.5*0.52729 - 2*0.04 - 0.05*0.25 - 1*0.25 - 0.01*1.0 - 0.001*0.5
    - 0.01*0.5 - 2*0.25 (rate limit) + 1.0*0.35 - 1.0*2 = -1.51820; times dt 0.02 =
    -0.0303641."""
    reward, _ = Task(TaskConfig(name="walk"), spec, DT).reward(make_context(spec))
    expected = (math.exp(-0.32) + 0.5 * math.exp(-0.64) - 0.08 - 0.0125 - 0.25 - 0.01 - 0.0005
                - 0.005 - 0.5 + 0.35 - 2.0) * DT
    assert reward == pytest.approx(expected, rel=1e-12)
    assert reward == pytest.approx(-0.0303641, abs=1e-7)


def test_config_weights_override_and_zero_drops_a_term(spec):
    t = Task(TaskConfig(name="walk", rewards={"alive": 2.0, "torque": 0.0}), spec, DT)
    assert t.weights["alive"] == 2.0
    assert "torque" not in t.weights
    reward, terms = t.reward(make_context(spec))
    assert terms["alive"] == pytest.approx(2.0 * 1.0 * DT)
    assert reward == pytest.approx(sum(terms.values()))


def test_unknown_reward_term_is_rejected_with_its_name():
    with pytest.raises(ValueError, match="unknown term 'speed'") as err:
        TaskConfig(rewards={"alive": 1.0, "speed": 1.0})
    assert "tracking_lin_vel" in str(err.value)  # lists the known ones
    with pytest.raises(ConfigError, match="speed") as err:
        from_dict(EnvConfig, {"task": {"rewards": {"speed": 1.0}}}, source="run.yaml")
    assert "run.yaml" in str(err.value) and "rewards" in str(err.value)


def test_unknown_task_is_rejected_with_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown task 'run' \(known: stand, walk\)"):
        TaskConfig(name="run")
    with pytest.raises(ConfigError, match=r"'task.name' must be one of"):
        from_dict(EnvConfig, {"task": {"name": "run"}}, source="run.yaml")
    with pytest.raises(ValueError, match="episode_length_s"):
        TaskConfig(episode_length_s=0.0)


def test_commands_and_episode_length(spec):
    walk = Task(TaskConfig(name="walk", episode_length_s=0.2), spec, DT)
    assert walk.max_steps == 10  # 0.2 / 0.02
    rng = np.random.default_rng(3)
    cmds = np.array([walk.sample_command(rng) for _ in range(200)])
    assert np.all(cmds.min(axis=0) >= [-0.3, -0.15, -0.5])
    assert np.all(cmds.max(axis=0) <= [0.3, 0.15, 0.5])
    assert np.all(cmds.std(axis=0) > 0.05)  # really sampled
    again = [walk.sample_command(np.random.default_rng(3)) for _ in range(2)]
    np.testing.assert_array_equal(again[0], again[1])
    stand = Task(TaskConfig(name="stand"), spec, DT)
    np.testing.assert_array_equal(stand.sample_command(rng), np.zeros(3))


def test_zero_prob_zeroes_each_command_component_on_its_own(spec):
    task = Task(TaskConfig(command=CommandRanges(vx_m_s=(0.1, 0.3), vy_m_s=(0.1, 0.2),
                                                 yaw_rad_s=(0.2, 0.5), zero_prob=0.3)), spec, DT)
    rng = np.random.default_rng(0)
    cmds = np.array([task.sample_command(rng) for _ in range(4000)])
    zero = cmds == 0.0  # the ranges exclude 0: a zero is a zeroed component
    np.testing.assert_allclose(zero.mean(axis=0), 0.3, atol=0.03)
    # on their own: all three at once (standing) 0.3^3 = 2.7 %, none 0.7^3 = 34.3 %
    assert abs(zero.all(axis=1).mean() - 0.027) < 0.01
    assert abs((~zero).all(axis=1).mean() - 0.343) < 0.03
    with pytest.raises(ValueError, match="zero_prob"):
        CommandRanges(zero_prob=1.5)


def test_focus_commands_an_episode_as_one_of_its_commands_with_focus_prob(spec):
    """A fine-tune's logged commands: with focus_prob 0.25 a quarter of the episodes take one
    of `focus`, each as likely (1/8 each); the rest come from the ranges, which exclude both."""
    focus = ((0.3, 0.0, 0.0), (0.1, -0.05, 0.2))
    task = Task(TaskConfig(command=CommandRanges(vx_m_s=(-0.3, -0.1), focus=focus,
                                                 focus_prob=0.25)), spec, DT)
    rng = np.random.default_rng(0)
    cmds = np.array([task.sample_command(rng) for _ in range(4000)])
    for command in focus:
        assert abs((cmds == command).all(axis=1).mean() - 0.125) < 0.015
    assert (cmds[:, 0] <= -0.1).mean() == pytest.approx(0.75, abs=0.02)
    with pytest.raises(ValueError, match="focus_prob"):
        CommandRanges(focus_prob=0.5)  # no command to focus on
    with pytest.raises(ValueError, match="focus_prob"):
        CommandRanges(focus=focus, focus_prob=1.5)
    with pytest.raises(ValueError, match="focus"):
        CommandRanges(focus=((0.3, float("nan"), 0.0),))


# Terminations -------------------------------------------------------------------------------
def tilted(angle_rad: float) -> tuple[float, float, float, float]:
    """Tilt about the horizontal axis (1, 1, 0)/sqrt 2: trunk z makes `angle_rad` with world z."""
    s = math.sin(angle_rad / 2) / math.sqrt(2)
    return (math.cos(angle_rad / 2), s, s, 0.0)


EPS = 1e-6


def test_trunk_contact_terminates(spec):
    task = Task(TaskConfig(), spec, DT)
    upright = make_state(spec, quat=(1, 0, 0, 0), z=0.13, trunk_contact=True)
    assert task.terminated(upright, 0.0) == (True, "trunk_contact")
    off = Task(TaskConfig(termination=TerminationConfig(trunk_contact=False)), spec, DT)
    assert off.terminated(upright, 0.0) == (False, "")


@pytest.mark.parametrize("max_tilt", [1.0, 0.4])
def test_tilt_fires_just_beyond_the_limit_not_before(spec, max_tilt):
    task = Task(TaskConfig(termination=TerminationConfig(max_tilt_rad=max_tilt)), spec, DT)
    assert task.terminated(make_state(spec, quat=tilted(max_tilt - EPS), z=0.13), 0.0) == (
        False, "")
    assert task.terminated(make_state(spec, quat=tilted(max_tilt + EPS), z=0.13), 0.0) == (
        True, "tilt")
    upside_down = make_state(spec, quat=(0.0, 1.0, 0.0, 0.0), z=0.13)
    assert task.terminated(upside_down, 0.0) == (True, "tilt")


@pytest.mark.parametrize(("frac", "ground"), [(0.5, 0.0), (0.5, 0.03), (0.8, -0.01)])
def test_height_fires_just_below_the_limit_not_before(spec, frac, ground):
    """Limit: trunk height above the local ground < frac * 0.13 m. With frac 0.5 on ground at
    0.03 m the trunk may go down to z = 0.03 + 0.065 = 0.095 m."""
    task = Task(TaskConfig(termination=TerminationConfig(min_height_frac=frac)), spec, DT)
    limit = ground + frac * 0.13
    up = (1.0, 0.0, 0.0, 0.0)
    assert task.terminated(make_state(spec, quat=up, z=limit + 1e-9), ground) == (False, "")
    assert task.terminated(make_state(spec, quat=up, z=limit - 1e-9), ground) == (True, "height")


def test_height_exactly_at_the_limit_does_not_fire(spec):
    """0.5 * 0.13 and 0.065 are the same double: 'below the limit' is strict."""
    task = Task(TaskConfig(), spec, DT)
    up = (1.0, 0.0, 0.0, 0.0)
    assert task.terminated(make_state(spec, quat=up, z=0.065), 0.0) == (False, "")
    below = np.nextafter(0.065, 0.0)
    assert task.terminated(make_state(spec, quat=up, z=below), 0.0) == (True, "height")


# The task's episode state: command and air time across reset and step ----------------------
def with_contact(state: RobotState, contact) -> RobotState:
    state.privileged.foot_contact = np.array(contact)
    return state


def test_reset_samples_holds_or_takes_the_command(spec):
    task = Task(TaskConfig(name="walk"), spec, DT)
    command = task.reset(np.random.default_rng(3))
    np.testing.assert_array_equal(command, task.sample_command(np.random.default_rng(3)))
    assert command is task.command
    given = np.array([0.2, 0.0, 0.1])
    np.testing.assert_array_equal(task.reset(np.random.default_rng(0), given), given)
    given[:] = 9.0  # the task keeps a copy
    np.testing.assert_array_equal(task.command, [0.2, 0.0, 0.1])
    task.hold_command((0.1, 0.05, 0.0))
    np.testing.assert_array_equal(task.command, [0.1, 0.05, 0.0])  # at once, mid-episode
    rng = np.random.default_rng(5)
    np.testing.assert_array_equal(task.reset(rng), [0.1, 0.05, 0.0])
    assert rng.uniform() == np.random.default_rng(5).uniform()  # a held command draws nothing
    np.testing.assert_array_equal(task.reset(rng, (0.0, 0.0, 0.3)), [0.0, 0.0, 0.3])
    task.hold_command(None)
    np.testing.assert_array_equal(task.reset(np.random.default_rng(3)), command)


def test_step_counts_air_time_until_touch_down(spec):
    """Foot 0 stays down, foot 1 lifts for three steps, feet 2-3 never touch: at foot 1's
    touch-down it had 4 steps (0.08 s) in the air, and only then is it a first contact."""
    task = Task(TaskConfig(name="walk", rewards={"feet_air_time": 1.0}), spec, DT)
    task.reset(np.random.default_rng(0), (0.3, 0.0, 0.0))
    up, action = np.zeros(spec.n_joints), np.zeros(spec.n_joints)
    contacts = [[True, True, False, False]] + [[True, False, False, False]] * 3 \
        + [[True, True, False, False]]
    for contact in contacts:
        step = task.step(with_contact(make_state(spec, quat=(1, 0, 0, 0), z=0.13), contact),
                         action, up, ground_z_m=0.0)
    assert step.terminated is False and step.reason == ""
    # foot 1 touched down after 4 * 0.02 s in the air: (0.08 - 0.25) * weight 1 * dt
    assert step.terms["feet_air_time"] == pytest.approx((0.08 - 0.25) * DT, rel=1e-12)
    np.testing.assert_allclose(task.air_time_s, [0.0, 0.0, 0.1, 0.1], rtol=1e-12)
    task.reset(np.random.default_rng(0))
    np.testing.assert_array_equal(task.air_time_s, np.zeros(4))


def test_step_is_reward_and_fall_reason_of_its_context(spec):
    task = Task(TaskConfig(name="walk"), spec, DT)
    task.reset(np.random.default_rng(0), (0.3, -0.1, 0.5))
    ctx = make_context(spec)
    task.air_time_s = np.array([0.48, 0.33, 0.28, 0.0])  # + dt: ctx's air time at touch-down
    step = task.step(ctx.state, ctx.action, ctx.last_action, ground_z_m=0.0,
                     link_contacts=ctx.link_contacts, rate_limited=ctx.rate_limited)
    reward, terms = task.reward(ctx)
    assert step.reward == pytest.approx(reward, rel=1e-12)
    assert step.terms == pytest.approx(terms, rel=1e-12)
    assert (step.terminated, step.reason) == task.terminated(ctx.state, 0.0) == (False, "")
    tall_ground = task.step(ctx.state, ctx.action, ctx.last_action, ground_z_m=0.05)
    assert (tall_ground.terminated, tall_ground.reason) == (True, "height")
    assert tall_ground.terms["collision"] == 0.0  # no link contacts handed in


def test_privileged_vector_size_comes_from_the_type(spec):
    vector = make_state(spec).privileged.vector()
    assert vector.shape == (PrivilegedState.size(len(spec.feet)),) == (12,)
    two_feet = PrivilegedState(np.zeros(3), np.zeros(3), np.zeros(3), np.array([True, False]),
                               1.0, False)
    assert two_feet.vector().shape == (PrivilegedState.size(2),)


def test_yaw_rate_window_averages_the_last_steps_of_the_episode(spec):
    """yaw_rate_window_s 0.06 at dt 0.02: the mean of the last 3 yaw rates. Yaw rates 0.3, 0.0,
    0.6, 0.3 against a command of 0.3 rad/s: windows 0.3, 0.15, 0.3, 0.3, so the kernel
    exp(-err^2 / 0.25) is 1, exp(-0.09), 1, 1; a new episode starts an empty window."""
    import dataclasses

    config = TaskConfig(name="walk", rewards={"tracking_ang_vel": 1.0}, tracking_sigma=0.25,
                        yaw_rate_window_s=0.06)
    task = Task(config, spec, DT)
    task.reset(np.random.default_rng(0), (0.3, 0.0, 0.3))
    zero = np.zeros(spec.n_joints)

    def step(rate):
        state = make_state(spec, quat=(1, 0, 0, 0), z=0.13)
        state = dataclasses.replace(state, privileged=dataclasses.replace(
            state.privileged, base_ang_vel_rad_s=np.array([0.0, 0.0, rate])))
        return task.step(state, zero, zero, ground_z_m=0.0).terms["tracking_ang_vel"] / DT

    got = [step(r) for r in (0.3, 0.0, 0.6, 0.3)]
    assert got == pytest.approx([1.0, math.exp(-0.09), 1.0, 1.0], rel=1e-12)
    task.reset(np.random.default_rng(0), (0.3, 0.0, 0.3))
    assert step(0.0) == pytest.approx(math.exp(-0.36), rel=1e-12)  # the old rates are gone
    # window 0 (the default): the step's own yaw rate
    task = Task(dataclasses.replace(config, yaw_rate_window_s=0.0), spec, DT)
    task.reset(np.random.default_rng(0), (0.3, 0.0, 0.3))
    assert [step(0.3), step(0.0)] == pytest.approx([1.0, math.exp(-0.36)], rel=1e-12)


def test_lin_vel_window_averages_forward_and_lateral_velocity(spec):
    """lin_vel_window_s 0.04 at dt 0.02: the mean of the last 2 velocities. (vx, vy) of
    (0.4, 0.0), (0.0, 0.2), (0.2, 0.0) against a command of (0.2, 0.1) m/s: windows (0.4, 0),
    (0.2, 0.1), (0.1, 0.1), errors^2 0.04 + 0.01, 0, 0.01, so the kernel exp(-err^2 / 0.25)
    is exp(-0.2), 1, exp(-0.04)."""
    import dataclasses

    config = TaskConfig(name="walk", rewards={"tracking_lin_vel": 1.0}, tracking_sigma=0.25,
                        lin_vel_window_s=0.04)
    task = Task(config, spec, DT)
    task.reset(np.random.default_rng(0), (0.2, 0.1, 0.0))
    zero = np.zeros(spec.n_joints)

    def step(vx, vy):
        state = make_state(spec, quat=(1, 0, 0, 0), z=0.13)
        state = dataclasses.replace(state, privileged=dataclasses.replace(
            state.privileged, base_lin_vel_m_s=np.array([vx, vy, 0.0])))
        return task.step(state, zero, zero, ground_z_m=0.0).terms["tracking_lin_vel"] / DT

    got = [step(0.4, 0.0), step(0.0, 0.2), step(0.2, 0.0)]
    assert got == pytest.approx([math.exp(-0.2), 1.0, math.exp(-0.04)], rel=1e-12)
    task.reset(np.random.default_rng(0), (0.2, 0.1, 0.0))
    assert step(0.0, 0.0) == pytest.approx(math.exp(-0.2), rel=1e-12)  # the old ones are gone
    with pytest.raises(ValueError, match="lin_vel_window_s must be >= 0"):
        TaskConfig(lin_vel_window_s=-0.1)


def test_heading_term_integrates_the_commanded_yaw_rate_and_caps_the_error(spec):
    """Commanded yaw rate 1.0 rad/s at dt 0.02: the target turns 0.02 rad a step from the first
    step's heading. Trunk headings 0.5, 0.5, 0.6, then 1.5 rad, cap 0.3 rad:
      step 1: target 0.5 (the first heading), error 0
      step 2: target 0.52, error -0.02
      step 3: target 0.54, error 0.06
      step 4: target 0.56, error 0.94 -> capped at 0.3, target dragged to 1.2
      step 5: heading 1.5 again: target 1.22, error 0.28
    The term is |error|; a new episode starts from its own first heading."""
    config = TaskConfig(name="walk", rewards={"heading": -1.0}, heading_cap_rad=0.3)
    task = Task(config, spec, DT)
    task.reset(np.random.default_rng(0), (0.0, 0.0, 1.0))
    zero = np.zeros(spec.n_joints)

    def step(yaw):
        state = make_state(spec, quat=(math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)), z=0.13)
        return -task.step(state, zero, zero, ground_z_m=0.0).terms["heading"] / DT

    got = [step(h) for h in (0.5, 0.5, 0.6, 1.5, 1.5)]
    assert got == pytest.approx([0.0, 0.02, 0.06, 0.3, 0.28], abs=1e-12)
    task.reset(np.random.default_rng(0), (0.0, 0.0, 0.0))
    assert [step(-3.0), step(3.0)] == pytest.approx([0.0, 2 * math.pi - 6.0], abs=1e-12)
    with pytest.raises(ValueError, match="heading_cap_rad"):
        TaskConfig(heading_cap_rad=0.0)

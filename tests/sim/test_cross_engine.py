"""PyBullet and MuJoCo against each other: standing, kinematics, joint order and signs, the PD
step response, base state conventions, contacts after a reset, and control_dt validation."""

from __future__ import annotations

import numpy as np
import pytest

from gaitforge.control.policy_io import projected_gravity
from gaitforge.robots.configio import ConfigError, from_dict
from gaitforge.robots.types import JointCommand
from gaitforge.sim.config import SimConfig
from gaitforge.sim.dynamics import DynamicsParams
from gaitforge.sim.env import EnvConfig

ROBOTS = ("servo_dog", "a1", "mini_cheetah", "minitaur")
ENGINES = ("pybullet", "mujoco")
IN_THE_AIR = dict(base_pos_m=[0.0, 0.0, 1.0], base_quat_wxyz=[1.0, 0.0, 0.0, 0.0])


def bodies(sim_body, spec, *, fixed_base=False):
    return {e: sim_body(spec, e, fixed_base=fixed_base) for e in ENGINES}


def link_points(body, links, points) -> np.ndarray:
    """World positions (m) of `points` (each in its link's frame), (len(links), 3), read from
    the engine itself."""
    if body.engine == "pybullet":
        p = body.client
        index = {name: i for i, name in body._link_names.items()}
        out = []
        for link, point in zip(links, points, strict=True):
            state = p.getLinkState(body.robot, index[link], computeForwardKinematics=True)
            out.append(p.multiplyTransforms(state[4], state[5], point, [0, 0, 0, 1])[0])
        return np.array(out)
    d = body.data
    return np.array([d.xpos[b] + d.xmat[b].reshape(3, 3) @ np.asarray(point)
                     for b, point in zip((body.model.body(n).id for n in links), points,
                                         strict=True)])


def foot_positions(body) -> np.ndarray:
    """World positions (m) of the feet (foot link frames moved by the spec's foot offset),
    (n_feet, 3), read from the engine itself."""
    spec = body.spec
    return link_points(body, spec.feet, [spec.foot_offset_m] * len(spec.feet))


# Standing ------------------------------------------------------------------------------------
@pytest.mark.parametrize("robot", ROBOTS)
def test_default_pose_stands_for_2s_in_both_engines(robot_spec, sim_body, robot):
    """Spawned at the spec's standing height, servos holding the default pose for 2 s (100
    control steps): upright, trunk off the ground, all feet down, little drift, and trunk heights
    within 10 % of each other. Measured (m): servo_dog 0.1266 / 0.1245, a1 0.2464 / 0.2387,
    mini_cheetah 0.2659 / 0.2627 (on pybullet_data's URDF, before its right legs' centres of mass
    were mirrored), minitaur 0.1566 / 0.1576 (PyBullet / MuJoCo)."""
    spec = robot_spec(robot)
    heights = {}
    for engine, body in bodies(sim_body, spec).items():
        body.reset(base_pos_m=[0.0, 0.0, body.spawn_height()], base_quat_wxyz=[1, 0, 0, 0],
                   joint_pos_rad=spec.default_pose_rad)
        hold = JointCommand(position_rad=spec.default_pose_rad)
        for _ in range(100):
            body.write(hold)
            body.step()
            assert spec.base_link not in body.link_contacts(), f"{engine}: trunk touched down"
        state = body.read()
        assert body.time_s == pytest.approx(2.0)
        pos = state.privileged.base_pos_m
        heights[engine] = pos[2]
        assert projected_gravity(state.imu_quat_wxyz)[2] < -0.99, engine  # within ~8° of upright
        assert np.all(state.privileged.foot_contact), engine
        # settling from the spawn pose shifts the trunk a little (a1: 3 to 3.5 cm backwards)
        assert np.hypot(pos[0], pos[1]) < 0.05, f"{engine}: drifted {pos[:2]}"
        assert 0.8 * spec.standing_height_m < pos[2] < 1.1 * spec.standing_height_m, engine
    pb, mj = heights["pybullet"], heights["mujoco"]
    assert abs(pb - mj) <= 0.1 * max(pb, mj), heights


# Kinematics, joint order and signs ------------------------------------------------------------
@pytest.mark.parametrize("robot", ROBOTS)
def test_same_pose_puts_the_feet_in_the_same_place(robot_spec, sim_body, robot):
    """Fixed base, tilted and turned, joints at random angles within the limits: every foot link
    frame is at the same world position in both engines (1e-6 m; measured ~5e-8 m)."""
    spec = robot_spec(robot)
    q = np.random.default_rng(0).uniform(spec.lower_rad, spec.upper_rad)
    quat = np.array([np.cos(0.3), 0.1, -0.05, np.sin(0.3)])
    quat /= np.linalg.norm(quat)
    feet = {}
    for engine, body in bodies(sim_body, spec, fixed_base=True).items():
        body.reset(base_pos_m=[0.1, -0.2, 1.0], base_quat_wxyz=quat, joint_pos_rad=q)
        state = body.read()
        np.testing.assert_allclose(state.joint_pos_rad, q, atol=1e-12)
        np.testing.assert_allclose(state.privileged.base_pos_m, [0.1, -0.2, 1.0], atol=1e-6)
        np.testing.assert_allclose(state.imu_quat_wxyz, quat, atol=1e-6)
        feet[engine] = foot_positions(body)
    np.testing.assert_allclose(feet["pybullet"], feet["mujoco"], atol=1e-6)


# servo_dog's documented convention (spec.yaml): +thigh swings the foot backward (-x); the calf
# joint turns about +y as well, so +calf also moves the foot backward; the hip turns about +x,
# so +hip moves a foot hanging below it towards +y (outward for the LEFT legs).
SERVO_DOG_SIGNS = {"hip": (1, +1), "thigh": (0, -1), "calf": (0, -1)}  # (axis, sign)


@pytest.mark.parametrize("robot", ROBOTS)
def test_positive_command_moves_the_same_foot_the_same_way(robot_spec, sim_body, robot):
    """Fixed base in the air. For each joint in turn, command default + 0.1 rad on that joint
    only, run 0.2 s, and compare each foot's position with a run that holds the default pose
    (this cancels the legs' sag under gravity). In both engines the joint's own leg moves, by
    more than 2 mm, the same way (cosine > 0.99, lengths within 10 %), and the other feet stay
    put (< 0.1 mm)."""
    spec = robot_spec(robot)
    delta, steps = 0.1, 10
    pair = bodies(sim_body, spec, fixed_base=True)

    def feet_after(body, target):
        body.reset(joint_pos_rad=spec.default_pose_rad, **IN_THE_AIR)
        body.write(JointCommand(position_rad=target))
        body.step(steps * body.sim.substeps)
        return foot_positions(body), body.read().joint_pos_rad

    base = {e: feet_after(b, spec.default_pose_rad)[0] for e, b in pair.items()}
    legs_per_foot = spec.n_joints // len(spec.feet)  # 3 (minitaur 2) per leg, in feet order
    for j, name in enumerate(spec.joint_names):
        target = spec.default_pose_rad.copy()
        target[j] += delta
        moved = {}
        for engine, body in pair.items():
            feet, q = feet_after(body, target)
            assert q[j] - spec.default_pose_rad[j] > 0.05, f"{engine} {name} did not turn"
            moved[engine] = feet - base[engine]
        leg = j // legs_per_foot
        pb, mj = moved["pybullet"][leg], moved["mujoco"][leg]
        assert np.linalg.norm(pb) > 2e-3 and np.linalg.norm(mj) > 2e-3, name
        assert pb @ mj / (np.linalg.norm(pb) * np.linalg.norm(mj)) > 0.99, (name, pb, mj)
        assert np.linalg.norm(pb) == pytest.approx(np.linalg.norm(mj), rel=0.1), name
        for engine in ENGINES:
            others = np.delete(moved[engine], leg, axis=0)
            assert np.abs(others).max() < 1e-4, (engine, name)
        if robot == "servo_dog":
            axis, sign = SERVO_DOG_SIGNS[name.split("_")[1]]
            assert np.sign(pb[axis]) == np.sign(mj[axis]) == sign, (name, pb)
            assert abs(pb[axis]) > 0.5 * np.linalg.norm(pb), (name, pb)


# PD step response ------------------------------------------------------------------------------
STEP_TOLERANCE_RAD = 1e-4
# With armature: PyBullet's rotor (pybullet_body.py) also couples a joint to its parent's
# rotation through J / N, which MuJoCo's armature leaves out: measured 3e-4 .. 1.1e-3 rad.
ARMATURE_TOLERANCE_RAD = 2e-3
# With Coulomb friction: MuJoCo's soft frictionloss constraint against PyBullet's velocity
# motor: measured 2.4e-3 .. 2.8e-3 rad.
FRICTION_TOLERANCE_RAD = 5e-3
# Closed chains (minitaur's five-bar legs, with its DC motors): Bullet's point-to-point
# constraint against MuJoCo's soft equality connect: measured 3.8e-5 rad (0.3 rad step) and
# 1.2e-4 rad (1 rad, duty saturated).
CLOSURE_TOLERANCE_RAD = 5e-4
ARMATURE = DynamicsParams(armature_kg_m2=0.002)
NO_ARMATURE = DynamicsParams(armature_kg_m2=0.0)

STEP_CASES = {
    # id: (robot, joint index, step rad, dynamics, tolerance rad)
    # (servo_dog's spec has armature: armature 0 here keeps these cases about the servo model)
    "servo_dog-thigh": ("servo_dog", 1, 0.3, NO_ARMATURE, STEP_TOLERANCE_RAD),
    # kp * 1.0 = 4 N·m demanded, clipped to 1.5 N·m, speed held at the 6 rad/s no-load speed by
    # the torque-speed envelope: the nonlinear part of the servo model
    "servo_dog-thigh-saturated": ("servo_dog", 1, 1.0, NO_ARMATURE, STEP_TOLERANCE_RAD),
    "servo_dog-calf-latency-weak": ("servo_dog", 2, 0.3, DynamicsParams(
        latency_s=0.004, motor_strength=0.8, kp_scale=1.1, kd_scale=0.9, armature_kg_m2=0.0),
        STEP_TOLERANCE_RAD),
    # (explicit viscous damping needs the rotor's inertia: servo_dog's bare calf, ~8e-5 kg m^2,
    # is already near the explicit limit dt * (kd + damping) / I < 2 with kd alone)
    "servo_dog-calf-armature-damping": ("servo_dog", 2, 0.3, DynamicsParams(
        armature_kg_m2=0.002, joint_damping_nm_s_per_rad=0.05), ARMATURE_TOLERANCE_RAD),
    "a1-thigh": ("a1", 1, 0.3, DynamicsParams(), STEP_TOLERANCE_RAD),
    "mini_cheetah-thigh": ("mini_cheetah", 1, 0.3, DynamicsParams(), STEP_TOLERANCE_RAD),
    "servo_dog-thigh-armature": ("servo_dog", 1, 0.3, ARMATURE, ARMATURE_TOLERANCE_RAD),
    "servo_dog-thigh-armature-saturated": ("servo_dog", 1, 1.0, ARMATURE,
                                           ARMATURE_TOLERANCE_RAD),
    "a1-thigh-armature": ("a1", 1, 0.3, DynamicsParams(armature_kg_m2=0.01),
                          ARMATURE_TOLERANCE_RAD),
    "servo_dog-calf-armature-friction": ("servo_dog", 2, 0.3, DynamicsParams(
        armature_kg_m2=0.002, joint_friction_nm=0.05), FRICTION_TOLERANCE_RAD),
    "minitaur-motor-dc": ("minitaur", 0, 0.3, DynamicsParams(), CLOSURE_TOLERANCE_RAD),
    "minitaur-motor-dc-saturated": ("minitaur", 1, 1.0, DynamicsParams(),
                                    CLOSURE_TOLERANCE_RAD),
    "servo_dog-hip-everything": ("servo_dog", 0, 0.3, DynamicsParams(
        armature_kg_m2=0.003, joint_friction_nm=0.1, joint_damping_nm_s_per_rad=0.02,
        latency_s=0.01), FRICTION_TOLERANCE_RAD),
}


@pytest.mark.parametrize("case", list(STEP_CASES))
def test_pd_step_response_agrees_across_engines(robot_spec, sim_body, case):
    """Tolerance without armature or friction: 1e-4 rad (0.006°, one fifteenth of an XL430
    encoder tick of 2π/4096 = 1.5e-3 rad), on every joint, at every physics step, over 0.3 s.
    With armature 2e-3 rad and with Coulomb friction 5e-3 rad (the constants above say why).

    Why so tight: with the base fixed in the air nothing touches anything, and both engines run
    the same Python servo model (PD, torque clip, torque-speed envelope, latency) at sim_dt with
    explicit joint torques (viscous joint damping included), on the same inertias (the
    bodies reconcile URDF inertias the engines would otherwise repair differently), and both
    integrate with semi-implicit Euler. What remains is PyBullet's rotor links (1e-4 kg each on
    the joint's parent): measured max |difference| 2.5e-5 rad (1e-14 before the rotors).
    Before the PyBullet body copied MuJoCo's repair of mini_cheetah's invalid thigh inertia,
    that robot differed by 9e-3 rad."""
    robot, j, step, dynamics, tolerance = STEP_CASES[case]
    spec = robot_spec(robot)
    n_steps = 150  # 0.3 s at 2 ms
    traces = {}
    for engine, body in bodies(sim_body, spec, fixed_base=True).items():
        body.set_dynamics(dynamics)
        body.reset(joint_pos_rad=spec.default_pose_rad, **IN_THE_AIR)
        target = spec.default_pose_rad.copy()
        target[j] += step
        body.write(JointCommand(position_rad=target))
        trace = np.empty((n_steps, spec.n_joints))
        for k in range(n_steps):
            body.step(1)
            trace[k] = body.read().joint_pos_rad
        traces[engine] = trace
    diff = np.abs(traces["pybullet"] - traces["mujoco"]).max()
    assert diff < tolerance, f"max |PyBullet - MuJoCo| = {diff:.3g} rad"
    # and it is a real step response: the joint travels most of the way in both engines
    moved = traces["mujoco"][:, j] - spec.default_pose_rad[j]
    assert moved.max() > 0.7 * step
    assert abs(moved[0]) < 0.1 * step  # it starts from the default pose


# Base state conventions and contacts ----------------------------------------------------------
QUAT = np.array([np.cos(0.3), 0.1, 0.05, np.sin(0.3)]) / np.linalg.norm(
    [np.cos(0.3), 0.1, 0.05, np.sin(0.3)])
MOTION = dict(base_pos_m=[0.1, -0.2, 1.0], base_quat_wxyz=QUAT,
              base_lin_vel_m_s=[0.3, -0.2, 0.1], base_ang_vel_rad_s=[0.5, -0.4, 1.0])


@pytest.mark.parametrize("robot", ROBOTS)
def test_base_state_means_the_same_in_both_engines(robot_spec, sim_body, robot):
    """reset() then read() gives back the same trunk pose and velocities in both engines: the
    pose and velocity of the base LINK frame (where the IMU is), not of its centre of mass (a1's
    trunk centre of mass is 1.3 cm ahead of its frame, with tilted principal axes). After 0.2 s
    of free flight holding the pose, the engines still agree closely."""
    spec = robot_spec(robot)
    states = {}
    for engine, body in bodies(sim_body, spec).items():
        body.reset(joint_pos_rad=spec.default_pose_rad, **MOTION)
        s0 = body.read()
        np.testing.assert_allclose(s0.privileged.base_pos_m, MOTION["base_pos_m"], atol=1e-6)
        np.testing.assert_allclose(s0.imu_quat_wxyz, QUAT, atol=1e-6)
        rot_t = _matrix(QUAT).T  # world -> body
        np.testing.assert_allclose(s0.privileged.base_lin_vel_m_s,
                                   rot_t @ MOTION["base_lin_vel_m_s"], atol=1e-6)
        np.testing.assert_allclose(s0.gyro_rad_s, rot_t @ MOTION["base_ang_vel_rad_s"],
                                   atol=1e-6)
        body.write(JointCommand(position_rad=spec.default_pose_rad))
        for _ in range(10):
            body.step()
        states[engine] = body.read()
    a, b = states["pybullet"], states["mujoco"]
    # measured: 4e-6 m, 8e-5 (quaternion), 3e-4 m/s, 1.4e-3 rad/s (mini_cheetah, the worst)
    np.testing.assert_allclose(a.privileged.base_pos_m, b.privileged.base_pos_m, atol=1e-4)
    np.testing.assert_allclose(a.imu_quat_wxyz, b.imu_quat_wxyz, atol=1e-3)
    np.testing.assert_allclose(a.privileged.base_lin_vel_m_s, b.privileged.base_lin_vel_m_s,
                               atol=5e-3)
    np.testing.assert_allclose(a.gyro_rad_s, b.gyro_rad_s, atol=2e-2)
    np.testing.assert_allclose(a.joint_pos_rad, b.joint_pos_rad, atol=1e-3)


def _matrix(q):
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


@pytest.mark.parametrize("engine", ENGINES)
def test_contacts_right_after_a_reset_describe_the_new_pose(robot_spec, sim_body, engine):
    """read() straight after reset() must not report the previous episode's contacts."""
    spec = robot_spec("servo_dog")
    body = sim_body(spec, engine)
    body.reset(base_pos_m=[0, 0, body.spawn_height()], base_quat_wxyz=[1, 0, 0, 0],
               joint_pos_rad=spec.default_pose_rad)
    for _ in range(5):
        body.step()
    assert body.read().privileged.foot_contact.all()  # standing
    body.reset(joint_pos_rad=spec.default_pose_rad, **IN_THE_AIR)
    state = body.read()
    assert not state.privileged.foot_contact.any() and not state.privileged.trunk_contact
    # upside down on the ground: the trunk touches at once
    body.reset(base_pos_m=[0, 0, 0.02], base_quat_wxyz=[0, 1, 0, 0],
               joint_pos_rad=spec.default_pose_rad)
    assert body.read().privileged.trunk_contact


def test_feet_kicked_off_the_ground_stop_touching_in_step_with_mujoco(robot_spec, sim_body):
    """Minitaur standing, its trunk kicked up at 0.5 m/s: PyBullet keeps the parting feet's
    contact points for about 20 physics steps (up to ~4 mm apart), but they are no longer
    touching: the feet leave the ground within a step of MuJoCo's (measured: after 3 steps in
    both; counting every reported point, PyBullet's feet still touched after 10)."""
    spec = robot_spec("minitaur")
    left, pybullet_points = {}, []
    for engine in ENGINES:
        body = sim_body(spec, engine)
        body.reset_standing()
        for _ in range(25):
            body.write(JointCommand(position_rad=spec.default_pose_rad))
            body.step()
        body.push([0.0, 0.0, 0.5])
        for k in range(1, 11):
            body.step(1)
            if not body.read().privileged.foot_contact.any():
                left[engine] = k
                break
        if engine == "pybullet":
            pybullet_points = body.client.getContactPoints(body.robot)
    assert set(left) == set(ENGINES), left
    assert abs(left["pybullet"] - left["mujoco"]) <= 1, left
    assert pybullet_points and all(c[8] > 0 and c[9] == 0 for c in pybullet_points)


# control_dt validation ---------------------------------------------------------------------------
@pytest.mark.parametrize(("sim_dt", "control_dt", "substeps"), [
    (0.002, 0.02, 10), (0.001, 0.03, 30), (0.005, 0.015, 3), (0.0025, 0.02, 8), (0.01, 0.01, 1),
])
def test_whole_multiples_are_accepted(sim_dt, control_dt, substeps):
    assert SimConfig(sim_dt_s=sim_dt, control_dt_s=control_dt).substeps == substeps


@pytest.mark.parametrize(("sim_dt", "control_dt"), [
    (0.002, 0.005),  # 2.5 physics steps
    (0.003, 0.02),  # 6.67
    (0.002, 0.001),  # half a step
    (0.004, 0.03),  # 7.5
])
def test_control_dt_not_a_multiple_of_sim_dt_is_rejected(sim_dt, control_dt):
    with pytest.raises(ValueError) as err:
        SimConfig(sim_dt_s=sim_dt, control_dt_s=control_dt)
    message = str(err.value)
    assert "control_dt_s" in message and "sim_dt_s" in message
    assert str(control_dt) in message and str(sim_dt) in message
    with pytest.raises(ConfigError) as err:  # the same through a YAML-shaped config
        from_dict(EnvConfig, {"sim": {"sim_dt_s": sim_dt, "control_dt_s": control_dt}},
                  source="run.yaml")
    assert "run.yaml" in str(err.value) and str(control_dt) in str(err.value)


def test_an_unknown_friction_cone_is_rejected_by_name():
    with pytest.raises(ConfigError) as err:
        from_dict(EnvConfig, {"sim": {"friction_cone": "round"}}, source="run.yaml")
    assert "run.yaml" in str(err.value) and "friction_cone" in str(err.value)
    assert "'round'" in str(err.value)


@pytest.mark.parametrize("cone", ["engine", "pyramid", "elliptic"])
def test_both_engines_take_the_friction_cone_asked_for(robot_spec, sim_body, cone, monkeypatch):
    """MuJoCo's model option, PyBullet's enableConeFriction (which PyBullet does not report
    back: the call is recorded on its way to the real engine). "engine" leaves each its own
    default: PyBullet's cone, MuJoCo's pyramid."""
    import mujoco
    import pybullet

    asked = []
    real = pybullet.setPhysicsEngineParameter

    def record(*args, **kwargs):
        asked.append(kwargs.get("enableConeFriction"))
        return real(*args, **kwargs)

    monkeypatch.setattr(pybullet, "setPhysicsEngineParameter", record)
    spec = robot_spec("servo_dog")
    sim_body(spec, "pybullet", friction_cone=cone)
    assert [a for a in asked if a is not None] == [0 if cone == "pyramid" else 1]
    model = sim_body(spec, "mujoco", friction_cone=cone).model
    want = mujoco.mjtCone.mjCONE_ELLIPTIC if cone == "elliptic" else mujoco.mjtCone.mjCONE_PYRAMIDAL
    assert model.opt.cone == want


def test_nonpositive_timing_and_unknown_engine_are_rejected():
    with pytest.raises(ValueError, match="must be > 0"):
        SimConfig(sim_dt_s=0.0)
    with pytest.raises(ValueError, match="engine"):
        SimConfig(engine="bullet")


@pytest.mark.parametrize("engine", ENGINES)
def test_servo_dog_joints_stay_near_the_servo_speed(robot_spec, sim_body, engine):
    """Flailing (every joint commanded limit to limit, 100 times, on the ground): with the
    spec's XL430-class armature no joint exceeds 2.5 x the servo's 6 rad/s no-load speed;
    without it the light calf reached more than 10 x (measured 65-72 rad/s)."""
    spec = robot_spec("servo_dog")
    rng = np.random.default_rng(0)
    lo, hi = spec.lower_rad + 0.05, spec.upper_rad - 0.05
    speeds = {}
    for armature in (None, 0.0):
        body = sim_body(spec, engine)
        body.set_dynamics(DynamicsParams(armature_kg_m2=armature))
        body.reset_standing()
        fastest = 0.0
        for _ in range(100):
            body.write(JointCommand(position_rad=np.where(rng.random(12) < 0.5, lo, hi)))
            for _ in range(10):
                body.step(1)
                fastest = max(fastest, float(np.abs(body.read().joint_vel_rad_s).max()))
        speeds[armature] = fastest
    assert speeds[None] < 2.5 * 6.0, speeds
    assert speeds[0.0] > 5 * 6.0, speeds

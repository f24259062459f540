"""Two ideas for cheaper env steps (issue 2, "Speed matters"), measured side by side.

    python bench/engine_ideas.py [--steps 150] [--rounds 15] [--envs 1,4,8] [--threads 0,1,2]

1. MuJoCo, servo PD in the model (position actuators: gain kp, bias [0, -kp, -kd], force range
+-torque limit), so a control step is the targets held over `substeps` physics steps. Env-steps/s
of N envs (physics + actuator, no obs/reward): ours = N MuJoCoBody write() + step(), the Python
servo per physics step (today's path); bare = N x mj_step(nstep=substeps) on the PD model;
rollout tK = one mujoco.rollout.Rollout call for all N (pool of K threads, 0 = the caller),
chained from the last state; batch tK = mujoco.batch.Batch(nthread=K incl. the caller). Check:
1 s standing, 1 s random targets; our servo vs native PD in one continuous rollout (envelope
off / on; latency 2 substeps = old target held for the first 2 substeps); chained rollout and
Batch calls vs the same.
2. PyBullet: K robots in ONE world, robot-robot collisions masked out (collision group/mask),
one stepSimulation for all, vs K worlds (a BulletClient each); the same numpy PD, vectorised
over robots, by TORQUE_CONTROL every physics step. Robot physics steps/s with that PD I/O, and
counting only stepSimulation. Non-interaction: max joint gap, shared vs separate worlds (robots
1 m apart), and K robots spawned on one spot vs one robot alone.
Targets: default pose + uniform(+-amp), new every control step, the same for all variants.
Rounds interleave variants; cells are medians over rounds, ratios medians of per-round ratios.
"""

from __future__ import annotations

import argparse
import copy
import functools
import time

import mujoco
import numpy as np
from mujoco import batch as mj_batch
from mujoco import rollout as mj_rollout

from gaitforge.robots.spec import load_robot_spec
from gaitforge.robots.types import JointCommand
from gaitforge.sim.config import ActuatorConfig, SimConfig
from gaitforge.sim.mujoco_body import MuJoCoBody
from gaitforge.sim.pybullet_body import BulletClient, _quiet_c_output, pybullet

FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS.value
INTEGRATION = mujoco.mjtState.mjSTATE_INTEGRATION.value


def get_state(m, d, sig) -> np.ndarray:
    out = np.empty(mujoco.mj_stateSize(m, sig))
    mujoco.mj_getState(m, d, out, sig)
    return out


def targets(spec, rng, steps, n, amp, stand=0):
    t = spec.default_pose_rad + rng.uniform(-amp, amp, size=(steps, n, spec.n_joints))
    t[:stand] = spec.default_pose_rad
    return t


def timed_rounds(variants: dict, rounds: int) -> dict[str, np.ndarray]:
    """Run the variants (callables) interleaved, round by round; name -> (rounds, ...) results."""
    res = np.array([[run() for run in variants.values()] for _ in range(rounds)])
    return {name: res[:, i] for i, name in enumerate(variants)}


# Idea 1: MuJoCo ---------------------------------------------------------------------------------
def standing_body(spec, latency_s=0.0, envelope=True) -> MuJoCoBody:
    sim = SimConfig(engine="mujoco", actuator=ActuatorConfig(latency_s, envelope))
    body = MuJoCoBody(spec, sim)
    body.reset(base_pos_m=[0, 0, body.spawn_height()], base_quat_wxyz=[1, 0, 0, 0],
               joint_pos_rad=spec.default_pose_rad)
    body.configure()
    body.activate()
    return body


def pd_model(body: MuJoCoBody) -> mujoco.MjModel:
    """The body's model with its torque motors (fixed gain, no ctrl range) as PD servos."""
    m, spec = copy.copy(body.model), body.spec
    act = [m.actuator(n).id for n in spec.joint_names]
    m.actuator_biastype[act] = mujoco.mjtBias.mjBIAS_AFFINE
    m.actuator_gainprm[act, 0] = spec.kp
    m.actuator_biasprm[act, :3] = np.stack([0 * spec.kp, -spec.kp, -spec.kd], axis=1)
    m.actuator_forcerange[act] = np.stack([-spec.torque_limit_nm, spec.torque_limit_nm], 1)
    m.actuator_forcelimited[act] = True
    return m


def trajectory_check(spec, rng, amp):
    sim = SimConfig(engine="mujoco")
    S, stand = sim.substeps, round(1.0 / sim.control_dt_s)
    tg = targets(spec, rng, 2 * stand, 1, amp, stand=stand)[:, 0]
    ref = standing_body(spec)
    m, d0 = pd_model(ref), copy.copy(ref.data)
    d0.ctrl[:] = spec.default_pose_rad
    i0, s0 = get_state(m, d0, INTEGRATION), get_state(m, d0, FULL)

    def native(lat):  # one continuous rollout; the first `lat` substeps keep the old target
        ctrl = np.repeat(tg, S, axis=0)
        ctrl = np.concatenate([ctrl[:lat], ctrl[:len(ctrl) - lat]])  # tg[0] before the start
        states = mj_rollout.rollout(m, mujoco.MjData(m), s0[None], ctrl[None])[0][0]
        return states[S - 1::S, 8:1 + m.nq]  # FULLPHYSICS row: time, qpos, qvel, ...

    rows = []
    for label, lat, env in (("ours, envelope off, latency 0", 0, False),
                            ("ours, envelope on,  latency 0", 0, True),
                            ("ours, envelope off, latency 2 substeps", 2, False)):
        body, q = standing_body(spec, lat * sim.sim_dt_s, env), []
        for t in tg:
            body.write(JointCommand(position_rad=t))
            body.step()
            q.append(body.data.qpos[7:].copy())
        rows.append((label, np.array(q), native(lat)))
    roll, st, b = mj_rollout.Rollout(nthread=0), s0[None], mj_batch.Batch(m, 1, nthread=1)
    b.state[:] = i0
    ctrl, qpos, q_roll, q_batch = b.bind("ctrl"), b.bind("qpos"), [], []
    for t in tg:  # one rollout call per control step, a fresh MjData (warm start) each call
        st = roll.rollout(m, mujoco.MjData(m), st, t[None, None], nstep=S)[0][:, -1]
        q_roll.append(st[0, 8:1 + m.nq].copy())
        ctrl[:] = t
        b.step(nstep=S)
        q_batch.append(qpos[0, 7:].copy())
    rows += [("rollout, one call per control step", np.array(q_roll), rows[0][2]),
             ("Batch, one step() per control step", np.array(q_batch), rows[0][2])]
    print(f"\nIdea 1 check ({spec.name}): max |joint angle gap|, rad, vs native PD "
          f"(one continuous rollout)\n  {'':40s} {'1 s stand':>10s} {'+1 s random':>12s}")
    for label, a, n in rows:
        gap = np.abs(a - n)
        print(f"  {label:40s} {gap[:stand].max():10.2e} {gap.max():12.2e}")


def mj_variants(spec, n, steps, amp, threads) -> dict:
    """name -> callable: restore the common start state, time `steps` control steps of N envs."""
    bodies = [standing_body(spec) for _ in range(n)]
    m, S = pd_model(bodies[0]), bodies[0].sim.substeps
    s0, i0 = (np.stack([get_state(m, b.data, sig) for b in bodies]) for sig in (FULL, INTEGRATION))
    tg = targets(spec, np.random.default_rng(n), steps, n, amp)
    datas = [mujoco.MjData(m) for _ in range(n)]

    def timed(reset, step):
        reset()
        t0 = time.perf_counter()
        for t in tg:
            step(t)
        return time.perf_counter() - t0

    def restore(ds):
        return lambda: [mujoco.mj_setState(m, d, s, INTEGRATION)
                        for d, s in zip(ds, i0, strict=True)]

    def ours_step(t):  # latency 0: each write() takes effect at the next physics step
        for b, tt in zip(bodies, t, strict=True):
            b.write(JointCommand(position_rad=tt))
            b.step()

    def bare_step(t):
        for d, tt in zip(datas, t, strict=True):
            d.ctrl[:] = tt
            mujoco.mj_step(m, d, nstep=S)

    def rollout(k):  # state0 <- the last state of the previous call
        roll, rdatas = mj_rollout.Rollout(nthread=k), [mujoco.MjData(m) for _ in range(max(k, 1))]
        st0, ctrl, models = s0.copy(), np.empty((n, S, m.nu)), [m] * n
        state, sens = np.empty((n, S, s0.shape[1])), np.empty((n, S, m.nsensordata))

        def step(t):
            ctrl[:] = t[:, None, :]
            roll.rollout(models, rdatas, st0, ctrl, skip_checks=True, nstep=S, state=state,
                         sensordata=sens)
            st0[:] = state[:, -1]
        return functools.partial(timed, functools.partial(np.copyto, st0, s0), step)

    def batch(k):
        b = mj_batch.Batch(m, n, nthread=k)
        ctrl = b.bind("ctrl")

        def step(t):
            ctrl[:] = t
            b.step(nstep=S)
        return functools.partial(timed, functools.partial(np.copyto, b.state, i0), step)

    return {"ours": functools.partial(timed, restore([b.data for b in bodies]), ours_step),
            "bare": functools.partial(timed, restore(datas), bare_step),
            **{f"rollout t{k}": rollout(k) for k in threads},
            **{f"batch t{k}": batch(k) for k in threads if k}}


def idea1(spec, ns, steps, rounds, amp, threads):
    print(f"\nIdea 1: MuJoCo, {spec.name}, {SimConfig().substeps} substeps per control step; "
          f"env-steps/s and x ours (median per-round ratio); {steps} steps x {rounds} rounds")
    for n in ns:
        secs = timed_rounds(mj_variants(spec, n, steps, amp, threads), rounds)
        if n == ns[0]:
            print(f"{'N':>3s} " + " ".join(f"{h:>13s}" for h in secs))
        cells = [f"{n * steps / np.median(v):6.0f} {np.median(secs['ours'] / v):4.2f}x"
                 for v in secs.values()]
        print(f"{n:3d} " + " ".join(f"{c:>13s}" for c in cells))


# Idea 2: PyBullet -------------------------------------------------------------------------------
def pb_world(spec, sim, positions, masked):
    """One BulletClient with a ground plane and a robot at each position."""
    with _quiet_c_output():
        p = BulletClient(connection_mode=pybullet.DIRECT)
    p.setGravity(0, 0, -9.81)
    p.setPhysicsEngineParameter(fixedTimeStep=sim.sim_dt_s, deterministicOverlappingPairs=1)
    plane = p.createMultiBody(0, p.createCollisionShape(pybullet.GEOM_PLANE))
    robots = []
    for pos in positions:
        with _quiet_c_output():
            r = p.loadURDF(str(spec.description_path), pos,
                           flags=pybullet.URDF_USE_INERTIA_FROM_FILE)
        names = {p.getJointInfo(r, j)[1].decode(): j for j in range(p.getNumJoints(r))}
        ids = [names[n] for n in spec.joint_names]
        p.setJointMotorControlArray(r, ids, pybullet.VELOCITY_CONTROL, forces=[0.0] * len(ids))
        for link in range(-1, p.getNumJoints(r)):
            p.changeDynamics(r, link, linearDamping=0, angularDamping=0, jointDamping=0)
            if masked:  # robots (group 1) collide with mask 2 only: the ground
                p.setCollisionFilterGroupMask(r, link, 1, 2)
        p.resetJointStatesMultiDof(r, ids, [[q] for q in spec.default_pose_rad])
        robots.append(r)
    if masked:
        p.setCollisionFilterGroupMask(plane, -1, 2, 1)
    return p, robots, ids, p.saveState()


def pb_run(worlds, spec, tg, substeps, record=False):
    """Step all robots, numpy PD vectorised over them: (s, s in stepSimulation), or q if record."""
    kp, kd, lim = spec.kp, spec.kd, spec.torque_limit_nm
    slots = [(p, r, ids) for p, robots, ids, _ in worlds for r in robots]
    clients = [w[0] for w in worlds]
    for p, *_, state in worlds:
        p.restoreState(state)
    (q, dq), in_step, qs = np.empty((2, len(slots), spec.n_joints)), 0.0, []
    t0 = time.perf_counter()
    for t in tg:
        for _ in range(substeps):
            for i, (p, r, ids) in enumerate(slots):
                js = p.getJointStates(r, ids)
                q[i], dq[i] = [s[0] for s in js], [s[1] for s in js]
            tau = np.clip(kp * (t - q) - kd * dq, -lim, lim)
            for (p, r, ids), f in zip(slots, tau.tolist(), strict=True):
                p.setJointMotorControlArray(r, ids, pybullet.TORQUE_CONTROL, forces=f)
            s0 = time.perf_counter()
            for p in clients:
                p.stepSimulation()
            in_step += time.perf_counter() - s0
        if record:
            qs.append(q.copy())
    return np.array(qs) if record else (time.perf_counter() - t0, in_step)


def idea2(spec, ks, steps, rounds, amp):
    sim = SimConfig(engine="pybullet")
    S, rng, h = sim.substeps, np.random.default_rng(1), spec.standing_height_m + 0.02
    print(f"\nIdea 2: PyBullet, {spec.name}, robot physics steps/s (K x steps/s), "
          f"{steps} control steps x {S} substeps x {rounds} rounds")
    print(f"{'K':>3s} {'K worlds':>10s} {'one world':>10s} {'ratio':>6s} {'| in step:':>11s} "
          f"{'K worlds':>9s} {'one world':>10s} {'ratio':>6s} {'max|dq| vs alone':>17s}")
    for k in ks:
        pos = [[0.0, 1.0 * i, h] for i in range(k)]
        sep = [pb_world(spec, sim, [x], False) for x in pos]
        one = [pb_world(spec, sim, pos, True)]
        tg = targets(spec, rng, steps, k, amp)
        secs = timed_rounds({"sep": functools.partial(pb_run, sep, spec, tg, S),
                             "one": functools.partial(pb_run, one, spec, tg, S)}, rounds)
        med = {name: np.median(v, axis=0) for name, v in secs.items()}  # (total, in step)
        ratio = np.median(secs["sep"] / secs["one"], axis=0)
        q_sep, q_one = (pb_run(w, spec, tg, S, record=True) for w in (sep, one))
        # All K robots spawned on the same spot: masked, each must move as if alone.
        stack = [pb_world(spec, sim, [[0, 0, h]] * k, True)]
        alone = [pb_world(spec, sim, [[0, 0, h]], False)]
        q_stack = pb_run(stack, spec, np.repeat(tg[:, :1], k, axis=1), S, record=True)
        q_alone = pb_run(alone, spec, tg[:, :1], S, record=True)
        dev = max(np.abs(q_sep - q_one).max(), np.abs(q_stack - q_alone).max())
        rate = k * S * steps
        print(f"{k:3d} {rate / med['sep'][0]:10.0f} {rate / med['one'][0]:10.0f} "
              f"{ratio[0]:5.2f}x {'|':>11s} {rate / med['sep'][1]:9.0f} "
              f"{rate / med['one'][1]:10.0f} {ratio[1]:5.2f}x {dev:17.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robot", default="servo_dog")
    parser.add_argument("--steps", type=int, default=150, help="control steps per round")
    parser.add_argument("--rounds", type=int, default=15)
    ints = lambda text: [int(x) for x in text.split(",")]  # noqa: E731
    parser.add_argument("--envs", type=ints, default="1,4,8", help="N (idea 1), K (idea 2)")
    parser.add_argument("--threads", type=ints, default="0,1,2", help="rollout/Batch threads")
    parser.add_argument("--amp", type=float, default=0.15, help="random target range, rad")
    parser.add_argument("--skip", choices=["1", "2"], help="skip one idea")
    args = parser.parse_args()
    spec = load_robot_spec(args.robot)
    if args.skip != "1":
        idea1(spec, args.envs, args.steps, args.rounds, args.amp, args.threads)
        trajectory_check(spec, np.random.default_rng(2), args.amp)
    if args.skip != "2":
        idea2(spec, args.envs, args.steps, args.rounds, args.amp)


if __name__ == "__main__":
    main()

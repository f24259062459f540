"""Unplug and replug (`unplug:S@D`): the bus pty disappears S seconds in and comes back D
seconds later at the same path (a symlink re-pointed to a new pty).

Documented behaviour (HardwareBody, SerialTransport, safety layer):
- the read that meets the closed port fails ("vanished") and marks the link down; every later
  read tries one reconnect, spaced by the backoff, and reports each failure (body event
  `reconnect_failed`, "attempt k");
- meanwhile the safety watchdog counts failed ticks: DAMPING on the 5th (watchdog_damping_s
  0.1 s), OFF on the 25th (watchdog_off_s 0.5 s), latched;
- on reconnect (event `reconnected`) the body re-configures the servos with torque OFF,
  refuses every command but OFF (`refused_until_rearm`) and keeps failing its reads (so the
  safety layer latches too) until `body.rearm()`: nothing moves however long one waits;
- re-arming is an act of the operator: `body.rearm()` writes goal := measured pose, then
  torque on; `safety.rearm(state)` soft-starts from that pose. The goals start where the robot
  is, and move no faster than the rate limit.
The loop is `ManualLoop` (read -> safety -> write, zero actions) because re-arming happens
between ticks.
"""

from __future__ import annotations

import numpy as np

from gaitforge.hw_drivers.dynamixel import ControlTable as CT
from gaitforge.hw_drivers.dynamixel import Instruction
from gaitforge.hw_drivers.transport import Backoff
from gaitforge.robots.types import CommandMode

N_SERVOS = 12


def replug_offset(rig) -> int:
    """Byte offset in what the bus device received where the re-configuration after the replug
    starts: the first PING after the 12 of the first configure()."""
    data = bytes(rig.server.received)
    offset, pings = 0, 0
    for p in rig.packets():  # in stream order: find each one's bytes after the one before
        at = data.index(p.raw, offset)
        offset = at + len(p.raw)
        pings += p.instruction == Instruction.PING
        if pings == N_SERVOS + 1:
            return at
    raise AssertionError("no re-configuration after the replug on the wire")


def wire_between(rig, start: int, end: int) -> tuple[list, list]:
    """(goal writes, torque-enable writes) the device received in [start, end)."""
    return rig.writes(CT.GOAL_POSITION, start, end), rig.writes(CT.TORQUE_ENABLE, start, end)


def rearm(rig, loop) -> tuple[int, dict[int, int]]:
    """body.rearm() then safety.rearm(state); returns (byte offset of the rearm on the wire,
    Present Position of every servo just before it)."""
    rig.bus.ping(1)  # answered, so the device has read every byte sent so far (the body's
    # own reads fail until the rearm)
    at = len(rig.server.received)
    chain = rig.robot.chain
    present = {i: chain.table(i).get(CT.PRESENT_POSITION) for i in chain.ids}
    rig.body.rearm()
    loop.safety.rearm(rig.body.read())
    return at, present


def assert_resumes_from_the_measured_pose(rig, at: int, present: dict[int, int],
                                          pushed_rad: np.ndarray) -> None:
    """After the rearm: the first goal is each servo's present position to the count, torque
    comes on only after it, and the goals then ramp at the rate limit to the default pose."""
    goals, torque = wire_between(rig, at, None)
    assert goals[0] == present
    order = [(p.params[0] | p.params[1] << 8) for p in rig.packets(at)
             if p.instruction == Instruction.SYNC_WRITE]
    assert order.index(CT.GOAL_POSITION) < order.index(CT.TORQUE_ENABLE)
    assert torque[0] == {i: 1 for i in rig.robot.chain.ids}
    wire = rig.assert_wire_safe(at, from_rad=pushed_rad)
    lo = rig.spec.lower_rad + rig.safety_config.limit_margin_rad
    hi = rig.spec.upper_rad - rig.safety_config.limit_margin_rad
    np.testing.assert_allclose(wire[-1], np.clip(rig.spec.default_pose_rad, lo, hi),
                               atol=2 * np.pi / 4096)


def test_unplug_reports_reconnects_with_backoff_and_waits_for_rearm(rig):
    """unplug:1.0@0.6. Ticks f..f+3 hold, f+4 DAMPING, f+24 OFF (latched). The reconnect
    comes after the replug, on a backoff of 0.05, 0.1, 0.2, 0.4, 0.4 s; until rearm nothing
    but torque OFF reaches the wire and the robot, moved by hand meanwhile, stays put."""
    backoff = Backoff(initial_s=0.05, max_s=0.4)
    r = rig("unplug:1.0@0.6", backoff=backoff)
    loop = r.manual()
    loop.start()
    loop.run_until(lambda: loop.ticks[-1].failed, 100)
    f = len(loop.ticks) - 1
    assert f > 16  # unplugged while the policy ran
    loop.run_until(lambda: r.body.counters["reconnects"] == 1, 100)
    assert r.body.rearm_required and r.server.counts == {"unplug": 1, "replug": 1}

    t = loop.ticks
    assert all(x.failed for x in t[f:-1])
    assert [x.mode for x in t[f:f + 5]] == [CommandMode.POSITION] * 4 + [CommandMode.DAMPING]
    assert t[f + 4].phase == "damping" and t[f + 23].phase == "damping"
    assert t[f + 24].phase == "off" and t[f + 24].mode is CommandMode.OFF
    assert loop.safety.counts["watchdog_damping"] == loop.safety.counts["watchdog_off"] == 1

    pushed = r.spec.default_pose_rad + np.array([0.4, 0.6, -0.6] * 4)  # moved by hand
    r.kin.push(pushed)
    for _ in range(10):
        assert loop.tick().mode is CommandMode.OFF  # the safety layer stays latched too
    np.testing.assert_array_equal(r.kin.q, pushed)  # nothing moved it back
    chain = r.robot.chain
    assert not any(chain.table(i).torque_enabled for i in chain.ids)
    at, present = rearm(r, loop)
    goals, torque = wire_between(r, replug_offset(r), at)
    assert goals == [] and all(v == 0 for w in torque for v in w.values())

    kinds = [e[1] for e in r.body.events]
    assert kinds.count("write_error") == 1  # one event for the whole run of failed writes
    assert kinds.count("disconnected") == 1
    kinds = [k for k in kinds if k not in ("write_error", "disconnected")]
    n_failed = kinds.count("reconnect_failed")
    assert kinds == ["reconnect_failed"] * n_failed + ["reconnected", "rearm"] and n_failed >= 4
    attempts = [e for e in r.body.events if e[1] in ("reconnect_failed", "reconnected")]
    assert [e[2].split(":")[0] for e in attempts[:-1]] == [f"attempt {k}"
                                                          for k in range(1, n_failed + 1)]
    for k in range(1, len(attempts)):  # attempt k+1 no sooner than delay_s(k) after attempt k
        # (events are stamped after an attempt, whose own length varies by a fraction of a ms)
        assert attempts[k][0] - attempts[k - 1][0] >= backoff.delay_s(k) - 0.005
    bus_link = r.transports[0]
    assert bus_link.counters.disconnects == 1 and bus_link.generation == 1

    for _ in range(25):  # 16 ticks of soft start, then the default pose
        loop.tick()
    assert loop.safety.phase == "policy" and not r.body.rearm_required
    assert_resumes_from_the_measured_pose(r, at, present, pushed)


def test_a_short_unplug_latches_the_safety_layer_too(rig):
    """unplug:1.0@0.005: the port is back before the next read and the body reconnects after
    a couple of failed ticks. Its reads keep failing until rearm, so the safety watchdog
    still fires: DAMPING within 5 failed ticks, OFF within 25, latched; nothing reaches the
    wire until both are re-armed, and then the goals start from the measured pose."""
    r = rig("unplug:1.0@0.005", backoff=Backoff(initial_s=0.01, max_s=0.01))
    loop = r.manual()
    loop.start()
    loop.run_until(lambda: r.body.counters["reconnects"] == 1, 150)
    f = next(i for i, x in enumerate(loop.ticks) if x.failed)
    loop.run_until(lambda: loop.safety.phase == "off", 40)
    assert all(x.failed for x in loop.ticks[f:])
    modes = [x.mode for x in loop.ticks[f:]]
    assert CommandMode.DAMPING in modes[:5] and modes[-1] is CommandMode.OFF
    assert len(modes) <= 26
    held = r.kin.q.copy()
    for _ in range(10):
        assert loop.tick().mode is CommandMode.OFF  # latched
    np.testing.assert_array_equal(r.kin.q, held)
    at, present = rearm(r, loop)
    goals, torque = wire_between(r, replug_offset(r), at)
    assert goals == [] and all(v == 0 for w in torque for v in w.values())
    for _ in range(25):
        loop.tick()
    assert_resumes_from_the_measured_pose(r, at, present, held)


def test_the_deploy_loop_never_rearms_so_nothing_moves_after_a_replug(rig):
    """The same short unplug under `Deployment` / `run_episode`, which never calls rearm():
    after the replug no goal and no torque enable reach the wire for the rest of the episode,
    every non-OFF command is refused, and the servos end torque off (the body's reads fail
    until a rearm, so the watchdog ends the episode in damping, then off)."""
    r = rig("unplug:1.0@0.005", backoff=Backoff(initial_s=0.01, max_s=0.01))
    ep = r.deploy(2.0)
    assert r.body.counters["reconnects"] == 1 and r.body.rearm_required
    goals, torque = wire_between(r, replug_offset(r), None)
    assert goals == [] and all(v == 0 for w in torque for v in w.values())
    # the reconnect happens in the last read that found the link down; that tick's write is
    # the first refused
    reconnect_tick = max(e["tick"] for e in ep.events("read_error")
                         if "serial link down" in e["detail"])
    refused = sum(x.mode is not CommandMode.OFF for x in ep.ticks[reconnect_tick:])
    assert r.body.counters["refused_until_rearm"] == refused > 0
    chain = r.robot.chain
    assert not any(chain.table(i).torque_enabled for i in chain.ids)
    kinds = [e["kind"] for e in ep.log.events if e["tick"] == -1  # the body's, at the end
             and e["kind"] != "write_error"]
    assert kinds[-1] == "reconnected" and set(kinds[:-1]) <= {"reconnect_failed", "disconnected"}

"""The fault matrix: every fault the virtual devices inject, on real pseudo-terminals, while
`Deployment` / `run_episode` drive a `HardwareBody` over serial (the rig is in conftest.py).

Each test names the documented end state and the tick it must be reached by, checks the
counters and log events that record it, and checks, on the bytes the device received, that
no goal was non-finite, outside the limits minus the safety margin, or over-rate.

Tick arithmetic (control_dt 0.02 s; the safety layer's clock counts ticks exactly):
- soft start 0.3 s: ticks 0..15 ramp (tick 15 reaches the default pose), then the policy;
- a bus read re-asks the servos that did not answer up to REPLY_RETRIES (3) times, each after
  one reply timeout; a read that still fails while the policy runs is a HOLD: that tick
  commands the previous target and runs no policy, so it lengthens the episode by one tick;
- watchdog_damping_s 0.1 s = 5 ticks: if tick f is the first of a run of failed reads, tick
  f+4 commands DAMPING and the episode shuts down; exit_damping_s 0.1 s: OFF (torque off) is
  the last command, at tick f+9 or f+10 (the shutdown starts just after tick f+4's command,
  so it needs 5 or 6 ticks);
- a clean 2 s episode is 16 + 100 + 6 = 122 ticks.

    fault (Dynamixel bus)         documented end state                 by tick
    corrupt, bad_crc, truncate    retried in the tick, carry on        no tick lost
    drop, late                    retried; a read still failing holds  +1 tick per hold
    garbage before a header       skipped by the decoder, carry on     no tick lost
    servo silent at power-on      refuses to start (DxlTimeout)        before any torque on
    servo silent mid-run          damping, then torque off             f+4, then <= f+10
    Alert + hardware error        damping, then torque off             f+4, then <= f+10
    port vanishes                 damping, then torque off             f+4, then <= f+10
    board link: the byte faults   hold (no retries on that link)       +1 tick per hold
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from gaitforge.hw_drivers.backends import REPLY_RETRIES
from gaitforge.hw_drivers.dynamixel import ControlTable as CT
from gaitforge.hw_drivers.dynamixel import HardwareError, Instruction
from gaitforge.hw_drivers.dynamixel_bus import DxlTimeout
from gaitforge.hw_drivers.transport import Backoff
from gaitforge.hw_drivers.virtual import parse_faults
from gaitforge.robots.types import CommandMode

SOFT_START_TICKS = 16
ATTEMPTS = 1 + REPLY_RETRIES  # a bus request, asked again up to REPLY_RETRIES (3) times
POSITION, DAMPING, OFF = CommandMode.POSITION, CommandMode.DAMPING, CommandMode.OFF


def assert_holds(ep) -> int:
    """Every tick whose read failed while the policy ran repeated the previous target;
    returns how many there were."""
    held = 0
    for i, t in enumerate(ep.ticks):
        if t.failed and t.phase == "policy":
            assert t.mode is POSITION
            np.testing.assert_array_equal(t.position_rad, ep.ticks[i - 1].position_rad)
            held += 1
    return held


def assert_wire_is_the_commands(rig, ep) -> None:
    """Every POSITION command reached the device as one goal write (after activate()'s hold
    at the measured pose), to the count; and every goal is safe."""
    goals = rig.assert_wire_safe()
    sent = np.array([t.position_rad for t in ep.ticks if t.mode is POSITION])
    assert len(goals) == 1 + len(sent)
    assert np.abs(goals[1:] - sent).max() <= 0.5 * 2 * np.pi / 4096 + 1e-6


def assert_carried_on(rig, ep, policy_ticks: int) -> int:
    """Retry and carry on: the policy ran its whole duration, the watchdog never fired, every
    failed read was a hold and added exactly one tick, and the counters agree. Returns the
    number of failed reads."""
    r = ep.result
    assert r.end_phase == "finished" and r.policy_ticks == policy_ticks
    assert "watchdog_damping" not in r.safety_counts and ep.ticks[-1].mode is OFF
    held = assert_holds(ep)
    assert r.ticks - held in (SOFT_START_TICKS + policy_ticks + 5,
                              SOFT_START_TICKS + policy_ticks + 6)
    failed = sum(t.failed for t in ep.ticks)
    assert r.read_errors == failed == len(ep.events("read_error"))
    assert rig.body.counters["read_errors"] == failed
    assert_wire_is_the_commands(rig, ep)
    return failed


def last_run_of_failures(ep) -> int:
    """The first tick of the run of failed reads that ends the episode."""
    f = len(ep.ticks)
    while f > 0 and ep.ticks[f - 1].failed:
        f -= 1
    return f


def assert_tripped(ep, f: int) -> None:
    """Reads fail from tick f on: f..f+3 hold, f+4 is DAMPING (watchdog), OFF ends it by
    f+10; the safety counters and the log record the watchdog and the shutdown. (A stray
    failed read before f, on a loaded machine, must have been a hold.)"""
    t, r = ep.ticks, ep.result
    assert f == last_run_of_failures(ep) and f > SOFT_START_TICKS
    assert_holds(ep)
    for i in range(f, f + 4):
        assert t[i].mode is POSITION and t[i].phase == "policy"
        np.testing.assert_array_equal(t[i].position_rad, t[f - 1].position_rad)
    assert t[f + 4].mode is DAMPING and t[f + 4].phase == "damping"
    assert all(x.mode is DAMPING for x in t[f + 4:-1])
    assert t[-1].mode is OFF and t[-1].phase == "finished" and f + 9 <= len(t) - 1 <= f + 10
    assert r.safety_counts["watchdog_damping"] == 1 and r.end_phase == "finished"
    assert [e["tick"] for e in ep.events("watchdog_damping")] == [f + 4]
    assert ep.events("shutdown")[0]["detail"] == "from phase damping"
    assert r.read_errors == sum(x.failed for x in t) == len(ep.events("read_error"))


def sync_writes(rig) -> list[tuple[int, set[int]]]:
    """(address, set of values) of every SYNC_WRITE the bus device received, in order."""
    out = []
    for p in rig.packets():
        if p.instruction == Instruction.SYNC_WRITE:
            address, n = p.params[0] | p.params[1] << 8, p.params[2] | p.params[3] << 8
            chunks = [p.params[k + 1:k + 1 + n] for k in range(4, len(p.params), 1 + n)]
            out.append((address, {int.from_bytes(c, "little") for c in chunks}))
    return out


def assert_wire_damps_then_disables(rig) -> None:
    """On the wire: the last goal, then P gain 0 for all (damping), then torque off for all,
    and no goal after the damping began."""
    w = sync_writes(rig)
    last_goal = max(i for i, (a, _) in enumerate(w) if a == CT.GOAL_POSITION)
    damp = [i for i, (a, v) in enumerate(w) if a == CT.POSITION_P_GAIN and v == {0}]
    off = [i for i, (a, v) in enumerate(w) if a == CT.TORQUE_ENABLE and v == {0}]
    assert damp and off and last_goal < damp[0] < off[-1]
    assert w[-1] == (CT.TORQUE_ENABLE, {0})


# ---- byte faults on the Dynamixel bus: retry inside the tick, and carry on -------------------
def test_corrupted_bytes_are_retried_and_the_episode_carries_on(rig):
    """corrupt:0.05 (one bit of 5 % of the replies). Documented: retry and carry on. A damaged
    reply is re-asked within the same tick (up to 3 retries), so the policy runs all 100
    ticks; a read that still fails is a hold, never 5 in a row: the watchdog stays quiet."""
    r = rig("corrupt:0.05")
    ep = r.deploy(2.0)
    assert_carried_on(r, ep, 100)
    assert r.server.counts["corrupt"] >= 20
    assert r.bus.retries_used >= 1 and r.bus.crc_errors + r.bus.timeouts >= 1


def test_bad_crc_replies_are_rejected_counted_and_retried(rig):
    """bad_crc:0.05. Documented: retry and carry on, as for corruption. Each damaged reply is
    counted as a CRC error (the ones a timeout flushed unread excepted: at most 12 each)."""
    r = rig("bad_crc:0.05")
    ep = r.deploy(2.0)
    assert_carried_on(r, ep, 100)
    injected = r.server.counts["bad_crc"]
    assert injected >= 20 and r.bus.retries_used >= 1
    assert injected - 12 * r.bus.timeouts <= r.bus.crc_errors <= injected


def test_truncated_replies_are_retried_and_the_episode_carries_on(rig):
    """truncate:0.05. Documented: retry and carry on. A short reply either swallows the next
    one (CRC error) or leaves the bus waiting (timeout); both are re-asked in the same tick."""
    r = rig("truncate:0.05")
    ep = r.deploy(2.0)
    assert_carried_on(r, ep, 100)
    assert r.server.counts["truncate"] >= 20
    assert r.bus.retries_used >= 1 and r.bus.crc_errors + r.bus.timeouts >= 1


def test_dropped_replies_are_re_asked_and_a_lost_read_is_a_hold(rig):
    """drop:0.3. Documented: the missing servos are re-asked up to 3 times within the tick; a
    read that still misses one (0.3^4 a servo: about 1 tick in 10 here) is a hold: the tick
    commands the previous target and runs no policy. Fewer than 5 in a row: no damping, and
    the episode completes."""
    r = rig("drop:0.3")
    ep = r.deploy(1.0)
    failed = assert_carried_on(r, ep, 50)
    assert failed >= 1 and assert_holds(ep) >= 1  # the hold really happened
    assert r.bus.timeouts >= 1 and r.server.counts["drop"] >= 20
    assert all("no reply from servo" in e["detail"] for e in ep.events("read_error"))


def test_late_replies_are_timed_out_re_asked_and_carried_on(rig):
    """late:0.1@40 (10 % of the replies 40 ms late, twice the reply timeout). Documented:
    retry and carry on: the late servo is re-asked within the tick; the stale reply, when it
    comes, is flushed or ignored."""
    r = rig("late:0.1@40")
    ep = r.deploy(1.0)
    assert_carried_on(r, ep, 50)
    assert r.server.counts["late"] >= 10 and r.bus.timeouts >= 1 and r.bus.retries_used >= 1


def test_garbage_before_a_header_is_skipped_and_counted(rig):
    """garbage:0.1 (1-8 random bytes before 10 % of the replies). Documented: carry on; the
    decoder skips to the next header: no reply is taken for damaged, no CRC error, and the
    garbage is counted (bytes a timeout flushed unread excepted: at most 12 replies' worth)."""
    r = rig("garbage:0.1")
    ep = r.deploy(2.0)
    assert_carried_on(r, ep, 100)
    assert r.server.counts["garbage"] >= 40
    assert r.bus.garbage_bytes >= r.server.counts["garbage"] - 12 * r.bus.timeouts
    assert r.bus.crc_errors == 0


# ---- protocol faults and a vanished port: damping, then torque off ---------------------------
def test_a_servo_silent_from_power_on_stops_the_start_before_any_torque(rig):
    """silent:4. Documented: configure() pings every servo; servo 4's ping is asked 4 times
    (1 + REPLY_RETRIES) and the deploy refuses to start with DxlTimeout naming it. No torque
    enable and no goal ever reaches the wire; the robot does not move."""
    r = rig("silent:4")
    with pytest.raises(DxlTimeout, match=f"no reply from servo 4 to PING after {ATTEMPTS} "):
        r.deploy(1.0)
    pings = [p.dxl_id for p in r.packets() if p.instruction == Instruction.PING]
    assert pings == [1, 2, 3] + [4] * ATTEMPTS
    assert all(v == 0 for w in r.writes(CT.TORQUE_ENABLE) for v in w.values())
    assert len(r.goals()) == 0
    np.testing.assert_array_equal(r.kin.q, r.start_pose_rad)


def test_a_servo_falling_silent_mid_run_ends_in_damping_then_torque_off(rig):
    """Servo 4 stops answering after tick 40 (the chain's `silent_ids`, set between ticks).
    Documented: every sync read then fails after 4 attempts (DxlTimeout naming servo 4); the
    first failed read is tick 41, DAMPING at tick 45, OFF by tick 51. The silent servo still
    obeys: it ends torque off with the others."""
    r = rig()

    def go_silent(i):
        if i == 40:
            r.robot.chain.silent_ids.add(4)

    ep = r.deploy(2.0, on_tick=go_silent)
    assert_tripped(ep, 41)
    assert all(f"no reply from servo 4 to SYNC_READ after {ATTEMPTS}" in e["detail"]
               for e in ep.events("read_error")[-len(ep.ticks) + 41:])
    assert r.bus.timeouts >= ATTEMPTS * (len(ep.ticks) - 41)
    assert r.body.counters["read_errors"] == ep.result.read_errors
    assert_wire_is_the_commands(r, ep)
    assert_wire_damps_then_disables(r)
    chain = r.robot.chain
    assert not any(chain.table(i).torque_enabled for i in chain.ids)
    assert all(chain.table(i).get(CT.POSITION_P_GAIN) == 0 for i in chain.ids)


def test_an_alert_with_a_hardware_error_ends_in_damping_then_torque_off(rig):
    """alert:5@0x20 one second in (Overload, which is in Shutdown(63)). Documented: servo 5
    turns its own torque off at once and flags Alert in every status; the host takes the
    Alert as a failed read (DxlStatusError naming servo 5, no retry), so DAMPING comes on the
    5th such tick and OFF by the 11th. Hardware Error Status then reads 0x20."""
    r = rig("alert:5@0x20", alert_after_s=1.0)
    ep = r.deploy(2.0)
    f = last_run_of_failures(ep)  # the alert came while the policy ran
    assert_tripped(ep, f)
    assert all("servo 5: SYNC_READ -> Alert" in e["detail"]
               for e in ep.events("read_error")[-(len(ep.ticks) - f):])
    assert r.body.counters["read_errors"] == ep.result.read_errors
    assert_wire_is_the_commands(r, ep)
    assert_wire_damps_then_disables(r)
    chain = r.robot.chain
    assert chain.table(5).hardware_error == HardwareError.OVERLOAD
    assert r.bus.hardware_error_status(5) == HardwareError.OVERLOAD  # the cause, read back
    assert not any(chain.table(i).torque_enabled for i in chain.ids)


def test_a_vanished_port_ends_in_damping_then_off_and_reconnects_with_backoff(rig):
    """vanish:1.0 (the bus pty closes for good one second in). Documented: the read (or write)
    that meets the closed port fails and marks the link down; each later read tries one
    reconnect, spaced by the backoff (0.05, 0.1, 0.2 s ...), and fails; DAMPING on the 5th
    failed tick, OFF by the 11th. Every write from then on fails and is counted. The servos
    need no host to stop: their bus watchdog (100 ms) is armed."""
    r = rig("vanish:1.0")
    ep = r.deploy(2.0)
    f = last_run_of_failures(ep)
    assert r.server.counts == {"vanish": 1}
    assert_tripped(ep, f)
    writes_after = len(ep.ticks) - f + 1  # one a tick from f on, and deactivate()'s OFF
    assert r.body.counters["write_errors"] - writes_after in (0, 1)
    assert any("vanished" in e["detail"] for e in ep.log.events)
    assert "serial link down (reconnecting)" in ep.events("read_error")[-1]["detail"]
    events = [e for e in r.body.events if e[1] == "reconnect_failed"]
    assert len(events) >= 1 and not any(e[1] == "reconnected" for e in r.body.events)
    assert [e[2].split(":")[0] for e in events] == [f"attempt {k}" for k in
                                                    range(1, len(events) + 1)]
    backoff = Backoff()
    for k in range(1, len(events)):
        assert events[k][0] - events[k - 1][0] >= backoff.delay_s(k) - 0.005  # stamped after
    assert len(ep.events("reconnect_failed")) == len(events)  # in the log too
    r.assert_wire_safe()
    chain = r.robot.chain
    assert all(chain.table(i).get(CT.BUS_WATCHDOG) == 5 for i in chain.ids)  # 5 x 20 ms
    assert sorted(chain.check_watchdog(time.monotonic())) == chain.ids  # all stop by themselves


# ---- the same byte faults on the board link: no retries, so each is a hold -------------------
@pytest.mark.parametrize("fault", ["corrupt:0.08", "bad_crc:0.08", "truncate:0.08",
                                   "drop:0.08", "late:0.08@40", "garbage:0.1"])
def test_board_link_faults_are_holds(rig, fault):
    """The board protocol has sequence numbers but no retries: a STATE that is lost, damaged or
    late is one failed read (BoardTimeout), i.e. one hold tick, and the episode carries on.
    Garbage lands between frame delimiters and costs nothing. Faults start after tick 0: the
    start-up reads are not retried (see the report). Reply timeout 20 ms (see conftest)."""
    r = rig(protocol="board")

    def faults_on(i):
        if i == 0:
            r.server.faults = parse_faults(fault)

    ep = r.deploy(1.0, on_tick=faults_on)
    failed = assert_carried_on(r, ep, 50)
    name = fault.split(":")[0]
    assert r.server.counts[name] >= 3
    link = r.body.backend.link
    assert failed == link.timeouts
    if name == "garbage":
        assert failed == 0 and link.bad_frames + link.crc_errors >= 1
    else:
        assert failed >= 1 and assert_holds(ep) >= 1
        assert all("BoardTimeout" in e["detail"] for e in ep.events("read_error"))


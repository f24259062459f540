"""Episode logger: exact round trip, the frame format by hand, torn tails at every byte offset,
corruption, kill -9 mid-episode, replay transitions, writer errors and the inspect summary."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from gaitforge.control.logger import (
    MAGIC,
    TIMING_FIELDS,
    EpisodeLogger,
    LogFormatError,
    LogSpaceError,
    LogWriteError,
    check_free_space,
    iter_records,
    read_log,
    summarize,
    transitions,
)
from gaitforge.robots.types import CommandMode, JointCommand, PrivilegedState, RobotState

NJ, OBS = 12, 45  # servo_dog: 12 joints, observation of 3 + 3 + 12 + 12 + 12 + 3

# One deterministic tick, as source text: the kill -9 child runs the very same function.
TICK_VALUES_SRC = '''
def tick_values(k, nj=12, obs_dim=45):
    j = np.arange(nj, dtype=np.float64)
    state = None if k % 10 == 3 else RobotState(
        time_s=0.02 * k, joint_pos_rad=k + 0.01 * j, joint_vel_rad_s=-k - 0.5 * j,
        imu_quat_wxyz=np.array([1.0, 0.1 * k, 0.2, 0.3]), gyro_rad_s=np.array([k, 2.0, 3.0]),
        accel_m_s2=np.array([0.0, k / 3.0, 9.81]),
        joint_torque_nm=None if k % 2 else 0.1 * k * j)
    obs = None if k % 7 == 0 else (k + np.arange(obs_dim)) / 7.0
    action = None if k < 5 else np.sin(k + j)
    mode = (CommandMode.POSITION, CommandMode.DAMPING, CommandMode.OFF)[k % 3]
    cmd = JointCommand(position_rad=np.cos(k + j), mode=mode,
                       kp_nm_per_rad=None if k % 4 else np.full(nj, 4.0 + k),
                       kd_nm_s_per_rad=None if k % 5 else np.full(nj, 0.06 * k),
                       torque_ff_nm=None if k % 6 else 1e-3 * j)
    timing = {"deadline_s": 0.02 * k, "lateness_s": 1e-4 * (k % 9), "work_s": 1e-3 + 1e-6 * k,
              "skipped": k % 11 == 10}
    return state, obs, action, cmd, timing
'''
_ns = {"np": np, "RobotState": RobotState, "JointCommand": JointCommand,
       "CommandMode": CommandMode}
exec(TICK_VALUES_SRC, _ns)
tick_values = _ns["tick_values"]
NAN = np.nan


def expected_row(k, nj=NJ, obs_dim=OBS) -> dict:
    """What read_log must give back for tick k: the inputs, NaN wherever they were None."""
    state, obs, action, cmd, timing = tick_values(k, nj, obs_dim)
    full = lambda v, n: np.full(n, NAN) if v is None else np.asarray(v, float)  # noqa: E731
    row = {"tick": k, "state_valid": state is not None, "observation": full(obs, obs_dim),
           "action": full(action, nj), "command_position_rad": cmd.position_rad,
           "command_mode": {"position": 0, "damping": 1, "off": 2}[cmd.mode.value],
           "command_kp_nm_per_rad": full(cmd.kp_nm_per_rad, nj),
           "command_kd_nm_s_per_rad": full(cmd.kd_nm_s_per_rad, nj),
           "command_torque_ff_nm": full(cmd.torque_ff_nm, nj)}
    row.update({key: timing[key] for key in TIMING_FIELDS})
    for name, n in (("time_s", 1), ("joint_pos_rad", nj), ("joint_vel_rad_s", nj),
                    ("joint_torque_nm", nj), ("imu_quat_wxyz", 4), ("gyro_rad_s", 3),
                    ("accel_m_s2", 3)):
        value = None if state is None else getattr(state, name)
        row[name] = NAN if (n == 1 and value is None) else full(value, n) if n > 1 else value
    return row


def assert_rows(log, ks, nj=NJ, obs_dim=OBS):
    assert log.ticks["tick"].tolist() == list(ks)
    for i, k in enumerate(ks):
        for name, value in expected_row(k, nj, obs_dim).items():
            np.testing.assert_array_equal(log.ticks[name][i], value, err_msg=f"{name} @ {k}")


def write_log(path, n_ticks, *, nj=NJ, obs_dim=OBS, events=(), summary=None, interrupted=False,
              **kw):
    logger = EpisodeLogger(path, {"robot": "servo_dog", "body": "sim", "bundle_hash": "ab12"},
                           n_joints=nj, obs_dim=obs_dim, **kw)
    for k in range(n_ticks):
        logger.log_tick(k, *tick_values(k, nj, obs_dim))
        for tick, kind in events:
            if tick == k:
                logger.log_event(k, kind, f"{kind} at {k}", 0.02 * k)
    if interrupted:  # the loop raised: flushed and fsynced, but no clean-end record
        with pytest.raises(KeyboardInterrupt), logger:
            raise KeyboardInterrupt
    else:
        logger.close(summary)
    return Path(path)


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """Parse the framing by hand: (offset, payload) of every record after the magic."""
    out, o = [], len(MAGIC)
    while o < len(data):
        head = data[o: o + 4]
        (n,) = struct.unpack("<I", head)
        assert struct.unpack("<I", data[o + 4: o + 8])[0] == zlib.crc32(head)
        payload = data[o + 8: o + 8 + n]
        assert struct.unpack("<I", data[o + 8 + n: o + 12 + n])[0] == zlib.crc32(payload)
        out.append((o, payload))
        o += 12 + n
    assert o == len(data)
    return out


def test_round_trip_is_exact_with_nan_where_none(tmp_path):
    path = write_log(tmp_path / "ep.gflog", 100, events=[(20, "watchdog"), (50, "tilt_estop")],
                     summary={"reason": "time_limit", "return": 1.5})
    log = read_log(path)
    assert_rows(log, range(100))
    assert log.ticks["joint_pos_rad"].shape == (100, 12)
    assert log.ticks["observation"].shape == (100, 45)
    assert log.ticks["tick"].shape == (100,) and log.ticks["tick"].dtype == np.int64
    assert log.ticks["state_valid"].dtype == bool and log.ticks["state_valid"].sum() == 90
    assert log.events == [
        {"tick": 20, "kind": "watchdog", "detail": "watchdog at 20", "time_s": 0.4},
        {"tick": 50, "kind": "tilt_estop", "detail": "tilt_estop at 50", "time_s": 1.0}]
    assert log.complete and log.torn_tail is None
    assert log.summary["reason"] == "time_limit" and log.summary["return"] == 1.5
    assert log.summary["n_ticks"] == 100 and "end_time" in log.summary
    m = log.metadata
    assert (m["robot"], m["body"], m["bundle_hash"]) == ("servo_dog", "sim", "ab12")
    assert (m["format_version"], m["n_joints"], m["obs_dim"]) == (1, 12, 45)
    assert m["start_time"].endswith("+00:00")  # ISO, UTC
    sizes = {f["name"]: f["size"] for f in m["tick_fields"]}
    # 1 tick + 4 timing + valid + time + 3 x 12 joints + 4 + 3 + 3 + 45 obs + 12 action
    # + command: 12 position + mode + 3 x 12 gains/feed-forward + velocity command 3
    # = 7 + 36 + 10 + 57 + 49 + 3 = 162
    assert sum(sizes.values()) == 162 and sizes["imu_quat_wxyz"] == 4
    assert sizes["velocity_command"] == 3


def test_frames_follow_the_documented_format_and_no_privileged_state(tmp_path):
    path = tmp_path / "ep.gflog"
    logger = EpisodeLogger(path, {"robot": "servo_dog"}, n_joints=2, obs_dim=3)
    state, obs, action, cmd, timing = tick_values(6, 2, 3)
    state.privileged = PrivilegedState(np.array([0, 0, 0.3]), np.ones(3), np.ones(3),
                                       np.ones(4, bool), 0.8, False)
    logger.log_tick(6, state, obs, action, cmd, timing)
    logger.log_event(6, "watchdog", "late", 0.12)
    logger.close()
    data = path.read_bytes()
    assert data[:8] == MAGIC == b"GFLOG\x00\x01\n"
    kinds = [p[:1] for _, p in frames(data)]
    assert kinds == [b"M", b"T", b"E", b"Z"]
    (_, meta), (_, tick), (_, event), _ = frames(data)
    names = [f["name"] for f in json.loads(meta[1:])["tick_fields"]]
    assert not any("privileged" in n or "base_" in n or "contact" in n for n in names)
    # 1 + 4 + 1 + 1 + 3*2 + 4 + 3 + 3 + 3 obs + 2 action + 2 + 1 + 3*2 + 3 velocity command
    # = 40 float64 values
    values = np.frombuffer(tick[1:], "<f8")
    assert len(values) == 40 and values[0] == 6.0 and values[5] == 1.0  # tick, state_valid
    assert np.isnan(values[-3:]).all()  # no velocity command given: NaN
    assert json.loads(event[1:]) == {"tick": 6, "kind": "watchdog", "detail": "late",
                                     "time_s": 0.12}


@pytest.mark.parametrize("interrupted", [False, True], ids=["after_Z", "after_T"])
def test_truncated_at_every_byte_of_the_last_record_reads_the_rest(tmp_path, interrupted):
    full = write_log(tmp_path / "full.gflog", 4, nj=2, obs_dim=3, interrupted=interrupted)
    data = full.read_bytes()
    last = frames(data)[-1][0]
    ticks_before = range(3) if interrupted else range(4)
    cut_path = tmp_path / "cut.gflog"
    for cut in range(last, len(data)):
        cut_path.write_bytes(data[:cut])
        log = read_log(cut_path)
        assert not log.complete
        assert_rows(log, ticks_before, 2, 3)
        expected = None if cut == last else {"offset": last, "bytes_skipped": cut - last}
        assert log.torn_tail == expected, cut
    records = iter_records(cut_path)
    assert [k for k, _ in records] == ["M"] + ["T"] * len(ticks_before)
    assert records.torn_tail == {"offset": last, "bytes_skipped": len(data) - 1 - last}


def test_flipped_byte_in_last_record_is_a_torn_tail_in_a_middle_one_corruption(tmp_path):
    data = write_log(tmp_path / "full.gflog", 4, nj=2, obs_dim=3).read_bytes()
    offsets = [o for o, _ in frames(data)]
    bad = tmp_path / "bad.gflog"
    last = offsets[-1]
    for pos in (last + 8, last + 9, len(data) - 6, len(data) - 1):  # payload and its CRC
        bad.write_bytes(data[:pos] + bytes([data[pos] ^ 0x40]) + data[pos + 1:])
        log = read_log(bad)
        assert log.torn_tail == {"offset": last, "bytes_skipped": len(data) - last}
        assert not log.complete and len(log) == 4
    middle = offsets[2]  # the second tick
    pos = middle + 8 + 50
    bad.write_bytes(data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1:])
    with pytest.raises(LogFormatError, match=rf"bad\.gflog.*offset {middle}\b"):
        read_log(bad)
    pos = offsets[1] + 1  # a length byte of the first tick: the header CRC catches it
    bad.write_bytes(data[:pos] + b"\xff" + data[pos + 1:])
    with pytest.raises(LogFormatError, match=rf"header at byte offset {offsets[1]}\b"):
        read_log(bad)


def test_zero_filled_tail_is_torn_and_wrong_magic_raises(tmp_path):
    data = write_log(tmp_path / "full.gflog", 2, nj=2, obs_dim=3).read_bytes()
    padded = tmp_path / "padded.gflog"
    padded.write_bytes(data + bytes(100))  # a crash can leave allocated-but-unwritten zeros
    log = read_log(padded)
    assert log.complete and log.torn_tail == {"offset": len(data), "bytes_skipped": 100}
    other = tmp_path / "other.bin"
    other.write_bytes(b"GFLOG\x00\x02\n" + data[8:])  # a future format version
    with pytest.raises(LogFormatError, match=r"other\.bin"):
        read_log(other)
    other.write_bytes(b"")
    with pytest.raises(LogFormatError, match=r"other\.bin"):
        list(iter_records(other))


CHILD = """
import sys, time
import numpy as np
from gaitforge.control.logger import EpisodeLogger
from gaitforge.robots.types import CommandMode, JointCommand, RobotState
{src}
logger = EpisodeLogger(sys.argv[1], {{"robot": "servo_dog"}}, n_joints=12, obs_dim=45,
                       flush_every_s=0.005)
for k in range(10**6):
    logger.log_tick(k, *tick_values(k))
    if k % 10 == 9:
        print(k + 1, flush=True)
    time.sleep(0.0005)
"""


def test_kill_9_mid_episode_leaves_a_readable_consecutive_prefix(tmp_path):
    path = tmp_path / "killed.gflog"
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(src=TICK_VALUES_SRC), str(path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:  # ticks handed to the logger, as the child counts them
            if int(line) >= 300:
                break
        deadline = time.monotonic() + 60.0
        while len(read_log(path)) < 200:  # read while the child writes: torn tails are normal
            assert time.monotonic() < deadline, "the writer never flushed 200 ticks"
            time.sleep(0.01)
        assert proc.poll() is None, "the child should still be mid-episode"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    log = read_log(path)
    assert not log.complete and log.summary is None
    assert len(log) >= 200
    assert_rows(log, range(len(log)))
    if log.torn_tail is not None:
        assert log.torn_tail["offset"] + log.torn_tail["bytes_skipped"] == path.stat().st_size


def _tiny_tick(logger, k, obs, action):
    """2 joints, obs of 2: obs = (k, 10k) when built; action = (k/10, -k/10) when run."""
    state = RobotState(0.02 * k, np.array([k, 1.0]), np.zeros(2), np.array([1.0, 0, 0, 0]),
                       np.zeros(3), np.array([0, 0, 9.81]))
    timing = dict(deadline_s=0.02 * k, lateness_s=0.0, work_s=0.001, skipped=0)
    logger.log_tick(k, state, np.array([k, 10.0 * k]) if obs else None,
                    np.array([k / 10, -k / 10]) if action else None,
                    JointCommand(np.zeros(2)), timing)


def test_transitions_pair_policy_ticks_with_next_observations(tmp_path):
    # 0-2 soft start (no policy), 3-8 policy, the tilt e-stop latches at 8 (the safety layer
    # overrides the action the policy gave at 8, so 8 starts no pair), 9 damping, no policy.
    with EpisodeLogger(tmp_path / "a.gflog", {}, n_joints=2, obs_dim=2) as logger:
        for k in range(10):
            _tiny_tick(logger, k, obs=True, action=3 <= k <= 8)
            if k == 8:
                logger.log_event(8, "tilt_estop", "tilt 1.2 rad", 0.16)
            if k == 5:
                logger.log_event(5, "watchdog", "late", 0.10)  # not terminal
    tr = transitions(read_log(tmp_path / "a.gflog"))
    assert tr["tick"].tolist() == [3, 4, 5, 6, 7]
    np.testing.assert_array_equal(tr["obs"], [[k, 10 * k] for k in (3, 4, 5, 6, 7)])
    np.testing.assert_array_equal(tr["next_obs"], [[k, 10 * k] for k in (4, 5, 6, 7, 8)])
    np.testing.assert_array_equal(tr["action"], np.float32([[k / 10, -k / 10] for k in
                                                            (3, 4, 5, 6, 7)]))
    assert tr["obs"].dtype == tr["action"].dtype == tr["next_obs"].dtype == np.float32
    assert tr["done"].tolist() == [False, False, False, False, True]
    assert tr["truncated"].tolist() == [False] * 5
    np.testing.assert_array_equal(tr["joint_pos_rad"][:, 0], [3, 4, 5, 6, 7])  # state at t
    assert tr["time_s"].tolist() == [0.06, 0.08, 0.1, 0.12, 0.14]

    # policy 0-4, stops at 5 (no fault: a gap), runs 6-7 and 9; at 8 no observation was built (no
    # policy), so 7 pairs with nothing; 9 is the last tick: its policy tick has no t+1.
    with EpisodeLogger(tmp_path / "b.gflog", {}, n_joints=2, obs_dim=2) as logger:
        for k, (obs, action) in enumerate([(1, 1)] * 5 + [(1, 0), (1, 1), (1, 1), (0, 0),
                                                           (1, 1)]):
            _tiny_tick(logger, k, obs, action)
    tr = transitions(read_log(tmp_path / "b.gflog"))
    assert tr["tick"].tolist() == [0, 1, 2, 3, 4, 6]
    np.testing.assert_array_equal(tr["next_obs"][:, 0], [1, 2, 3, 4, 5, 7])
    assert tr["done"].tolist() == [False] * 6
    assert tr["truncated"].tolist() == [False, False, False, False, True, False]


def test_empty_log_gives_empty_transitions(tmp_path):
    EpisodeLogger(tmp_path / "e.gflog", {}, n_joints=2, obs_dim=3).close()
    log = read_log(tmp_path / "e.gflog")
    assert log.complete and len(log) == 0 and log.ticks["action"].shape == (0, 2)
    tr = transitions(log)
    assert tr["obs"].shape == (0, 3) and tr["done"].shape == (0,)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_writer_errors_surface_on_the_next_call():
    logger = EpisodeLogger("/dev/full", {}, n_joints=2, obs_dim=3)  # every flush: ENOSPC
    logger._thread.join(timeout=30)  # the writer's first flush fails and it stops
    assert not logger._thread.is_alive()
    with pytest.raises(LogWriteError, match="/dev/full") as info:
        logger.log_tick(0, *tick_values(0, 2, 3))
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(LogWriteError):
        logger.close()
    logger2 = EpisodeLogger("/dev/full", {}, n_joints=2, obs_dim=3)
    with pytest.raises(LogWriteError, match="No space left"):
        logger2.close()  # close joins the writer, so this one is deterministic


def test_bad_inputs_raise_in_the_caller(tmp_path):
    with pytest.raises(FileNotFoundError):
        EpisodeLogger(tmp_path / "gone" / "ep.gflog", {}, n_joints=2, obs_dim=3)
    with pytest.raises(ValueError, match="reserved"):
        EpisodeLogger(tmp_path / "x.gflog", {"obs_dim": 4}, n_joints=2, obs_dim=3)
    with pytest.raises(ValueError, match="flush_every_s"):
        EpisodeLogger(tmp_path / "x.gflog", {}, n_joints=2, obs_dim=3, flush_every_s=0)
    logger = EpisodeLogger(tmp_path / "x.gflog", {}, n_joints=2, obs_dim=3)
    state, obs, action, cmd, timing = tick_values(6, 2, 3)
    with pytest.raises(ValueError, match=r"observation has shape \(4,\)"):
        logger.log_tick(6, state, np.zeros(4), action, cmd, timing)
    with pytest.raises(ValueError, match="skipped"):
        logger.log_tick(6, state, obs, action, cmd, {"deadline_s": 0, "lateness_s": 0,
                                                     "work_s": 0})
    logger.close()
    logger.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        logger.log_tick(6, state, obs, action, cmd, timing)
    assert len(read_log(tmp_path / "x.gflog")) == 0


def test_summarize_reports_the_key_numbers(tmp_path):
    lateness = [0.001, 0.002, 0.003, 0.004, 0.010]
    skipped = [0, 0, 2, 0, 1]
    with EpisodeLogger(tmp_path / "s.gflog", {"robot": "servo_dog", "body": "serial",
                                              "bundle_hash": "deadbeef"},
                       n_joints=2, obs_dim=2) as logger:
        for k in range(5):
            timing = dict(deadline_s=0.02 * k, lateness_s=lateness[k], work_s=0.005,
                          skipped=skipped[k])
            logger.log_tick(k, None, None, None, JointCommand(np.zeros(2)), timing)
        logger.log_event(3, "watchdog", "", 0.06)
        logger.log_event(4, "watchdog", "", 0.08)
        logger.log_event(4, "tilt_estop", "", 0.08)
    text = summarize(read_log(tmp_path / "s.gflog"))
    assert "robot: servo_dog" in text and "body: serial" in text and "deadbeef" in text
    assert "ticks: 5 (ticks 0..4)" in text
    assert "duration: 0.089 s" in text  # wake times 0.02 k + lateness: 0.090 - 0.001
    assert "status: complete" in text and "torn tail: none" in text
    # periods 21, 21, 21, 26 ms: p99 = 21 + 0.97 * 5 (linear between the 3rd and 4th)
    assert "period: p50 21.000 ms, p99 25.850 ms" in text
    assert "lateness: p50 3.000 ms, p99 9.760 ms" in text  # 4 + 0.96 * 6
    assert "work: p50 5.000 ms, p99 5.000 ms" in text
    assert "overruns: 2 ticks, 3 ticks skipped" in text
    assert "events: tilt_estop x1, watchdog x2" in text


def test_a_full_disk_leaves_a_log_readable_up_to_the_last_whole_tick(tiny_tmpfs):
    folder = tiny_tmpfs(64)  # a 12-joint tick is ~1.4 kB: the disk fills after ~40 ticks
    logger = EpisodeLogger(folder / "ep.gflog", {"robot": "servo_dog"}, n_joints=12,
                           obs_dim=45, flush_every_s=0.001)
    sent = 0
    with pytest.raises(LogWriteError, match="No space left"):
        for k in range(1000):
            logger.log_tick(k, *tick_values(k))
            sent += 1
            time.sleep(0.002)
    log = read_log(folder / "ep.gflog")
    assert not log.complete and log.torn_tail is None  # cut back to a whole record
    n = len(log.ticks["tick"])
    assert 10 < n < sent
    np.testing.assert_array_equal(log.ticks["tick"], np.arange(n))
    logger.abort()  # never raises after a failure


def test_free_space_is_checked_before_an_episode(tiny_tmpfs):
    """A tick of 12 joints and 45 observations is 162 float64 + 13 bytes of framing = 1309 B;
    the check wants twice the ticks plus 64 KiB: 10 ticks need 91,716 B, 1000 need
    2 x 1000 x 1309 + 65,536 = 2,683,536 B."""
    folder = tiny_tmpfs(256)
    check_free_space(folder, 10, n_joints=12, obs_dim=45)
    with pytest.raises(LogSpaceError, match=f"{folder}: 0.26 MB free, but an episode of 1000 "
                                            "ticks needs about 2.68 MB"):
        check_free_space(folder, 1000, n_joints=12, obs_dim=45)


def test_estimate_and_truth_fields_round_trip_and_truth_is_nan_without_privileged_state(
        tmp_path):
    from gaitforge.control.estimator import VelocityEstimate
    from gaitforge.control.logger import ESTIMATE_FIELDS, TRUTH_FIELDS, tick_fields

    sizes = {name: size for name, size, _ in tick_fields(2, 3, n_feet=4)}
    assert [n for n, *_ in tick_fields(2, 3, n_feet=4)][-7:] == [*ESTIMATE_FIELDS, *TRUTH_FIELDS]
    assert [sizes[n] for n in (*ESTIMATE_FIELDS, *TRUTH_FIELDS)] == [3, 4, 3, 3, 4, 1, 1]
    assert tick_fields(2, 3) == tick_fields(2, 3, n_feet=0)  # without feet: as before
    path = tmp_path / "est.gflog"
    logger = EpisodeLogger(path, {"robot": "servo_dog"}, n_joints=2, obs_dim=3, n_feet=4)
    sim, hw, cmd, timing = (*tick_values(6, 2, 3)[:1], tick_values(8, 2, 3)[0],
                            *tick_values(6, 2, 3)[3:])
    sim.privileged = PrivilegedState(np.array([1.0, 2.0, 0.3]), np.array([0.3, -0.1, 0.02]),
                                     np.array([0.1, 0.2, -0.5]),
                                     np.array([True, False, False, True]), 0.8, True,
                                     base_height_m=0.25, collisions=2.0)
    estimate = VelocityEstimate(np.array([0.28, -0.12, 0.0]), np.array([1, 0, 0, 1], bool))
    logger.log_tick(0, sim, None, None, cmd, timing, estimate)
    logger.log_tick(1, hw, None, None, cmd, timing, estimate)  # hardware: no truth
    logger.log_tick(2, None, None, None, cmd, timing)  # no state, no estimate
    logger.close()
    log = read_log(path)
    assert log.metadata["n_feet"] == 4
    t = log.ticks
    np.testing.assert_array_equal(t["est_lin_vel_m_s"][:2], [[0.28, -0.12, 0.0]] * 2)
    np.testing.assert_array_equal(t["est_foot_contact"][:2], [[1, 0, 0, 1]] * 2)
    np.testing.assert_array_equal(t["true_lin_vel_m_s"][0], [0.3, -0.1, 0.02])
    np.testing.assert_array_equal(t["true_ang_vel_rad_s"][0], [0.1, 0.2, -0.5])
    np.testing.assert_array_equal(t["true_foot_contact"][0], [1, 0, 0, 1])
    assert t["true_base_height_m"][0] == 0.25 and t["true_collisions"][0] == 2.0
    for name in TRUTH_FIELDS:
        assert np.isnan(t[name][1:]).all(), name
    assert np.isnan(t["est_lin_vel_m_s"][2]).all() and np.isnan(t["est_foot_contact"][2]).all()
    # a log without feet refuses an estimate rather than dropping it
    with (EpisodeLogger(tmp_path / "no_feet.gflog", {}, n_joints=2, obs_dim=3) as bare,
          pytest.raises(ValueError, match="no estimate fields")):
        bare.log_tick(0, sim, None, None, cmd, timing, estimate)
    with pytest.raises(ValueError, match="n_feet"):
        EpisodeLogger(tmp_path / "x.gflog", {}, n_joints=2, obs_dim=3, n_feet=-1)

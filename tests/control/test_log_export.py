"""Episode logs out to MCAP and CSV, read back (MCAP with the `mcap` package's own reader) and
compared value by value with the log: every tick, every channel, every event, the timestamps."""

from __future__ import annotations

import csv
import json
from datetime import datetime

import numpy as np
import pytest

from gaitforge.control.estimator import VelocityEstimate
from gaitforge.control.log_export import csv_header, export_csv, log_times_ns
from gaitforge.control.logger import EpisodeLogger, read_log
from gaitforge.robots.spec import load_robot_spec
from gaitforge.robots.types import CommandMode, JointCommand, PrivilegedState, RobotState

SPEC = load_robot_spec("servo_dog")
N, OBS = 12, 5


def make_log(tmp_path, n_ticks=40, *, feet=4, velocity_command=True):
    """A log with every kind of tick: states missing on ticks 3 and 4, the policy from tick 10,
    a damping and an off tick, measured torque missing on even ticks, the simulator's truth on
    odd ones; events on ticks 12 and 30 and one at tick -1 (the body's)."""
    rng = np.random.default_rng(7)
    path = tmp_path / "ep.gflog"
    logger = EpisodeLogger(path, {"robot": "servo_dog", "command": [0.3, 0.0, 0.0],
                                  "control_dt_s": 0.02}, n_joints=N, obs_dim=OBS, n_feet=feet)
    for k in range(n_ticks):
        state = None
        if k not in (3, 4):
            state = RobotState(time_s=0.02 * k, joint_pos_rad=rng.normal(size=N),
                               joint_vel_rad_s=rng.normal(size=N),
                               imu_quat_wxyz=rng.normal(size=4), gyro_rad_s=rng.normal(size=3),
                               accel_m_s2=rng.normal(size=3),
                               joint_torque_nm=None if k % 2 == 0 else rng.normal(size=N))
            if k % 2:
                state.privileged = PrivilegedState(rng.normal(size=3), rng.normal(size=3),
                                                   rng.normal(size=3), rng.random(4) > 0.5,
                                                   0.8, False, 0.2, 1.0)
        mode = CommandMode.DAMPING if k == n_ticks - 2 else \
            CommandMode.OFF if k == n_ticks - 1 else CommandMode.POSITION
        cmd = JointCommand(rng.normal(size=N), mode, rng.random(N), rng.random(N),
                           rng.normal(size=N) if k % 3 == 0 else None)
        policy = k >= 10
        timing = {"deadline_s": 100.0 + 0.02 * k, "lateness_s": 1e-4 * (k % 5),
                  "work_s": 1e-3 + 1e-5 * k, "skipped": int(k == 20)}
        estimate = VelocityEstimate(rng.normal(size=3), (rng.random(4) > 0.5).astype(float)) \
            if state is not None and feet else None
        logger.log_tick(k + (k >= 20), state, rng.normal(size=OBS) if policy else None,
                        rng.uniform(-1, 1, N) if policy else None, cmd, timing, estimate,
                        [0.01 * k, -0.1, 0.2] if velocity_command else None)
    logger.log_event(12, "operator_damping", "the operator's damping", 100.24)
    logger.log_event(30, "rearm", "from phase damping", 100.6)
    logger.log_event(-1, "disconnected", "serial link down", 5.0)
    logger.close({"outcome": "stopped"})
    return read_log(path)


def same(a, b) -> None:
    np.testing.assert_array_equal(np.asarray(a, np.float64), np.asarray(b, np.float64))


def nums(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], np.float64)


def read_mcap(path):
    from mcap.reader import make_reader

    out: dict[str, list] = {}
    with open(path, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        schemas = {c.topic: json.loads(summary.schemas[c.schema_id].data)
                   for c in summary.channels.values()}
        encodings = {c.topic: (c.message_encoding, summary.schemas[c.schema_id].encoding)
                     for c in summary.channels.values()}
        for _, channel, message in reader.iter_messages(log_time_order=False):
            out.setdefault(channel.topic, []).append((message.log_time, message.publish_time,
                                                      json.loads(message.data)))
        meta = {m.name: m.metadata for m in reader.iter_metadata()}
    return out, schemas, encodings, meta


def test_mcap_round_trip_every_value(tmp_path):
    pytest.importorskip("mcap", reason="MCAP export needs the `mcap` package (extra `logs`)")
    from gaitforge.control.log_export import export_mcap

    log = make_log(tmp_path)
    t = log.ticks
    counts = export_mcap(log, tmp_path / "ep.mcap")
    msgs, schemas, encodings, meta = read_mcap(tmp_path / "ep.mcap")
    assert {k: len(v) for k, v in msgs.items()} == {k: v for k, v in counts.items() if v}
    assert counts == {"/joint_states": 38, "/imu": 38, "/joint_command": 40,
                      "/velocity_command": 40, "/action": 30, "/observation": 30, "/timing": 40,
                      "/events": 3, "/estimate": 38}
    assert set(encodings.values()) == {("json", "jsonschema")}
    assert schemas["/imu"]["properties"]["orientation"]["properties"].keys() == set("wxyz")
    # timestamps: start time + wake time (deadline + lateness) since the first tick, in ns
    start_ns = round(datetime.fromisoformat(log.metadata["start_time"]).timestamp() * 1e9)
    wake = t["deadline_s"] + t["lateness_s"]
    expected_ns = start_ns + np.round((wake - wake[0]) * 1e9).astype(np.int64)
    np.testing.assert_array_equal(log_times_ns(log), expected_ns)
    timing = msgs["/timing"]
    assert [m[0] for m in timing] == expected_ns.tolist() == [m[1] for m in timing]
    assert [m[2]["tick"] for m in timing] == t["tick"].tolist()
    for key in ("deadline_s", "lateness_s", "work_s", "skipped"):
        same([m[2][key] for m in timing], t[key])
    check_states(msgs, t)
    # commands every tick
    jc = [m[2] for m in msgs["/joint_command"]]
    assert [m["mode"] for m in jc][-3:] == ["position", "damping", "off"]
    for key, field in (("position", "command_position_rad"), ("kp", "command_kp_nm_per_rad"),
                       ("kd", "command_kd_nm_s_per_rad"), ("torque_ff", "command_torque_ff_nm")):
        same([nums(m[key]) for m in jc], t[field])
    vc = [m[2] for m in msgs["/velocity_command"]]
    same([[m["vx"], m["vy"], m["yaw_rate"]] for m in vc], t["velocity_command"])
    # the policy's channels where it ran
    ran = np.isfinite(t["action"]).all(axis=1)
    assert [m[2]["tick"] for m in msgs["/action"]] == t["tick"][ran].tolist()
    same([m[2]["action"] for m in msgs["/action"]], t["action"][ran])
    same([m[2]["observation"] for m in msgs["/observation"]], t["observation"][ran])
    # events at their tick's time; the body's (tick -1) at the last tick's
    ev = msgs["/events"]
    assert [m[2] for m in ev] == [{**e, "tick": e["tick"]} for e in log.events]
    row = {int(k): i for i, k in enumerate(t["tick"])}
    assert [m[0] for m in ev] == [expected_ns[row[12]], expected_ns[row[30]], expected_ns[-1]]
    assert json.loads(meta["gaitforge"]["summary"])["outcome"] == "stopped"
    assert json.loads(meta["gaitforge"]["metadata"]) == log.metadata


def test_an_older_log_exports_its_metadata_command_and_no_estimate(tmp_path):
    pytest.importorskip("mcap", reason="MCAP export needs the `mcap` package (extra `logs`)")
    from gaitforge.control.log_export import export_mcap

    log = make_log(tmp_path, 12, feet=0)
    del log.ticks["velocity_command"]  # as a log written before the field existed
    counts = export_mcap(log, tmp_path / "old.mcap")
    msgs, *_ = read_mcap(tmp_path / "old.mcap")
    assert "/estimate" not in counts
    assert {(m[2]["vx"], m[2]["vy"], m[2]["yaw_rate"]) for m in msgs["/velocity_command"]} == \
        {(0.3, 0.0, 0.0)}


def test_csv_round_trip_every_value(tmp_path):
    log = make_log(tmp_path)
    ticks_csv, events_csv = export_csv(log, tmp_path / "ep.csv")
    assert events_csv.name == "ep.events.csv"
    with open(ticks_csv, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    assert header == csv_header(log) and len(body) == len(log)
    assert header[:6] == ["tick", "deadline_s", "lateness_s", "work_s", "skipped",
                          "state_valid"]
    assert "joint_pos_rad.FR_hip" in header and "velocity_command.yaw" in header
    assert "imu_quat_wxyz.w" in header and "observation[4]" in header
    table = np.array([[np.nan if v == "" else float(v) for v in r] for r in body])
    col = 0
    for name, value in log.ticks.items():
        if name == "velocity_command":
            continue
        width = 1 if value.ndim == 1 else value.shape[1]
        same(table[:, col:col + width].reshape(value.shape), value)
        col += width
    same(table[:, col:], log.ticks["velocity_command"])
    assert body[0][5] == "1" and body[3][5] == "0"  # a bool as 0/1; tick 3 had no state
    with open(events_csv, newline="") as f:
        events = list(csv.DictReader(f))
    assert [(int(e["tick"]), e["kind"], float(e["time_s"])) for e in events] == [
        (12, "operator_damping", 100.24), (30, "rearm", 100.6), (-1, "disconnected", 5.0)]


def check_states(msgs, t) -> None:
    """/joint_states, /imu and /estimate: only where a state was read; torque null where it was
    not measured."""
    valid = t["state_valid"]
    js = [m[2] for m in msgs["/joint_states"]]
    assert [m["tick"] for m in js] == t["tick"][valid].tolist()
    assert js[0]["name"] == list(SPEC.joint_names)
    same([m["time_s"] for m in js], t["time_s"][valid])
    for key, field in (("position", "joint_pos_rad"), ("velocity", "joint_vel_rad_s"),
                       ("effort", "joint_torque_nm")):
        same([nums(m[key]) for m in js], t[field][valid])
    imu = [m[2] for m in msgs["/imu"]]
    same([[m["orientation"][a] for a in "wxyz"] for m in imu], t["imu_quat_wxyz"][valid])
    same([[m["angular_velocity"][a] for a in "xyz"] for m in imu], t["gyro_rad_s"][valid])
    same([[m["linear_acceleration"][a] for a in "xyz"] for m in imu], t["accel_m_s2"][valid])
    est = [m[2] for m in msgs["/estimate"]]
    for name in ("est_lin_vel_m_s", "est_foot_contact", "true_lin_vel_m_s",
                 "true_ang_vel_rad_s", "true_foot_contact"):
        same([nums(m[name]) for m in est], t[name][valid])
    for name in ("true_base_height_m", "true_collisions"):
        same(nums([m[name] for m in est]), t[name][valid])

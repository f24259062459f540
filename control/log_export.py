"""Episode logs in the tools robotics people use: MCAP (Foxglove Studio, PlotJuggler, the ROS 2
default container) and CSV (spreadsheets). `gaitforge logs export LOG --format mcap|csv`.

MCAP (the `mcap` package, optional extra `logs`): one channel per kind, JSON messages with a
JSON Schema each, every message stamped with its tick's time from the log:

    /joint_states      name[], position[] rad, velocity[] rad/s, effort[] N m (measured torque)
    /imu               orientation {w,x,y,z}, angular_velocity {x,y,z} rad/s,
                       linear_acceleration {x,y,z} m/s^2 (specific force, body frame)
    /joint_command     mode (position | damping | off), position[] rad, kp[], kd[], torque_ff[]
    /velocity_command  vx m/s, vy m/s, yaw_rate rad/s: the command in force
    /action            action[] (the actor's output in [-1, 1])
    /observation       observation[] (as the actor saw it; the layout is in the metadata)
    /estimate          est_lin_vel_m_s[], est_foot_contact[] and the simulator's truth
                       (true_*; null on hardware), where the log has them
    /timing            deadline_s, lateness_s, work_s, skipped
    /events            kind, detail, time_s (safety events, read errors, the body's own)

Every message carries `tick` (the loop's grid index) and, where a state was read, `time_s`
(the body's clock). Log time = the log's start time (metadata `start_time`, UTC) + the tick's
wake time (deadline + lateness) after the first tick's, in ns. A message is written only on
ticks that have its values (no state read: no /joint_states or /imu; the policy not running:
no /action or /observation); values that are NaN inside a message (a torque not measured)
are JSON null. Events logged at tick -1 (the body's, written at the end) get the last tick's
time. The metadata record `gaitforge` holds the log's metadata and end record as JSON.
A log older than `velocity_command` gets its metadata's `command` on every tick.

CSV: one row per tick, one column per value (`joint_pos_rad.FL_hip`, `velocity_command.vx`,
`observation[3]`), numbers as Python writes them (they read back exactly), NaN as an empty
cell; the events go to a second file beside it, `<name>.events.csv`.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import numpy as np

from .logger import EpisodeLog
from .optional import require

MODES = {0: "position", 1: "damping", 2: "off"}
JOINT_FIELDS = ("joint_pos_rad", "joint_vel_rad_s", "joint_torque_nm", "action",
                "command_position_rad", "command_kp_nm_per_rad", "command_kd_nm_s_per_rad",
                "command_torque_ff_nm")
AXES = {"imu_quat_wxyz": "wxyz", "gyro_rad_s": "xyz", "accel_m_s2": "xyz",
        "velocity_command": ("vx", "vy", "yaw"), "est_lin_vel_m_s": "xyz",
        "true_lin_vel_m_s": "xyz", "true_ang_vel_rad_s": "xyz"}
_NUM = {"type": ["number", "null"]}
_NUMS = {"type": "array", "items": _NUM}
_XYZ = {"type": "object", "properties": {k: _NUM for k in "xyz"}}


def joint_names(log: EpisodeLog) -> list[str]:
    """The robot's joint names (its spec), or j0, j1, ... if the spec is not known here."""
    from gaitforge.robots.spec import load_robot_spec

    n = int(log.metadata.get("n_joints", log.ticks["joint_pos_rad"].shape[1]))
    try:
        names = list(load_robot_spec(log.metadata["robot"]).joint_names)
    except Exception:  # an unknown robot, or no robot named: numbered joints
        names = []
    return names if len(names) == n else [f"j{k}" for k in range(n)]


def velocity_commands(log: EpisodeLog) -> np.ndarray:
    """(T, 3): the logged command in force, or the metadata's command on every tick."""
    if "velocity_command" in log.ticks:
        return log.ticks["velocity_command"]
    command = log.metadata.get("command", [np.nan] * 3)
    return np.tile(np.asarray(command, np.float64), (len(log), 1))


def log_times_ns(log: EpisodeLog) -> np.ndarray:
    """Each tick's log time (ns since the epoch): the start time + the wake time since the
    first tick's (see the module docstring)."""
    t = log.ticks
    wake = t["deadline_s"] + t["lateness_s"]
    try:
        start = datetime.fromisoformat(log.metadata["start_time"]).timestamp()
    except (KeyError, TypeError, ValueError):
        start = 0.0
    start_ns = int(round(start * 1e9))
    return start_ns + np.round((wake - (wake[0] if len(wake) else 0.0)) * 1e9).astype(np.int64)


def _listed(a: np.ndarray) -> list:
    """Python numbers, NaN and inf as None (JSON null), row by row."""
    o = a.astype(object)
    o[~np.isfinite(a)] = None
    return o.tolist()


def _schemas(has_estimate: bool) -> dict[str, dict]:
    tick = {"tick": {"type": "integer"}}
    state = {**tick, "time_s": _NUM}
    out = {
        "/joint_states": {**state, "name": {"type": "array", "items": {"type": "string"}},
                          "position": _NUMS, "velocity": _NUMS, "effort": _NUMS},
        "/imu": {**state, "orientation": {"type": "object",
                                          "properties": {k: _NUM for k in "wxyz"}},
                 "angular_velocity": _XYZ, "linear_acceleration": _XYZ},
        "/joint_command": {**tick, "mode": {"type": "string", "enum": list(MODES.values())},
                           "position": _NUMS, "kp": _NUMS, "kd": _NUMS, "torque_ff": _NUMS},
        "/velocity_command": {**tick, "vx": _NUM, "vy": _NUM, "yaw_rate": _NUM},
        "/action": {**tick, "action": _NUMS},
        "/observation": {**tick, "observation": _NUMS},
        "/timing": {**tick, "deadline_s": _NUM, "lateness_s": _NUM, "work_s": _NUM,
                    "skipped": {"type": "integer"}},
        "/events": {**tick, "kind": {"type": "string"}, "detail": {"type": "string"},
                    "time_s": _NUM},
    }
    if has_estimate:
        out["/estimate"] = {**state, "est_lin_vel_m_s": _NUMS, "est_foot_contact": _NUMS,
                            "true_lin_vel_m_s": _NUMS, "true_ang_vel_rad_s": _NUMS,
                            "true_foot_contact": _NUMS, "true_base_height_m": _NUM,
                            "true_collisions": _NUM}
    return {topic: {"type": "object", "title": "gaitforge" + topic.replace("/", "."),
                    "properties": props} for topic, props in out.items()}


def _xyz(row, keys="xyz") -> dict:
    return dict(zip(keys, row, strict=True))


def _columns(log: EpisodeLog) -> dict[str, list]:
    t = log.ticks
    names = [*JOINT_FIELDS, "observation", "imu_quat_wxyz", "gyro_rad_s", "accel_m_s2",
             "time_s", "deadline_s", "lateness_s", "work_s",
             *(n for n in t if n.startswith(("est_", "true_")))]
    cols = {n: _listed(np.asarray(t[n], np.float64)) for n in names}
    cols["velocity_command"] = _listed(velocity_commands(log))
    return cols


def mcap_messages(log: EpisodeLog):
    """(topic, log time ns, message dict) of every message, in log-time order per tick."""
    t, c = log.ticks, _columns(log)
    times = log_times_ns(log).tolist()
    ticks, modes = t["tick"].tolist(), t["command_mode"].tolist()
    valid, skipped = t["state_valid"].tolist(), t["skipped"].tolist()
    ran = np.isfinite(t["action"]).all(axis=1).tolist()
    seen = np.isfinite(t["observation"]).all(axis=1).tolist()
    estimated = "est_lin_vel_m_s" in t
    names = joint_names(log)
    by_tick: dict[int, list[dict]] = {}
    for e in log.events:
        by_tick.setdefault(int(e["tick"]), []).append(e)
    for i, tick in enumerate(ticks):
        base, ns = {"tick": tick}, times[i]
        yield "/timing", ns, {**base, **{k: c[k][i] for k in ("deadline_s", "lateness_s",
                                                              "work_s")},
                              "skipped": skipped[i]}
        if valid[i]:
            state = {**base, "time_s": c["time_s"][i]}
            yield "/joint_states", ns, {**state, "name": names,
                                        "position": c["joint_pos_rad"][i],
                                        "velocity": c["joint_vel_rad_s"][i],
                                        "effort": c["joint_torque_nm"][i]}
            yield "/imu", ns, {**state, "orientation": _xyz(c["imu_quat_wxyz"][i], "wxyz"),
                               "angular_velocity": _xyz(c["gyro_rad_s"][i]),
                               "linear_acceleration": _xyz(c["accel_m_s2"][i])}
            if estimated:
                yield "/estimate", ns, {**state, **{k: c[k][i] for k in c
                                                    if k.startswith(("est_", "true_"))}}
        yield "/joint_command", ns, {**base, "mode": MODES[modes[i]],
                                     "position": c["command_position_rad"][i],
                                     "kp": c["command_kp_nm_per_rad"][i],
                                     "kd": c["command_kd_nm_s_per_rad"][i],
                                     "torque_ff": c["command_torque_ff_nm"][i]}
        vx, vy, yaw = c["velocity_command"][i]
        yield "/velocity_command", ns, {**base, "vx": vx, "vy": vy, "yaw_rate": yaw}
        if ran[i]:
            yield "/action", ns, {**base, "action": c["action"][i]}
        if seen[i]:
            yield "/observation", ns, {**base, "observation": c["observation"][i]}
        for e in by_tick.pop(tick, ()):
            yield "/events", ns, _event(e)
    end = times[-1] if times else 0
    for events in by_tick.values():  # tick -1 (the body's), or ticks not in the log
        for e in events:
            yield "/events", end, _event(e)


def _event(e: dict) -> dict:
    return {"tick": int(e["tick"]), "kind": str(e["kind"]), "detail": str(e["detail"]),
            "time_s": e.get("time_s")}


def _dumps(msg: dict) -> bytes:
    return json.dumps(msg, separators=(",", ":"), allow_nan=False).encode()


def export_mcap(log: EpisodeLog, path: str | Path) -> dict:
    """Write `log` as MCAP at `path` (see the module docstring); {topic: messages written}."""
    require("mcap", "logs", "MCAP export")
    from mcap.writer import Writer

    schemas = _schemas("est_lin_vel_m_s" in log.ticks)
    counts = dict.fromkeys(schemas, 0)
    with open(path, "wb") as f:
        writer = Writer(f)
        writer.start(profile="", library="gaitforge")
        channels = {}
        for topic, schema in schemas.items():
            sid = writer.register_schema(schema["title"], "jsonschema",
                                         json.dumps(schema).encode())
            channels[topic] = writer.register_channel(topic, "json", sid)
        for topic, ns, msg in mcap_messages(log):
            writer.add_message(channels[topic], log_time=ns, data=_dumps(msg), publish_time=ns,
                               sequence=counts[topic])
            counts[topic] += 1
        writer.add_metadata("gaitforge", {
            "metadata": json.dumps(log.metadata), "summary": json.dumps(log.summary),
            "source": str(log.path)})
        writer.finish()
    return counts


def csv_header(log: EpisodeLog) -> list[str]:
    names, out = joint_names(log), []
    for name, value in _csv_fields(log):
        size = 1 if value.ndim == 1 else value.shape[1]
        if size == 1:
            out.append(name)
        elif name in JOINT_FIELDS and size == len(names):
            out += [f"{name}.{j}" for j in names]
        elif name in AXES:
            out += [f"{name}.{a}" for a in AXES[name]]
        else:
            out += [f"{name}[{k}]" for k in range(size)]
    return out


def _csv_fields(log: EpisodeLog) -> list[tuple[str, np.ndarray]]:
    fields = [(n, v) for n, v in log.ticks.items() if n != "velocity_command"]
    return [*fields, ("velocity_command", velocity_commands(log))]


def export_csv(log: EpisodeLog, path: str | Path) -> tuple[Path, Path]:
    """Write the ticks to `path` and the events to `<stem>.events.csv` beside it."""
    path = Path(path)
    parts = []
    for _, value in _csv_fields(log):
        value = value.reshape(len(log), -1)
        parts.append(value.astype(np.int64).astype(object) if value.dtype.kind in "bi"
                     else np.where(np.isnan(value), "", value.astype(object)))
    table = np.concatenate(parts, axis=1) if parts else np.zeros((0, 0))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(csv_header(log))
        w.writerows(table.tolist())
    events = path.with_name(path.stem + ".events.csv")
    with open(events, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["tick", "time_s", "kind", "detail"])
        w.writerows([e["tick"], e["time_s"], e["kind"], e["detail"]] for e in log.events)
    return path, events

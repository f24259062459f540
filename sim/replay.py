"""Replay: a logged episode re-simulated with its own commands, and the gap between the two.

The simulated body starts from the log's first valid state (joint positions and velocities,
trunk orientation; a hung robot's trunk is fixed in the air, a standing robot's trunk is put at
its standing height at rest; a walking log is replayed in pieces, `LogCommands.windows`, each
from its own first state) and is fed each logged command (position targets, mode, gains,
feed-forward) for as many control periods as the log's tick grid says passed (an overrun skips
grid points). A body that steps when written (a simulated robot) takes each command at the
tick's start; a body that runs on its own (hardware, the virtual robot) takes it when the host
finished writing it, `work_s` after the read (the log's timing), rounded to physics steps.
After each command the simulated state is compared with the next logged state:

    per joint     RMSE and max |error| (rad), and the lag (ms) of the log behind the
                  simulation at the peak of their cross-correlation (parabolic sub-tick peak)
    trunk         orientation error: the angle between logged and simulated IMU quaternions

A log written by a simulated body replays in the same engine with the same dynamics to
~1e-12 rad when hung: replay is exact before it measures a gap. `replay` is also the cost
function of system identification (sim/sysid.py), so it allocates little and returns arrays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from gaitforge.control.logger import EpisodeLog
from gaitforge.robots.spec import RobotSpec
from gaitforge.robots.types import CommandMode, JointCommand

from .body import hang_height
from .config import SimConfig
from .dynamics import DynamicsParams

SUPPORTS = ("ground", "hung")
GROUND_WINDOW_S = 2.0  # a walking log drifts off its open-loop replay within a few seconds
MODES = {0: CommandMode.POSITION, 1: CommandMode.DAMPING, 2: CommandMode.OFF}
MAX_LAG_TICKS = 10


@dataclass
class ReplayResult:
    time_s: np.ndarray  # (T,) log time of each compared row
    logged_q: np.ndarray  # (T, n) rad
    replayed_q: np.ndarray  # (T, n) rad
    orientation_error_rad: np.ndarray  # (T,)
    wall_s: float  # time the re-simulation took

    @property
    def error(self) -> np.ndarray:
        return self.replayed_q - self.logged_q

    def rmse_rad(self) -> np.ndarray:
        return np.sqrt(np.mean(self.error ** 2, axis=0))

    def max_rad(self) -> np.ndarray:
        return np.abs(self.error).max(axis=0)

    def lag_ms(self, control_dt_s: float) -> np.ndarray:
        """Per joint: how far the logged motion lags the replayed one (ms; negative: leads)."""
        return np.array([_lag_ticks(self.logged_q[:, j], self.replayed_q[:, j]) * control_dt_s
                         * 1e3 for j in range(self.logged_q.shape[1])])


def support_of(metadata: dict, support: str | None = None) -> str:
    """The support a log was recorded with (its metadata), unless `support` says otherwise."""
    support = support or metadata.get("support", "ground")
    if support not in SUPPORTS:
        raise ValueError(f"support must be one of {', '.join(SUPPORTS)}, got {support!r}")
    return support


def make_replay_body(spec: RobotSpec, engine: str, control_dt_s: float, support: str,
                     dynamics: DynamicsParams | None = None, sim_dt_s: float = 0.002):
    """An active simulated body for replaying logs recorded at `control_dt_s`."""
    from .env import make_body

    body = make_body(spec, SimConfig(engine=engine, sim_dt_s=sim_dt_s,
                                     control_dt_s=control_dt_s),
                     fixed_base=support == "hung")
    body.configure()
    body.activate()
    if dynamics is not None:
        body.set_dynamics(dynamics)
    return body


@dataclass(frozen=True)
class LogCommands:
    """What a replay needs from a log, as arrays (rows with a valid state from the first on)."""

    steps: np.ndarray  # (T,) control periods from each row to the next
    write_steps: np.ndarray  # (T,) physics steps after the read at which the command landed
    q: np.ndarray  # (T, n) logged joint positions
    dq: np.ndarray  # (T, n)
    quat: np.ndarray  # (T, 4)
    valid: np.ndarray  # (T,) bool: the state was read
    commands: list  # (T,) JointCommand written at each row
    time_s: np.ndarray  # (T,)

    @classmethod
    def from_log(cls, log: EpisodeLog, sim_dt_s: float = 0.002) -> LogCommands:
        t = log.ticks
        valid = np.asarray(t["state_valid"], bool)
        if not valid.any():
            raise ValueError(f"{log.path}: no tick with a valid state to start a replay from")
        rows = np.arange(int(np.argmax(valid)), len(valid))
        ticks = t["tick"][rows]
        steps = np.append(np.diff(ticks), 1).astype(int)
        if "control_dt_s" not in log.metadata:
            raise ValueError(f"{log.path}: no control_dt_s in its metadata (not a log of the "
                             "deploy runtime)")
        substeps = round(log.metadata["control_dt_s"] / sim_dt_s)
        if str(log.metadata.get("body", "")).startswith("hw:"):  # runs on its own clock
            write = np.clip(np.round(t["work_s"][rows] / sim_dt_s), 0, substeps).astype(int)
        else:
            write = np.zeros(len(rows), int)
        commands = [_command(t, k) for k in rows]
        return cls(steps, write, t["joint_pos_rad"][rows], t["joint_vel_rad_s"][rows],
                   t["imu_quat_wxyz"][rows], valid[rows], commands, t["time_s"][rows])

    def windows(self, ticks: int) -> list[LogCommands]:
        """The log cut into consecutive pieces of `ticks` rows, each replayed from its own
        first logged state (a last piece shorter than half a window is left out). A walking
        robot's open-loop replay drifts off the logged one within a second or two (a foothold
        or a heading apart), after which its joints no longer say anything about the
        dynamics; pieces of a second or two keep every stance and swing comparable.
        `ticks` 0, or a log no longer than one piece: the whole log."""
        if ticks <= 0 or len(self.steps) <= ticks:
            return [self]
        n, least = len(self.steps), max(2, ticks // 2)
        out, start = [], 0
        while start < n:
            while start < n and not self.valid[start]:
                start += 1  # a piece starts from a state that was read
            if n - start >= least:
                rows = slice(start, start + ticks)
                out.append(LogCommands(self.steps[rows], self.write_steps[rows], self.q[rows],
                                       self.dq[rows], self.quat[rows], self.valid[rows],
                                       self.commands[rows], self.time_s[rows]))
            start += ticks
        return out


def _command(t: dict, k: int) -> JointCommand:
    def part(name):
        value = t[name][k]
        return None if not np.all(np.isfinite(value)) else value.copy()

    return JointCommand(position_rad=t["command_position_rad"][k].copy(),
                        mode=MODES[int(t["command_mode"][k])],
                        kp_nm_per_rad=part("command_kp_nm_per_rad"),
                        kd_nm_s_per_rad=part("command_kd_nm_s_per_rad"),
                        torque_ff_nm=part("command_torque_ff_nm"))


def replay(body, log: LogCommands) -> ReplayResult:
    """Re-simulate `log` on `body` (from make_replay_body, dynamics already set)."""
    t0 = time.perf_counter()
    hung = body.fixed_base
    z = body.spawn_height() if not hung else hang_height(body.spec)
    body.reset(base_pos_m=[0.0, 0.0, z], base_quat_wxyz=log.quat[0],
               joint_pos_rad=log.q[0], joint_vel_rad_s=log.dq[0])
    n_rows = len(log.steps)
    sim_q = np.empty_like(log.q)
    sim_quat = np.empty_like(log.quat)
    sim_q[0], sim_quat[0] = log.q[0], log.quat[0]
    substeps = body.sim.substeps
    for k in range(n_rows - 1):
        before = int(log.write_steps[k])
        if before:
            body.step(before)
        body.write(log.commands[k])
        body.step(substeps * int(log.steps[k]) - before)
        state = body.read()
        sim_q[k + 1], sim_quat[k + 1] = state.joint_pos_rad, state.imu_quat_wxyz
    keep = log.valid
    dots = np.abs(np.sum(sim_quat[keep] * log.quat[keep], axis=1))
    return ReplayResult(time_s=log.time_s[keep], logged_q=log.q[keep], replayed_q=sim_q[keep],
                        orientation_error_rad=2.0 * np.arccos(np.clip(dots, 0.0, 1.0)),
                        wall_s=time.perf_counter() - t0)


def window_ticks(support: str, window_s: float | None, control_dt_s: float) -> int:
    """Rows per replayed piece: `window_s` when given (0: whole logs), else GROUND_WINDOW_S on
    the ground and whole logs hung (a hung trunk cannot drift)."""
    if window_s is None:
        window_s = GROUND_WINDOW_S if support == "ground" else 0.0
    return round(window_s / control_dt_s) if window_s else 0


def replay_pieces(body, pieces: list[LogCommands]) -> ReplayResult:
    """`replay` of each piece (LogCommands.windows), joined in order."""
    results = [replay(body, piece) for piece in pieces]
    return ReplayResult(*(np.concatenate([getattr(r, name) for r in results])
                          for name in ("time_s", "logged_q", "replayed_q",
                                       "orientation_error_rad")),
                        wall_s=sum(r.wall_s for r in results))


def _lag_ticks(logged: np.ndarray, replayed: np.ndarray) -> float:
    """Lag (ticks, sub-tick by a parabola through the peak) maximising the correlation of the
    mean-removed traces; 0 for a joint that does not move."""
    a, b = logged - logged.mean(), replayed - replayed.mean()
    if a.std() < 1e-9 or b.std() < 1e-9 or len(a) < 2 * MAX_LAG_TICKS + 2:
        return 0.0
    lags = np.arange(-MAX_LAG_TICKS, MAX_LAG_TICKS + 1)
    corr = np.array([np.dot(a[max(0, k):len(a) + min(0, k)], b[max(0, -k):len(b) - max(0, k)])
                     for k in lags])
    i = int(np.argmax(corr))
    if 0 < i < len(lags) - 1:
        y0, y1, y2 = corr[i - 1], corr[i], corr[i + 1]
        denom = y0 - 2 * y1 + y2
        return float(lags[i] + (0.5 * (y0 - y2) / denom if denom else 0.0))
    return float(lags[i])


def summary(result: ReplayResult, spec: RobotSpec, control_dt_s: float) -> dict:
    """report.json's numbers for one replayed log."""
    rmse, worst, lag = result.rmse_rad(), result.max_rad(), result.lag_ms(control_dt_s)
    duration = float(result.time_s[-1] - result.time_s[0]) if len(result.time_s) > 1 else 0.0
    return {
        "ticks": len(result.time_s), "duration_s": duration, "wall_s": result.wall_s,
        "speed_x_realtime": duration / result.wall_s if result.wall_s else float("inf"),
        "joints": {name: {"rmse_rad": float(rmse[i]), "max_rad": float(worst[i]),
                          "lag_ms": float(lag[i])} for i, name in enumerate(spec.joint_names)},
        "rmse_rad_mean": float(rmse.mean()),
        "orientation_rmse_rad": float(np.sqrt(np.mean(result.orientation_error_rad ** 2))),
        "orientation_max_rad": float(result.orientation_error_rad.max()),
    }


def plot(results: dict[str, ReplayResult], spec: RobotSpec, path) -> None:
    """replay.png: one panel per joint, logged against replayed position, every log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = spec.n_joints
    cols = 3 if n % 3 == 0 else 4
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.4 * rows), sharex=True,
                             squeeze=False)
    for j, ax in enumerate(axes.flat):
        if j >= n:
            ax.axis("off")
            continue
        for name, r in results.items():
            line = ax.plot(r.time_s, r.logged_q[:, j], lw=1.0, label=f"log {name}")[0]
            ax.plot(r.time_s, r.replayed_q[:, j], lw=1.0, ls="--", color=line.get_color(),
                    label=f"replay {name}")
        ax.set_title(f"{spec.joint_names[j]} (rad)", fontsize=9)
    axes.flat[0].legend(fontsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)")
    fig.suptitle("logged (solid) against replayed (dashed) joint positions")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)

"""A simulated body behind the `Robot` protocol, driven the way hardware is.

    SimulatedRobot    `write()` applies the command and advances physics one control period:
                      the deploy loop on simulated time (sim-to-sim checks), replay and
                      system identification. It judges the gait while the policy drives.
    RealTimeSimBody   physics catches up with the wall clock whenever it is read: the body
                      behind the virtual serial devices (`hw_drivers.virtual_robot`); with a
                      `SessionRecord`, what it did (distance, heading, falls, poses for a video).

Both start standing in the default pose (`SimBody.reset_standing`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from gaitforge.control.policy_io import heading_rad

from .body import SimBody
from .evaluation import Track
from .randomization import NoiseConfig, RandomizationConfig, add_sensor_noise
from .tasks import TerminationConfig, fall_reason
from .terrain import ground_height


class SimulatedRobot:
    """A SimBody as hardware would be: write() also steps physics; with `noise`, read() adds
    that sensor noise (sim/randomization.py, drawn from `seed`), so that episodes differ as a
    real robot's do (without it every episode of a policy is the same). `observe` (the deploy
    loop's on_tick hook) records the true forward velocity and the first fall while the policy
    drives (and the heading, from the IMU); `report()` judges them against the velocity
    `command` (vx, vy, yaw rate): a fixed one, or a command source (control/commands.py) whose
    `current` command is judged tick by tick. `stride_hz`: the policy's gait frequency (0:
    none), which sizes the judging windows (`Track`)."""

    def __init__(self, body: SimBody, termination: TerminationConfig | None = None,
                 command=(0.0, 0.0, 0.0), stride_hz: float = 0.0,
                 noise: NoiseConfig | None = None, seed: int = 0):
        self.body, self.termination = body, termination or TerminationConfig()
        # add_sensor_noise reads the noise from a randomisation config
        self.sensor_noise = None if noise is None else RandomizationConfig(noise=noise)
        self.rng = np.random.default_rng(seed)
        self.track = Track(stride_hz)
        self.source = command if hasattr(command, "current") else None
        self.command = tuple(float(c) for c in (
            command.current if self.source is not None else command))
        self.commanded: list[np.ndarray] = []  # per observed tick, with a source
        self.fell_at_s: float | None = None
        self.fall_reason = ""

    def configure(self) -> None:
        self.body.configure()
        self.body.reset_standing()

    def activate(self) -> None:
        self.body.activate()

    def deactivate(self) -> None:
        self.body.deactivate()

    def read(self):
        state = self.body.read()
        if self.sensor_noise is None:
            return state
        return add_sensor_noise(self.sensor_noise, state, self.rng)

    def write(self, command) -> None:
        self.body.write(command)
        self.body.step()

    def observe(self, state, action, sent, phase) -> None:
        """Deployment's on_tick hook (state read, action, command sent, safety phase): judge
        the gait while the policy drives."""
        if state is None or action is None:
            return
        p = state.privileged
        self.track.add(state)
        if self.source is not None:
            self.commanded.append(np.array(self.source.current))
        if self.fell_at_s is None:
            ground = ground_height(self.body.terrain, p.base_pos_m[0], p.base_pos_m[1])
            self.fall_reason = fall_reason(state, ground, self.body.spec, self.termination)
            if self.fall_reason:
                self.fell_at_s = state.time_s

    def report(self) -> dict:
        """Falls and tracking (sim/evaluation.py's metrics; the yaw rate from the IMU)."""
        per_second = round(1.0 / self.body.sim.control_dt_s)
        if not self.track.vx:
            judged = {}
        elif self.source is None:
            judged = self.track.judge(self.command, per_second)
        else:
            judged = judge_varying(self.track, np.array(self.commanded), per_second)
        return {"body": f"sim:{self.body.engine}", "fell": self.fell_at_s is not None,
                "fall_reason": self.fall_reason, **judged}

    def close(self) -> None:
        self.body.close()


def judge_varying(track: Track, commanded: np.ndarray, per_second: int) -> dict:
    """`Track.judge` against a command that changes tick by tick ((T, 3): vx, vy, yaw rate):
    the errors are those of the track minus the command (velocities less the commanded ones,
    the heading less the commanded yaw rate's integral), so a window's error is
    |window mean - window mean of the command|; the means and the heading change are the
    track's own."""
    shifted = Track(track.stride_hz)
    shifted.vx = list(np.asarray(track.vx) - commanded[:, 0])
    shifted.vy = list(np.asarray(track.vy) - commanded[:, 1])
    shifted.heading = list(np.unwrap(np.asarray(track.heading))
                           - np.cumsum(commanded[:, 2]) / per_second)
    errors = {k: v for k, v in shifted.judge((0.0, 0.0, 0.0), per_second).items()
              if k.endswith("_error")}
    return {**track.judge((0.0, 0.0, 0.0), per_second), **errors}


class RealTimeSimBody:
    """A SimBody, standing and active, whose physics catches up with the wall clock whenever it
    is read. Falls behind by more than `max_lag_s` (a stalled process) are skipped, not
    replayed. Its own lifecycle calls are no-ops: the virtual devices in front of it keep
    theirs."""

    def __init__(self, body: SimBody, *, clock=time.monotonic, max_lag_s: float = 0.1,
                 record: SessionRecord | None = None):
        """record: sampled as physics advances (what `gaitforge virtual-robot` reports)."""
        self.body, self.clock, self.max_lag_s, self.record = body, clock, max_lag_s, record
        body.configure()
        body.reset_standing()
        body.activate()
        self.dt = body.sim.sim_dt_s
        self.t0 = clock()
        self.skipped_s = 0.0

    def configure(self) -> None:
        pass

    def activate(self) -> None:
        pass

    def deactivate(self) -> None:
        pass

    def write(self, command) -> None:
        self.body.write(command)

    def read(self):
        target = self.clock() - self.t0 - self.skipped_s
        lag = target - self.body.time_s
        if lag > self.max_lag_s:
            self.skipped_s += lag - self.max_lag_s
            target -= lag - self.max_lag_s
        steps = int((target - self.body.time_s) / self.dt)
        if steps > 0:
            self.body.step(steps)
        state = self.body.read()
        if self.record is not None and self.body.time_s >= self.record.next_s:
            self.record.add(self.body, state)
        return state


@dataclass
class Pose:
    time_s: float
    base_pos_m: np.ndarray
    base_quat_wxyz: np.ndarray
    joint_pos_rad: np.ndarray


class SessionRecord:
    """What a simulated robot did, sampled every `every_s` of simulated time: how far it went,
    how its heading changed (from the IMU quaternion, unwrapped), how often it fell (a fall:
    `fall_reason` turns non-empty; standing up again ends it), and, with `keep_poses`, the
    poses a video is rendered from afterwards (`sim.render.render_poses`)."""

    def __init__(self, spec, every_s: float = 0.04, *, keep_poses: bool = False,
                 termination: TerminationConfig | None = None):
        self.spec, self.every_s, self.keep_poses = spec, every_s, keep_poses
        self.termination = termination or TerminationConfig()
        self.next_s = 0.0
        self.poses: list[Pose] = []
        self.xy: list[np.ndarray] = []
        self.heading: list[float] = []
        self.falls, self.fallen = 0, False
        self.fall_reasons: dict[str, int] = {}

    def add(self, body: SimBody, state) -> None:
        self.next_s = body.time_s + self.every_s
        pos = np.asarray(state.privileged.base_pos_m, np.float64)
        self.xy.append(pos[:2].copy())
        self.heading.append(heading_rad(state.imu_quat_wxyz))
        why = fall_reason(state, ground_height(body.terrain, pos[0], pos[1]), self.spec,
                          self.termination)
        if why and not self.fallen:
            self.falls += 1
            self.fall_reasons[why] = self.fall_reasons.get(why, 0) + 1
        self.fallen = bool(why)
        if self.keep_poses:
            self.poses.append(Pose(body.time_s, pos, np.array(state.imu_quat_wxyz),
                                   np.array(state.joint_pos_rad)))

    def summary(self) -> dict:
        """distance_m (start to end, horizontal), path_m (along the way), heading_change_deg,
        falls, fall_reasons, fallen_at_end."""
        if not self.xy:
            return {"distance_m": 0.0, "path_m": 0.0, "heading_change_deg": 0.0, "falls": 0,
                    "fall_reasons": {}, "fallen_at_end": False}
        xy = np.array(self.xy)
        heading = np.unwrap(np.array(self.heading))
        return {"distance_m": float(np.linalg.norm(xy[-1] - xy[0])),
                "path_m": float(np.linalg.norm(np.diff(xy, axis=0), axis=1).sum()),
                "heading_change_deg": float(np.degrees(heading[-1] - heading[0])),
                "falls": self.falls, "fall_reasons": dict(self.fall_reasons),
                "fallen_at_end": self.fallen}


def trunk_summary(body: SimBody) -> str:
    """Where the trunk is: x, y, height (m)."""
    pos = np.asarray(body.read().privileged.base_pos_m)
    return f"trunk at x {pos[0]:+.3f} m, y {pos[1]:+.3f} m, height {pos[2]:.3f} m"

"""A simulated body behind the `Robot` protocol, driven the way hardware is.

    SimulatedRobot    `write()` applies the command and advances physics one control period:
                      the deploy loop on simulated time (sim-to-sim checks), replay and
                      system identification. It judges the gait while the policy drives.
    RealTimeSimBody   physics catches up with the wall clock whenever it is read: the body
                      behind the virtual serial devices (`hw_drivers.virtual_robot`).

Both start standing in the default pose (`SimBody.reset_standing`).
"""

from __future__ import annotations

import time

import numpy as np

from .body import SimBody
from .evaluation import Track
from .tasks import TerminationConfig, fall_reason


class SimulatedRobot:
    """A SimBody as hardware would be: write() also steps physics. `observe` (the deploy
    loop's on_tick hook) records the true forward velocity and the first fall while the policy
    drives (and the heading, from the IMU); `report()` judges them against the velocity
    `command` (vx, vy, yaw rate)."""

    def __init__(self, body: SimBody, termination: TerminationConfig | None = None,
                 command=(0.0, 0.0, 0.0)):
        self.body, self.termination = body, termination or TerminationConfig()
        self.track = Track()
        self.command = tuple(float(c) for c in command)
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
        return self.body.read()

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
        if self.fell_at_s is None:
            ground = self.body.ground_height(p.base_pos_m[0], p.base_pos_m[1])
            self.fall_reason = fall_reason(state, ground, self.body.spec, self.termination)
            if self.fall_reason:
                self.fell_at_s = state.time_s

    def report(self) -> dict:
        """Falls and tracking (sim/evaluation.py's metrics; the yaw rate from the IMU)."""
        per_second = round(1.0 / self.body.sim.control_dt_s)
        judged = self.track.judge(self.command, per_second) if self.track.vx else {}
        return {"body": f"sim:{self.body.engine}", "fell": self.fell_at_s is not None,
                "fall_reason": self.fall_reason, **judged}

    def close(self) -> None:
        self.body.close()


class RealTimeSimBody:
    """A SimBody, standing and active, whose physics catches up with the wall clock whenever it
    is read. Falls behind by more than `max_lag_s` (a stalled process) are skipped, not
    replayed. Its own lifecycle calls are no-ops: the virtual devices in front of it keep
    theirs."""

    def __init__(self, body: SimBody, *, clock=time.monotonic, max_lag_s: float = 0.1):
        self.body, self.clock, self.max_lag_s = body, clock, max_lag_s
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
        return self.body.read()


def trunk_summary(body: SimBody) -> str:
    """Where the trunk is: x, y, height (m)."""
    pos = np.asarray(body.read().privileged.base_pos_m)
    return f"trunk at x {pos[0]:+.3f} m, y {pos[1]:+.3f} m, height {pos[2]:.3f} m"

"""Frozen configs for the simulated body: engine, timing, actuator model and terrain."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ENGINES = ("pybullet", "mujoco")
FRICTION_CONES = ("engine", "pyramid", "elliptic")


@dataclass(frozen=True)
class TerrainConfig:
    """`flat`; `rough`: one heightfield from `rough_seed`; `levels`: a new field every episode
    at the env's level (sim/terrain.py), level l of `levels` having the fraction l / (levels - 1)
    of the top level's roughness (`rough_amplitude_m`) and slope (`slope`: a square ridge
    around the start, climbed then descended). With `curriculum` each env starts at `level`
    and moves up after an episode that ran its length, reached the ridge's crest and covered
    half its commanded distance, down after a fall; without it every episode is at `level`."""

    kind: Literal["flat", "rough", "levels"] = "flat"
    friction: float = 1.0  # ground friction coefficient (randomisation scales it per episode)
    rough_amplitude_m: float = 0.02  # rough: heights uniform in [0, amplitude]
    rough_size_m: float = 8.0  # rough: square patch side length, centred on the origin
    rough_cell_m: float = 0.1  # rough: grid spacing
    rough_seed: int = 0  # rough: the same seed gives the same field in both engines
    levels: int = 10  # levels: how many
    slope: float = 0.1  # levels: the top level's ridge grade (rise over run)
    level: int = 0  # levels: the start level (or the only one, without curriculum)
    curriculum: bool = True  # levels: promote on success, demote on falls

    def __post_init__(self):
        if self.kind not in ("flat", "rough", "levels"):
            raise ValueError(f"kind must be 'flat', 'rough' or 'levels', got {self.kind!r}")
        if self.friction <= 0:
            raise ValueError("friction must be > 0")
        if self.kind != "flat" and not (
            self.rough_amplitude_m >= 0 and self.rough_size_m > 0 and self.rough_cell_m > 0
        ):
            raise ValueError("rough terrain needs amplitude >= 0 and positive size and cell")
        if self.kind == "levels":
            if self.levels < 2:
                raise ValueError(f"levels must be >= 2, got {self.levels}")
            if not 0 <= self.level < self.levels:
                raise ValueError(f"level must be in [0, {self.levels - 1}], got {self.level}")
            if not 0 <= self.slope <= 1:
                raise ValueError(f"slope must be in [0, 1] (rise over run), got {self.slope}")


@dataclass(frozen=True)
class ActuatorConfig:
    """Servo model run at sim_dt: PD from the spec's gains, torque and torque-speed limits
    (sim/actuator.py). `model`: the robot's own (its spec's `actuator`: the servo model, or a
    DC motor where the spec names one), or `servo`, the servo model for any robot."""

    latency_s: float = 0.0  # command latency; rounded to whole physics steps
    torque_speed_limit: bool = True  # available torque falls linearly to 0 at the no-load speed
    model: Literal["spec", "servo"] = "spec"

    def __post_init__(self):
        if self.latency_s < 0:
            raise ValueError("latency_s must be >= 0")


@dataclass(frozen=True)
class SimConfig:
    engine: Literal["pybullet", "mujoco"] = "pybullet"
    sim_dt_s: float = 0.002  # physics step (500 Hz)
    control_dt_s: float = 0.02  # policy period (50 Hz): a whole multiple of sim_dt_s
    actuator: ActuatorConfig = ActuatorConfig()
    terrain: TerrainConfig = TerrainConfig()
    # The accelerometer reads the specific force averaged over this much of the latest physics
    # (whole physics steps, at least one, at most those of the latest step() call). The default,
    # a control period, is what the estimator's figures are measured with. The virtual robot
    # over serial reads its body every physics step or two: to put logs from it in a
    # fine-tune's minibatches, set 0.002, or the critic's estimator inputs differ between the
    # logs and the simulation (README, "Why the logs do not help yet"). A window that short
    # biases the estimate: RMS 0.14 m/s in MuJoCo, 0.7 in PyBullet, on servo_dog's trot.
    accel_window_s: float = 0.02
    # How a contact's friction force is bounded: each engine's own default ("engine":
    # PyBullet's cone, MuJoCo's pyramid), or "pyramid" or "elliptic" (a true cone) in both.
    # The defaults keep the robots' trots closest between the engines (README, "What touches
    # the ground"). Deploy's simulated bodies (`--body sim:ENGINE`) use the defaults.
    friction_cone: Literal["engine", "pyramid", "elliptic"] = "engine"

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.friction_cone not in FRICTION_CONES:
            raise ValueError(f"friction_cone must be one of {FRICTION_CONES}, got "
                             f"{self.friction_cone!r}")
        if not self.accel_window_s > 0:
            raise ValueError(f"accel_window_s must be > 0, got {self.accel_window_s}")
        if not (self.sim_dt_s > 0 and self.control_dt_s > 0):
            raise ValueError("sim_dt_s and control_dt_s must be > 0")
        ratio = self.control_dt_s / self.sim_dt_s
        if abs(ratio - round(ratio)) > 1e-9 * ratio or round(ratio) < 1:
            raise ValueError(
                f"control_dt_s ({self.control_dt_s}) must be a whole multiple of "
                f"sim_dt_s ({self.sim_dt_s}); ratio is {ratio:.6g}"
            )

    @property
    def substeps(self) -> int:
        return round(self.control_dt_s / self.sim_dt_s)

    @property
    def accel_window_steps(self) -> int:
        return max(1, round(self.accel_window_s / self.sim_dt_s))

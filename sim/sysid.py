"""System identification: the dynamics parameters under which replay matches the logs.

    cost(params) = mean over joints of log(RMSE_j + 1e-4 rad), RMSE over every fit log's ticks
                   (a geometric mean: no joint can dominate, none can be ignored)

Search: CMA-ES (the `cma` package) over [0, 1] coordinates mapped onto FIT_RANGES (log scale
where marked), from the middle of every range, finds the basin; the latency, a whole number
of physics steps, rides along as one more coordinate, rounded. Then each candidate latency is
searched exactly: CMA-ES's best is polished by bounded least squares (scipy) at its latency and
at the steps either side (walking on while the best lies at an edge), and the latency whose
polished cost is lowest wins. Candidates are replayed in parallel worker processes.

Before fitting, each parameter's sensitivity (how far the replay moves when the parameter
crosses its range) is checked against the logs: logs with too little motion to identify a
requested parameter are refused, naming it. After fitting, parameters whose effects on the
replay nearly cancel (a near-null direction of the residual Jacobian) are reported as identifiable
only together, e.g. motor_strength with kp_scale and kd_scale (without torque saturation a
stronger motor and higher gains move the joints alike).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import multiprocessing as mp
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gaitforge.robots.spec import RobotSpec

from .dynamics import SCHEMA, DynamicsParams
from .replay import LogCommands, make_replay_body, replay

# name: (low, high, log scale); latency is searched separately, in whole physics steps
FIT_RANGES: dict[str, tuple[float, float, bool]] = {
    "kp_scale": (0.3, 3.0, True),
    "kd_scale": (0.3, 3.0, True),
    "motor_strength": (0.3, 2.0, True),
    "joint_friction_nm": (0.0, 0.3, False),
    "joint_damping_nm_s_per_rad": (0.0, 0.3, False),
    "armature_kg_m2": (1e-4, 0.05, True),
    "trunk_mass_delta_kg": (-0.3, 0.6, False),
    "foot_friction": (0.2, 2.0, True),
}
FITTABLE = ("latency_s", *FIT_RANGES)
PER_LEG = "leg"  # `kp_scale/leg` fits one kp_scale per leg (kp_scale/FR, ...), written per joint
DEFAULT_FIT = ("latency_s", "kp_scale", "kd_scale", "joint_friction_nm", "armature_kg_m2")
IDENTIFIABLE_TOGETHER = 0.95  # see _together
# RMS replay change across a parameter's whole range below which the logs cannot identify it
# (two thirds of an XL430 encoder tick, 2 pi / 4096 = 1.5e-3 rad)
MIN_SENSITIVITY_RAD = 1e-3
RMSE_FLOOR_RAD = 1e-4


class IdentificationError(ValueError):
    """The logs cannot identify what was asked; the message says which parameter and why."""


@dataclass
class Problem:
    """What a cost evaluation needs: the robot, the engine, the logs, the fixed dynamics and
    which parameters vary."""

    spec: RobotSpec
    engine: str
    control_dt_s: float
    support: str
    logs: list[LogCommands]
    base: DynamicsParams
    # continuous parameters being fitted: FIT_RANGES names, or FIELD/LEG for one leg's joints
    names: tuple[str, ...]
    sim_dt_s: float = 0.002

    @functools.cached_property
    def leg_joints(self) -> dict[str, list[int]]:
        return legs(self.spec)

    def params(self, x: np.ndarray, latency_steps: int) -> DynamicsParams:
        """Dynamics for normalised x in [0, 1]^k and a latency in physics steps: a FIELD/LEG
        coordinate sets that leg's joints, the rest of the field keeps the base's values."""
        changes, per_joint = {}, {}
        for name, u in zip(self.names, x, strict=True):
            field_name, _, leg = name.partition("/")
            value = to_value(field_name, float(u))
            if not leg:
                changes[field_name] = value
                continue
            if field_name not in per_joint:
                per_joint[field_name] = self.base.joint_values(field_name, self.spec)
            per_joint[field_name][self.leg_joints[leg]] = value
        changes |= {name: tuple(float(v) for v in joints) for name, joints in per_joint.items()}
        return dataclasses.replace(self.base, latency_s=latency_steps * self.sim_dt_s, **changes)


def to_value(name: str, u: float) -> float:
    """FIT_RANGES' value of `name` (or of FIELD in FIELD/LEG) at u in [0, 1]."""
    low, high, log = FIT_RANGES[name.partition("/")[0]]
    u = min(max(u, 0.0), 1.0)
    return math.exp(math.log(low) + u * (math.log(high) - math.log(low))) if log \
        else low + u * (high - low)


def legs(spec: RobotSpec) -> dict[str, list[int]]:
    """The robot's legs: its joints cut into one run per foot, in order, each named by its
    foot with the words all the feet's names share cut off (FR_foot -> FR, toe_fl -> fl,
    lower_leg_front_leftL_link -> front_leftL). ValueError where the joints do not divide."""
    n, feet = spec.n_joints, spec.feet
    if n % len(feet):
        raise ValueError(f"{spec.name}: {n} joints do not divide among {len(feet)} feet, so "
                         "its legs cannot be told apart for a fit per leg")
    prefix = os.path.commonprefix(feet)  # cut at an underscore: front_leftL, not front_lef
    suffix = os.path.commonprefix([f[::-1] for f in feet])[::-1]
    head = prefix.rfind("_") + 1
    tail = len(suffix) - suffix.find("_") if "_" in suffix else 0
    names = [f[head:len(f) - tail].strip("_") if len(feet) > 1 else f for f in feet]
    if len(set(names)) != len(feet) or not all(names):
        names = list(feet)
    per = n // len(feet)
    return {name: list(range(i * per, (i + 1) * per)) for i, name in enumerate(names)}


def expand_fit(names: list[str], spec: RobotSpec) -> list[str]:
    """Fit names with every FIELD/leg replaced by FIELD/LEG for each of the robot's legs.
    ValueError, naming it, for an unknown name or one that has no value per joint."""
    out = []
    for name in names:
        field_name, _, leg = name.partition("/")
        if field_name not in FITTABLE or (leg and leg != PER_LEG):
            raise ValueError(f"--fit: unknown parameter '{name}' (known: "
                             f"{', '.join(FITTABLE)}; FIELD/{PER_LEG} for one per leg)")
        if leg and not SCHEMA[field_name].per_joint:
            raise ValueError(f"--fit: '{name}': {field_name} is one value for the whole robot, "
                             "not one per joint, so not one per leg either")
        out += [f"{field_name}/{each}" for each in legs(spec)] if leg else [name]
    both = sorted({n.partition("/")[0] for n in names if "/" in n} & set(names))
    if both:
        raise ValueError(f"--fit: {both[0]} is asked for both for the whole robot and per leg; "
                         "name one of them")
    return out


# ---- cost evaluation, in worker processes ------------------------------------------------
_WORKER: dict = {}


def _init_worker(problem: Problem) -> None:
    os.environ.setdefault("MUJOCO_GL", "disable")
    _WORKER["problem"] = problem
    _WORKER["body"] = make_replay_body(problem.spec, problem.engine, problem.control_dt_s,
                                       problem.support, sim_dt_s=problem.sim_dt_s)


def _residuals(params: DynamicsParams) -> np.ndarray:
    """(ticks over all logs, n_joints) replay - log, under `params`."""
    body, problem = _WORKER["body"], _WORKER["problem"]
    body.set_dynamics(params)
    return np.concatenate([replay(body, log).error for log in problem.logs])


def _evaluate(job) -> np.ndarray:
    """Residuals for a job: (normalised x, latency steps), or a DynamicsParams as it is."""
    if isinstance(job, DynamicsParams):
        return _residuals(job)
    x, latency_steps = job
    return _residuals(_WORKER["problem"].params(np.asarray(x), latency_steps))


def cost_of(residuals: np.ndarray) -> float:
    rmse = np.sqrt(np.mean(residuals ** 2, axis=0))
    return float(np.mean(np.log(rmse + RMSE_FLOOR_RAD)))


class Evaluator:
    """Residuals for many candidates at once, in `workers` processes (0: in this one)."""

    def __init__(self, problem: Problem, workers: int):
        self.problem, self.evaluations = problem, 0
        if workers > 0:
            ctx = mp.get_context("spawn")  # engines do not survive fork
            self.pool = ctx.Pool(workers, initializer=_init_worker, initargs=(problem,))
        else:
            self.pool = None
            _init_worker(problem)

    def residuals(self, jobs: list[tuple]) -> list[np.ndarray]:
        self.evaluations += len(jobs)
        if self.pool is None:
            return [_evaluate(job) for job in jobs]
        return self.pool.map(_evaluate, jobs)

    def costs(self, jobs: list[tuple]) -> list[float]:
        return [cost_of(r) for r in self.residuals(jobs)]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
        elif "body" in _WORKER:
            _WORKER.pop("body").close()


# ---- the fit --------------------------------------------------------------------------------
@dataclass
class FitResult:
    params: DynamicsParams
    latency_steps: int
    cost_start: float  # under problem.base, the nominal dynamics
    cost_fit: float
    together: list[tuple[tuple, float]]  # (names, singular value): identifiable only together
    sensitivity_rad: dict[str, float]  # RMS replay change across each parameter's range
    evaluations: int
    latency_costs: dict[int, float] = field(default_factory=dict)


def fit(problem: Problem, *, fit_latency: bool, max_latency_s: float = 0.04,
        generations: int = 25, popsize: int | None = None, workers: int = 2, seed: int = 0,
        progress: Callable[[str, int, float], None] | None = None) -> FitResult:
    """Fit problem.names (and the latency when `fit_latency`) to problem.logs (see the module
    docstring for the search)."""
    import cma

    k = len(problem.names)
    max_steps = round(max_latency_s / problem.sim_dt_s)
    start_steps = round(problem.base.latency_s / problem.sim_dt_s)
    x_start = np.full(k, 0.5)
    ev = Evaluator(problem, workers)
    try:
        sensitivity = _sensitivity(ev, x_start, start_steps, fit_latency, max_steps)
        weak = [n for n, s in sensitivity.items() if s < MIN_SENSITIVITY_RAD]
        if weak:
            raise IdentificationError(
                f"the logs move too little to identify {', '.join(weak)} (crossing its range "
                f"changes the replay by {min(sensitivity[n] for n in weak):.1e} rad RMS, "
                f"less than {MIN_SENSITIVITY_RAD:g}): excite with more motion (gaitforge "
                "excite --support hung) or leave it out of --fit")
        cost_start = ev.costs([problem.base])[0]
        if fit_latency:  # the latency as one more coordinate, in [0, 1] -> 0 .. max_steps
            def split(z):
                return np.asarray(z[:k]), int(round(float(z[k]) * max_steps))
            z, _ = _cma(ev, np.append(x_start, 0.5), split, generations, popsize, seed, cma,
                        progress)
            x, steps = split(z)
        elif k >= 2:
            x, steps = _cma(ev, x_start, lambda z: (np.asarray(z), start_steps), generations,
                            popsize, seed, cma, progress)[0], start_steps
        else:  # CMA-ES needs two dimensions: one parameter is a grid, then the polish
            grid = [np.array([u]) for u in np.linspace(0.0, 1.0, 9)][:9 if k else 1]
            costs = ev.costs([(g if k else x_start, start_steps) for g in grid])
            x, steps = (grid[int(np.argmin(costs))] if k else x_start), start_steps
        x, steps, latency_costs = _polish_and_pick_latency(
            ev, np.asarray(x), steps, fit_latency, max_steps)
        best = ev.costs([(x, steps)])[0]
        together = _together(ev, x, steps) if k >= 2 else []
        return FitResult(problem.params(x, steps), steps, cost_start, best, together,
                         sensitivity, ev.evaluations, latency_costs)
    finally:
        ev.close()


def _polish_and_pick_latency(ev: Evaluator, x, steps: int, fit_latency: bool,
                             max_steps: int) -> tuple[np.ndarray, int, dict[int, float]]:
    """Least-squares polish of CMA-ES's best (scipy's trust-region reflective, residuals
    weighted by each joint's RMSE there), at its latency and, when the latency is fitted, at
    the steps either side, walking on while the best is at an edge."""
    weights = np.sqrt(np.mean(ev.residuals([(x, steps)])[0] ** 2, axis=0)) + RMSE_FLOOR_RAD
    fitted: dict[int, tuple[np.ndarray, float]] = {}

    def at(s: int) -> float:
        if s not in fitted:
            fitted[s] = _polish(ev, x, s, weights)
        return fitted[s][1]

    best = steps
    if fit_latency:
        for s in (steps - 1, steps, steps + 1):
            if 0 <= s <= max_steps:
                at(s)
        best = min(fitted, key=at)
        while best in (min(fitted), max(fitted)):
            nxt = best - 1 if best == min(fitted) else best + 1
            if not 0 <= nxt <= max_steps or nxt in fitted:
                break
            at(nxt)
            if at(nxt) >= at(best):
                break
            best = nxt
    else:
        at(steps)
    return fitted[best][0], best, {s: c for s, (_, c) in fitted.items()}


def _polish(ev: Evaluator, x0, steps: int, weights, max_nfev: int = 10, h: float = 1e-3):
    """(x, cost) after a bounded least-squares refinement of the continuous parameters."""
    from scipy.optimize import least_squares

    if len(x0) == 0:
        return x0, ev.costs([(x0, steps)])[0]
    memo = {}

    def fun(z):
        key = tuple(np.round(z, 12))
        if key not in memo:
            memo.clear()
            memo[key] = ev.residuals([(np.asarray(z), steps)])[0]
        return (memo[key] / weights).ravel()

    def jac(z):
        f0 = fun(z)
        jobs, signs = [], []
        for i in range(len(z)):
            zi = np.array(z, float)
            sign = 1.0 if zi[i] + h <= 1.0 else -1.0
            zi[i] += sign * h
            jobs.append((zi, steps))
            signs.append(sign)
        cols = [((r / weights).ravel() - f0) / (sign * h)
                for r, sign in zip(ev.residuals(jobs), signs, strict=True)]
        return np.stack(cols, axis=1)

    start = np.clip(np.asarray(x0, float), 1e-9, 1 - 1e-9)
    res = least_squares(fun, start, jac=jac, bounds=(0.0, 1.0), method="trf",
                        max_nfev=max_nfev, x_scale="jac")
    x = np.asarray(res.x)
    return x, ev.costs([(x, steps)])[0]


def _cma(ev: Evaluator, z0, split, generations: int, popsize, seed: int, cma, progress,
         sigma: float = 0.3):
    """CMA-ES over z in [0, 1]^d; `split(z)` gives the (x, latency steps) to evaluate."""
    opts = {"bounds": [0.0, 1.0], "seed": seed + 1, "verbose": -9, "maxiter": generations,
            "tolfun": 1e-5}
    if popsize:
        opts["popsize"] = popsize
    es = cma.CMAEvolutionStrategy(list(z0), sigma, opts)
    best_z, best = np.asarray(z0), float("inf")
    while not es.stop():
        zs = es.ask()
        costs = ev.costs([split(np.asarray(z)) for z in zs])
        es.tell(zs, costs)
        i = int(np.argmin(costs))
        if costs[i] < best:
            best_z, best = np.asarray(zs[i]), costs[i]
        if progress is not None:
            progress("cma", es.countiter, best)
    return best_z, best


def _sensitivity(ev: Evaluator, x0, steps: int, fit_latency: bool,
                 max_steps: int) -> dict[str, float]:
    """RMS change of the replay when each parameter goes from the low to the high end of its
    range (latency: 0 to max_steps), all else at x0."""
    names = ev.problem.names
    jobs = []
    for i in range(len(names)):
        lo, hi = x0.copy(), x0.copy()
        lo[i], hi[i] = 0.0, 1.0
        jobs += [(lo, steps), (hi, steps)]
    if fit_latency:
        jobs += [(x0, 0), (x0, max_steps)]
    out = ev.residuals(jobs)
    rms = [float(np.sqrt(np.mean((out[2 * i + 1] - out[2 * i]) ** 2)))
           for i in range(len(out) // 2)]
    return dict(zip([*names, *(["latency_s"] if fit_latency else [])], rms, strict=True))


def _together(ev: Evaluator, x, steps: int, h: float = 0.02) -> list[tuple[tuple, float]]:
    """Groups of fitted parameters that the logs identify only together: the near-null
    directions of the residual Jacobian at x (finite differences, columns scaled to unit
    length). A singular value below 1 - IDENTIFIABLE_TOGETHER (0 would be exactly
    degenerate) names the parameters that weigh in its right singular vector."""
    names = ev.problem.names
    jobs = [(x, steps)]
    for i in range(len(names)):
        step = x.copy()
        step[i] = step[i] + h if step[i] + h <= 1.0 else step[i] - h
        jobs.append((step, steps))
    out = ev.residuals(jobs)
    cols = np.stack([(r - out[0]).ravel() for r in out[1:]], axis=1)
    norms = np.linalg.norm(cols, axis=0)
    if not norms.all():
        return [((names[i],), 0.0) for i in np.flatnonzero(norms == 0)]
    _, sv, vt = np.linalg.svd(cols / norms, full_matrices=False)
    groups = []
    for value, vector in zip(sv, vt, strict=True):
        if value < 1.0 - IDENTIFIABLE_TOGETHER:
            members = tuple(names[i] for i in np.flatnonzero(np.abs(vector) > 0.3))
            groups.append((members, float(value)))
    return groups

"""Config composition, later layers winning:
    configs/robots/<robot>.yaml <- configs/tasks/<task>.yaml <- configs/engines/<engine>.yaml
    <- configs/default.yaml <- the user's file <- --set key=value
where robot, task and engine are read from the last three layers.

Every layer is YAML under `configs/` (installed as gaitforge.configs). The result is a frozen
RunConfig; unknown keys anywhere are rejected with their dotted path and the file.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from gaitforge import configs
from gaitforge.agents.config import SACConfig, TD3Config
from gaitforge.agents.ray_collect import RayConfig
from gaitforge.agents.trainer import TrainConfig
from gaitforge.robots.configio import (
    ConfigError,
    apply_overrides,
    deep_merge,
    from_dict,
    load_yaml,
    to_dict,
)
from gaitforge.robots.spec import available_robots
from gaitforge.sim.config import ENGINES
from gaitforge.sim.env import EnvConfig
from gaitforge.sim.tasks import TASKS
from gaitforge.sim.vec_env import VecEnvConfig

CONFIG_DIR = Path(configs.__file__).resolve().parent
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


@dataclass(frozen=True)
class EvalConfig:
    """How `train` and `eval` judge a locomotion policy (deterministic actor)."""

    command: tuple[float, float, float] = (0.3, 0.0, 0.0)  # vx m/s, vy m/s, yaw rad/s
    episode_length_s: float = 20.0
    # cell name -> command, sized to the robot (its file in configs/robots/): `eval --grid`
    grid: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    # terrain kind `levels`: the level every evaluation episode runs on, the curriculum held
    # (None: the top level, the roughest ground the run trains for)
    terrain_level: int | None = None

    def __post_init__(self):
        if self.episode_length_s <= 0:
            raise ValueError("episode_length_s must be > 0")


@dataclass(frozen=True)
class FineTuneSection:
    """Where a fine-tune run came from (`gaitforge finetune`); empty for a run from scratch."""

    parent_run: str = ""  # the run whose agent was fine-tuned
    parent_checkpoint: str = ""
    parent_bundle_sha256: str = ""  # the bundle exported from that run, if any ("": none)
    logs: dict[str, str] = field(default_factory=dict)  # episode log path -> its sha256
    sim_mix: float = 0.5  # fraction of each minibatch from fresh simulation (RLPD: 0.5)
    critic_warmup_updates: int = 0  # updates of the critic alone before the actor learns
    # share of the fresh-simulation envs that keep the parent run's own dynamics (and
    # randomisation) beside the identified ones, so the policy does not unlearn them
    rehearse: float = 0.0
    # > 0: what is evaluated, checkpointed and exported is a Polyak average of the actor,
    # moved this far toward it per update (0: the actor itself)
    actor_average: float = 0.0
    # after each evaluation the actor goes on from the best checkpoint so far (a worse one is
    # undone), anchored there (agents/finetune.py, Ratchet); `gaitforge finetune` sets it
    # (--ratchet, on by default), a fine-tune saved before it existed resumes without it
    ratchet: bool = False

    def __post_init__(self):
        for name in ("sim_mix", "rehearse", "actor_average"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.critic_warmup_updates < 0:
            raise ValueError("critic_warmup_updates must be >= 0")


@dataclass(frozen=True)
class RunConfig:
    env: EnvConfig = EnvConfig()
    env_id: str = ""  # "": the locomotion env above; else "gym:<id>" or "dmc:<domain>-<task>"
    # `agent: {name: sac | td3, ...that agent's fields}`, flat; `name` picks the class
    agent: SACConfig | TD3Config = SACConfig()
    vec_env: VecEnvConfig = VecEnvConfig()  # how many envs collect, in how many processes
    train: TrainConfig = TrainConfig()
    evaluation: EvalConfig = EvalConfig()
    finetune: FineTuneSection = FineTuneSection()
    ray: RayConfig = RayConfig()  # collection on a Ray cluster (`gaitforge train --ray`)

    def __post_init__(self):
        if self.train.overlap and self.vec_env.workers < 1 and not self.ray.enabled:
            raise ValueError("train.overlap needs vec_env.workers >= 1 (the envs step in their "
                             "processes while the agent learns)")
        level, terrain = self.evaluation.terrain_level, self.env.sim.terrain
        if level is not None and not (terrain.kind == "levels" and 0 <= level < terrain.levels):
            raise ValueError(f"evaluation.terrain_level {level} needs env.sim.terrain kind "
                             f"'levels' with more than {level} levels")

    def evaluation_env(self) -> EnvConfig:
        """The env evaluation runs: the training env, on terrain levels at one fixed level."""
        terrain = self.env.sim.terrain
        if terrain.kind != "levels":
            return self.env
        level = terrain.levels - 1 if self.evaluation.terrain_level is None \
            else self.evaluation.terrain_level
        terrain = dataclasses.replace(terrain, level=level, curriculum=False)
        return dataclasses.replace(
            self.env, sim=dataclasses.replace(self.env.sim, terrain=terrain))


def upgrade_saved_config(data: dict) -> dict:
    """A run config saved by an older gaitforge, with its keys moved to where they live now
    (so older run folders still evaluate, export and resume): `agent.utd` -> `train.utd`,
    `train.num_envs` / `train.workers` -> `vec_env.`. Anything else is returned as is."""
    moves = {("agent", "utd"): ("train", "utd"), ("train", "num_envs"): ("vec_env", "num_envs"),
             ("train", "workers"): ("vec_env", "workers")}
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for (section, key), (to_section, to_key) in moves.items():
        if isinstance(out.get(section), dict) and key in out[section]:
            value = out[section].pop(key)
            target = out.get(to_section) if isinstance(out.get(to_section), dict) else {}
            out[to_section] = {to_key: value, **target}
    return out


def _name(data: dict, path: tuple[str, ...], default: str) -> str:
    node = data
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def _overlay(kind: str, name: str, known) -> dict:
    if name not in known:
        raise ConfigError(f"unknown {kind} '{name}' (known: {', '.join(sorted(known))})")
    path = CONFIG_DIR / f"{kind}s" / f"{name}.yaml"
    return load_yaml(path) if path.is_file() else {}


def compose(config_path: str | Path | None = None, overrides: list[str] | tuple = ()) -> dict:
    """The merged plain-dict config (what gets saved beside a run)."""
    user = load_yaml(DEFAULT_CONFIG)
    if config_path:
        user = deep_merge(user, load_yaml(config_path))
    user = apply_overrides(user, list(overrides))
    robot = _name(user, ("env", "robot"), "servo_dog")
    task = _name(user, ("env", "task", "name"), "walk")
    engine = _name(user, ("env", "sim", "engine"), "pybullet")
    merged = _overlay("robot", robot, available_robots())
    merged = deep_merge(merged, _overlay("task", task, TASKS))
    merged = deep_merge(merged, _overlay("engine", engine, ENGINES))
    return deep_merge(merged, user)


def load_run_config(config_path: str | Path | None = None,
                    overrides: list[str] | tuple = ()) -> RunConfig:
    source = str(config_path or DEFAULT_CONFIG)
    if overrides:
        source += " (with --set " + " ".join(overrides) + ")"
    return from_dict(RunConfig, compose(config_path, overrides), source=source)


def env_config(robot: str = "servo_dog", task: str = "walk", engine: str = "pybullet",
               overrides: list[str] | tuple = ()) -> EnvConfig:
    """Compose the default config for one robot x task x engine."""
    sets = [f"env.robot={robot}", f"env.task.name={task}", f"env.sim.engine={engine}"]
    return load_run_config(None, [*sets, *overrides]).env


def dump(config) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def env_fns(run: RunConfig):
    """(factory of one training env, its name) for the locomotion env or an external one."""
    if run.env_id:
        from gaitforge.sim.external import external_env_factory

        return external_env_factory(run.env_id), run.env_id.replace(":", "-")
    from gaitforge.sim.env import env_factory

    e = run.env
    return env_factory(e), f"{e.robot}-{e.task.name}-{e.sim.engine}"


def evaluator(run: RunConfig, episodes: int, frames: list | None = None, grid: bool = False):
    """`evaluate(agent) -> dict` with the deterministic actor: locomotion metrics (with `grid`:
    {cell: metrics} over `evaluation.grid`), or the mean return of an external env."""
    from gaitforge.sim.evaluation import evaluate_grid, evaluate_locomotion, evaluate_returns

    if grid:
        cells = {} if run.env_id else run.evaluation.grid or load_run_config(
            None, [f"env.robot={run.env.robot}"]).evaluation.grid  # (a run saved before grids)
        if not cells:
            raise ConfigError(f"evaluation.grid: none for {run.env_id or run.env.robot} (a "
                              "robot file in configs/robots/ names its command grid)")
        return lambda agent: evaluate_grid(
            lambda o: agent.act(o, deterministic=True), run.evaluation_env(), dict(cells),
            episodes=episodes, episode_length_s=run.evaluation.episode_length_s)
    if run.env_id:
        factory, _ = env_fns(run)
        return lambda agent: evaluate_returns(lambda o: agent.act(o, deterministic=True),
                                              factory, episodes=episodes)
    ev = run.evaluation
    return lambda agent: evaluate_locomotion(
        lambda o: agent.act(o, deterministic=True), run.evaluation_env(), episodes=episodes,
        command=ev.command, episode_length_s=ev.episode_length_s, frames=frames)

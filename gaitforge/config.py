"""Config composition: robot overlay <- task overlay <- engine overlay <- user file <- --set.

Every layer is YAML under `configs/` (installed as gaitforge.configs). The result is a frozen
RunConfig; unknown keys anywhere are rejected with their dotted path and the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from gaitforge import configs
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
from gaitforge.sim.tasks import DEFAULT_WEIGHTS

CONFIG_DIR = Path(configs.__file__).resolve().parent
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
TASKS = tuple(DEFAULT_WEIGHTS)


@dataclass(frozen=True)
class RunConfig:
    env: EnvConfig = EnvConfig()


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
    source = Path(config_path) if config_path else DEFAULT_CONFIG
    user = apply_overrides(load_yaml(source), list(overrides))
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

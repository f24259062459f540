"""`gaitforge train --ray [ADDRESS]`: the run's collection on Ray collector actors
(agents/ray_collect.py), its learning in this process (agents/ray_trainer.py). The run folder,
checkpoints, TensorBoard and `--resume` are those of single-machine training."""

from __future__ import annotations

import functools
import sys

from gaitforge.robots.configio import ConfigError

from .run_config import RunConfig, env_fns, evaluator


def require_ray(source: str) -> None:
    """A ConfigError saying how to install Ray, where the config asks for it and it is absent."""
    from gaitforge.agents.ray_collect import import_ray

    try:
        import_ray()
    except ImportError as err:
        raise ConfigError(f"{source}: ray.enabled is set, but {err}") from None


def collector_env(factory, num_envs: int):
    """One collector's vectorised env: its envs step in the collector's own process."""
    from gaitforge.sim.vec_env import VecEnv

    return VecEnv([factory] * num_envs, workers=0)


class RaySession:
    """Closes what `ray_trainer` opened: Ray itself, if this process started or joined it."""

    def __init__(self, connected: bool):
        self.connected = connected

    def close(self) -> None:
        if self.connected:
            import ray

            ray.shutdown()
            self.connected = False


def ray_trainer(run: RunConfig, agent, env, run_dir, source: str, warn=None):
    """(RayTrainer, RaySession) for `run`; `env` (built for its spaces) is closed."""
    from gaitforge.agents.ray_collect import connect
    from gaitforge.agents.ray_trainer import RayTrainer

    env.close()  # only its spaces are read from here on
    r = run.ray
    try:
        connected = connect(r.address)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ConfigError(f"{source}: ray.address {r.address!r}: cannot join Ray: {err}") \
            from None
    session = RaySession(connected)
    import ray

    cpus = ray.cluster_resources().get("CPU", 0.0)
    if r.collectors * r.collector_cpus > cpus:
        session.close()
        raise ConfigError(f"{source}: ray.collectors ({r.collectors}) x ray.collector_cpus "
                          f"({r.collector_cpus:g}) is more than the {cpus:g} CPUs of the "
                          "Ray cluster")
    factory, _ = env_fns(run)
    make = functools.partial(collector_env, factory, run.vec_env.num_envs)
    trainer = RayTrainer(agent, make, env, run.train, r, run_dir / "checkpoints",
                         evaluate=evaluator(run, run.train.eval_episodes), warn=warn)
    print(f"ray: {r.collectors} collector{'s' * (r.collectors != 1)} x "
          f"{run.vec_env.num_envs} envs on a cluster of "
          f"{cpus:g} CPUs; learning here (vec_env.workers and train.overlap do not apply)",
          file=sys.stderr)
    return trainer, session

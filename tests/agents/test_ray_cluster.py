"""Ray collection on a real local Ray cluster (the session's `ray_cluster`, no mock): collectors
run apart with one TensorFlow thread, no GPU and their own PyBullet DIRECT client; each
collector's episodes are the same whatever order batches arrive in; a collector that is killed
or whose env raises is replaced, and no delivered transition is lost or counted twice; the
multi-node path on a two-node cluster, losing a node mid-run."""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from pathlib import Path

import gymnasium
import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is the optional extra [ray]: pip install -e '.[ray]'")

from gaitforge.agents import config_class, make_agent  # noqa: E402
from gaitforge.agents.ray_collect import (  # noqa: E402
    RayConfig,
    actor_state,
    collector_seed,
    collector_streams,
    rows_checksum,
)
from gaitforge.agents.ray_trainer import CollectorPool, CollectorsSpent, RayTrainer  # noqa: E402
from gaitforge.agents.trainer import TrainConfig  # noqa: E402
from gaitforge.sim.vec_env import VecEnv  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sim"))
import fake_envs  # noqa: E402

# the workers cannot import these test modules: their classes travel by value
ray.cloudpickle.register_pickle_by_value(fake_envs)
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

SMALL = config_class("sac")(actor_hidden=(16,), critic_hidden=(16,), batch_size=16)
SPEC = ("sac", SMALL, fake_envs.OBS_DIM, 2)


class SlowEnv(fake_envs.PointMassEnv):
    """Sleeps `delays[s]` seconds a step, s being the seed of its first reset."""

    def __init__(self, delays: dict):
        super().__init__()
        self.delays, self.delay = delays, None

    def reset(self, *, seed=None, options=None):
        if self.delay is None:
            self.delay = self.delays.get(seed, 0.0)
        return super().reset(seed=seed, options=options)

    def step(self, action):
        time.sleep(self.delay)
        return super().step(action)


class FailOnceEnv(fake_envs.PointMassEnv):
    """Raises on its `at_step`-th step in the first env, of any process, to claim `marker`.
    Each step takes `step_s` seconds, 0.05 s while the file `pause` exists (so that a run
    cannot end before a replacement collector has shown up, however slow the machine)."""

    def __init__(self, marker: str, at_step: int, step_s: float = 0.0, pause: str = ""):
        super().__init__()
        self.marker, self.at_step, self.step_s, self.pause = marker, at_step, step_s, pause
        self.n = 0

    def step(self, action):
        self.n += 1
        if self.n == self.at_step and _claim(self.marker):
            raise ValueError("the env failed once")
        time.sleep(0.05 if self.pause and os.path.exists(self.pause) else self.step_s)
        return super().step(action)


class BrokenEnv(fake_envs.PointMassEnv):
    def __init__(self):
        raise ValueError("this env never builds")


class PyBulletProbe(gymnasium.Wrapper):
    """The locomotion env, telling which process holds its PyBullet client and how."""

    def connection(self) -> dict:
        import pybullet

        client = self.env.unwrapped.body.client._client
        return {"pid": os.getpid(), "client": client,
                **pybullet.getConnectionInfo(physicsClientId=client)}


def _pybullet_env():
    from gaitforge.sim.env import EnvConfig, make_env

    return PyBulletProbe(make_env(EnvConfig()))


def _claim(marker: str) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


class _Scalars:
    """A logger that keeps what it is given."""

    def __init__(self):
        self.tags: dict[str, list] = {}

    def scalar(self, tag, value, step):
        self.tags.setdefault(tag, []).append((step, value))

    def flush(self):
        pass


def _trainer(tmp_path, make_vec_env, *, total, warmup, **ray_fields):
    agent = make_agent("sac", SMALL, fake_envs.OBS_DIM, 2, seed=1)
    probe = VecEnv([fake_envs.PointMassEnv] * 2)  # the spaces of every env used here
    probe.close()
    t = TrainConfig(total_env_steps=total, warmup_steps=warmup, eval_every_steps=100_000,
                    checkpoint_every_steps=100_000, log_every_steps=500)
    rc = RayConfig(enabled=True, batch_steps=16, **ray_fields)
    return RayTrainer(agent, make_vec_env, probe, t, rc, tmp_path / "ckpt", logger=_Scalars())


class _Holdup:
    """Slows every env (the `pause` file) from `hold()` until collector `i`'s replacement,
    a later incarnation than `incarnation`, has delivered a batch."""

    def __init__(self, path: Path):
        self.path, self.waiting_for = path, None

    def hold(self, i: int, incarnation: int) -> None:
        self.path.touch()
        self.waiting_for = (i, incarnation)

    def check(self, trainer) -> None:
        if self.waiting_for and any(e["collector"] == self.waiting_for[0] and e["incarnation"]
                                    > self.waiting_for[1] for e in trainer.ledger):
            self.path.unlink()
            self.waiting_for = None


def _check_ledger_against_replay(trainer):
    """Every delivered batch is in the replay once, whole and in order; nothing else is."""
    keys = [(e["collector"], e["incarnation"], e["index"]) for e in trainer.ledger]
    assert len(keys) == len(set(keys)) and trainer.duplicates == 0
    assert sum(e["n"] for e in trainer.ledger) == trainer.env_steps == trainer.replay.size()
    state = trainer.replay.get_state()
    rows = {f: state[f"main/{f}"] for f in trainer.replay.shapes}
    start = 0
    for entry in trainer.ledger:
        chunk = {f: v[start:start + entry["n"]] for f, v in rows.items()}
        assert rows_checksum(chunk) == entry["checksum"]
        start += entry["n"]


def test_a_collector_runs_apart_with_one_thread_no_gpu_and_its_own_direct_client(ray_cluster):
    import pybullet

    make = functools.partial(VecEnv, [_pybullet_env])  # one env: one DIRECT client per actor
    probe = make()
    obs_dim, act_dim = probe.single_observation_space.shape[0], probe.single_action_space.shape[0]
    probe.close()
    learner = make_agent("sac", SMALL, obs_dim, act_dim, seed=0)
    pool = CollectorPool(make, ("sac", SMALL, obs_dim, act_dim), False,
                         RayConfig(collectors=1, batch_steps=4), seed=0, start_env_steps=0)
    try:
        pool.submit(0, (0, pool.put(actor_state(learner))))  # the arrays, put once
        batches = []
        while not batches:
            batches = pool.wait(timeout=60)
        [info] = pool.describe()
        [link] = ray.get(pool.actors[0].env_call.remote("connection"))
    finally:
        pool.close()
    assert batches[0]["version"] == 0  # it acted with the weights
    assert info["pid"] != os.getpid() and batches[0]["pid"] == info["pid"]
    assert info["cuda_visible_devices"] == "" and info["ray_gpu_ids"] == []
    assert info["tf_gpus"] == [] and info["tf_threads"] == (1, 1)
    assert link["pid"] == info["pid"]  # the client lives in the collector's process
    assert link["isConnected"] == 1 and link["connectionMethod"] == pybullet.DIRECT


def _arrivals(delays: dict) -> tuple[list[int], dict[int, list]]:
    make = functools.partial(VecEnv, [functools.partial(SlowEnv, delays)] * 2)
    pool = CollectorPool(make, SPEC, False, RayConfig(collectors=2, batch_steps=16), seed=9,
                         start_env_steps=0, preload=False)
    order, got = [], {0: [], 1: []}
    try:
        for i in range(2):
            pool.submit(i, None)
        while min(len(v) for v in got.values()) < 4:
            for b in pool.wait(timeout=60):
                order.append(b["collector"])
                got[b["collector"]].append((b["checksum"], [e["digest"] for e in b["episodes"]]))
                if len(got[b["collector"]]) < 4:
                    pool.submit(b["collector"], None)
    finally:
        pool.close()
    return order, got


def test_each_collectors_episodes_are_the_same_whatever_order_they_arrive_in(ray_cluster):
    env_seeds = [collector_streams(collector_seed(9, 0, i, 0))[0] for i in range(2)]
    slow = [{s: 0.02, s + 1: 0.02} for s in env_seeds]  # both envs of one collector slow
    order_a, got_a = _arrivals(slow[0])
    order_b, got_b = _arrivals(slow[1])
    assert order_a[-1] == 0 and order_b[-1] == 1 and order_a != order_b  # different orders
    assert got_a == got_b  # per collector: the same batches and episodes, by checksum
    assert sum(len(d) for _, d in got_a[0]) > 0


def test_a_failed_collector_is_replaced_and_no_transition_is_lost_or_counted_twice(
        ray_cluster, tmp_path):
    holdup = _Holdup(tmp_path / "pause")
    fail = functools.partial(FailOnceEnv, str(tmp_path / "raised"), 60, 0.0, str(holdup.path))
    make = functools.partial(VecEnv, [fail] * 2)
    trainer = _trainer(tmp_path, make, total=1800, warmup=1000, max_restarts=2)
    killed = []

    def kill_a_collector(t):  # SIGKILL from outside, mid-run, after the env's failure
        holdup.check(t)
        if not killed and t.restarts and t.restarts[0]["recover_s"] and t.env_steps >= 500:
            killed.append([e for e in t.ledger if e["collector"] == 0][-1])
            holdup.hold(0, killed[0]["incarnation"])
            os.kill(killed[0]["pid"], signal.SIGKILL)

    trainer.train(progress=kill_a_collector)
    assert trainer.env_steps >= 1800 and killed
    assert len(trainer.restarts) == 2 and all(r["recover_s"] > 0 for r in trainer.restarts)
    assert "the env failed once" in trainer.restarts[0]["error"]
    _check_ledger_against_replay(trainer)
    # the killed collector's replacement delivered, and learning went on after the kill
    after = trainer.ledger[trainer.ledger.index(killed[0]) + 1:]
    assert any(e["collector"] == 0 and e["incarnation"] > killed[0]["incarnation"]
               for e in after)
    assert max(e["version"] for e in after) > 0
    # utd = 1: one update per transition received once warm-up was over, none owed at the end
    steps = np.cumsum([e["n"] for e in trainer.ledger])
    learnable = sum(e["n"] for e, s in zip(trainer.ledger, steps, strict=True) if s >= 1000)
    assert trainer.updates == learnable
    logged = trainer.logger.tags
    assert logged["ray/collector_restarts"][-1][1] == 2
    assert "ray/policy_lag_mean" in logged and "ray/policy_lag_max" in logged


def test_the_learner_gives_up_when_the_restart_budget_is_spent(ray_cluster, tmp_path):
    make = functools.partial(VecEnv, [BrokenEnv] * 2)
    trainer = _trainer(tmp_path, make, total=500, warmup=100, collectors=1, max_restarts=1)
    with pytest.raises(CollectorsSpent, match=r"restart budget \(ray.max_restarts = 1\) is spent"
                       ) as spent:
        trainer.train()
    assert len(trainer.restarts) == 1
    assert "gaitforge train --resume RUN" in str(spent.value)  # how to go on


def test_two_nodes_collect_and_losing_one_mid_run_loses_nothing(ray_cluster, tmp_path):
    node = ray_cluster.add_node(num_cpus=1)
    ray_cluster.wait_for_nodes()
    holdup = _Holdup(tmp_path / "pause")
    paced = functools.partial(FailOnceEnv, str(tmp_path / "never"), 10**9, 0.002,
                              str(holdup.path))
    make = functools.partial(VecEnv, [paced] * 2)
    # random actions only (warm-up to the end): the replacement acts at once
    trainer = _trainer(tmp_path, make, total=2000, warmup=2000, max_restarts=1)
    dropped = []

    def drop_the_second_node(t):
        holdup.check(t)
        if not dropped and len({e["node"] for e in t.ledger}) == 2 and t.env_steps >= 400:
            dropped.append(t.env_steps)
            lost = [e for e in t.ledger if e["node"] == node.node_id][-1]
            holdup.hold(lost["collector"], lost["incarnation"])
            ray_cluster.remove_node(node)

    try:
        trainer.train(progress=drop_the_second_node)
    finally:
        if not dropped:
            ray_cluster.remove_node(node)
    assert dropped, "the collectors never ran on two nodes"
    assert len(trainer.restarts) == 1 and trainer.restarts[0]["recover_s"] > 0
    _check_ledger_against_replay(trainer)
    head = ray_cluster.head_node.node_id
    assert {e["node"] for e in trainer.ledger[-4:]} == {head} and trainer.env_steps >= 2000

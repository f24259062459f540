"""Shared fixtures: robot specs loaded once, and simulated bodies that are closed afterwards."""

from __future__ import annotations

import functools

import pytest

from gaitforge.robots.spec import load_robot_spec
from gaitforge.sim.config import SimConfig


@pytest.fixture(scope="session")
def robot_spec():
    """`robot_spec(name) -> RobotSpec`, each robot loaded once per session (specs are frozen)."""
    return functools.cache(load_robot_spec)


@pytest.fixture
def sim_body():
    """`sim_body(spec, engine, fixed_base=False, **SimConfig fields)` -> an active SimBody.

    Every body built through the factory is closed at teardown (PyBullet holds a client).
    """
    from gaitforge.sim.env import make_body

    bodies = []

    def factory(spec, engine, *, fixed_base=False, **sim_fields):
        body = make_body(spec, SimConfig(engine=engine, **sim_fields), fixed_base=fixed_base)
        bodies.append(body)
        body.configure()
        body.activate()
        return body

    yield factory
    for body in bodies:
        body.close()


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """`tiny_tmpfs(size_kib) -> Path`: a real, small file system (tmpfs) that fills up, for
    disk-full tests. Needs root (mount); skipped with the reason where it cannot be mounted."""
    import subprocess

    mounts = []

    def factory(size_kib: int):
        folder = tmp_path / f"tmpfs{len(mounts)}"
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs",
                               str(folder)], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs for a disk-full test (needs root): "
                        f"{done.stderr.strip() or done.returncode}")
        mounts.append(folder)
        return folder

    yield factory
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], check=False)


# --- Ray (the optional extra [ray]) -------------------------------------------------------

RAY_MISSING = "Ray is the optional extra [ray]: pip install -e '.[ray]'"
_ray_cluster: list = []  # the session's cluster while it runs
_last_ray_test: list = []  # pytest node id of the last test that uses it


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster shared by every Ray test of the session: a head node with
    2 CPUs, as `ray.init(num_cpus=2)` starts, built with `ray.cluster_utils.Cluster` so that
    the multi-node test can add a second node (and take it away). This process is connected.
    Shut down right after the last test that uses it, so it idles under no other test."""
    import logging

    ray = pytest.importorskip("ray", reason=RAY_MISSING)
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    # the workers' output (TensorFlow's start-up lines) stays out of the test log; a failing
    # collector still reaches the tests through the error Ray raises
    ray.init(address=cluster.address, logging_level=logging.WARNING, log_to_driver=False)
    _ray_cluster.append(cluster)
    yield cluster
    _shutdown_ray_cluster()


def _shutdown_ray_cluster() -> None:
    if _ray_cluster:
        import ray

        ray.shutdown()
        _ray_cluster.pop().shutdown()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session, config, items):
    """The tests that use the Ray cluster run one after another, where the first of them
    stood (the others keep their order), so the cluster lives only while they run."""
    users = [item for item in items if "ray_cluster" in getattr(item, "fixturenames", ())]
    if users:
        first = items.index(users[0])
        others = [item for item in items if item not in users]
        items[:] = others[:first] + users + others[first:]
    _last_ray_test[:] = [item.nodeid for item in users[-1:]]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield  # the test's own fixtures first
    if _last_ray_test and item.nodeid == _last_ray_test[0]:
        _shutdown_ray_cluster()

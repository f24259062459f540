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

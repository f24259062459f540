"""Shared by the CLI tests: `gaitforge virtual-robot` in its own process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import pytest


@contextlib.contextmanager
def virtual_robot_process(*args: str):
    """Start `gaitforge virtual-robot ARGS`; yield (process, {"port": ..., "imu_port": ...})
    once it serves; terminate it afterwards."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "gaitforge.cli", "virtual-robot", *args],
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        paths, deadline = {}, time.time() + 60
        while "serving" not in paths and time.time() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"virtual-robot exited with {proc.returncode}")
            key, _, value = line.partition(": ")
            paths[key if value else "serving"] = value.strip()
        yield proc, paths
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def virtual_robot():
    """`with virtual_robot(*args) as (process, paths):` see virtual_robot_process."""
    return virtual_robot_process

"""Shared fixtures. Ray tests use ONE session-scoped local Ray instance (on the development machines
and CI the suite runs in a private loopback network namespace, see CONTRIBUTING.md)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance shared by every Ray test of the session, shut down at the end."""
    ray = pytest.importorskip("ray")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    started = False
    if not ray.is_initialized():
        # "local": a new instance, never the cluster a `ray start` left in /tmp/ray/ray_current_cluster
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        started = True
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_backend(ray_session):
    """A Ray backend for one test module (warm actors shared by its tests), closed after the module."""
    from codedbft.cluster.ray_backend import RayBackend

    b = RayBackend(num_cpus=0.1, max_restarts=3)
    yield b
    b.close()

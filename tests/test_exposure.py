"""Ray exposure: an embedded instance started by codedbft listens on loopback only (Ray's services
run submitted code without authentication), and codedbft itself opens no port."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from codedbft.cluster import RunConfig

SCRIPT = textwrap.dedent("""
    import json, os
    from codedbft.cluster.ray_backend import init_ray
    import ray
    assert init_ray(None)
    @ray.remote
    def f():
        return 1
    ray.get(f.remote())  # a worker process is up too
    listen = []
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in open(path).read().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A":  # LISTEN
                listen.append(parts[1].split(":")[0])
    print(json.dumps({"node": ray.nodes()[0]["NodeManagerAddress"], "listen": listen}))
    ray.shutdown()
""")

LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


@pytest.mark.ray
def test_the_embedded_instance_binds_every_port_to_loopback():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=180,
                         env={**env, "RAY_USAGE_STATS_ENABLED": "0"})
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["node"] == "127.0.0.1"
    # no socket of this network namespace listens on every interface (0.0.0.0 / ::) or a public address
    assert got["listen"] and set(got["listen"]) <= LOOPBACK, got["listen"]


def test_ray_host_must_be_an_address():
    assert RunConfig().ray_host == "127.0.0.1"
    with pytest.raises(ValueError, match="ray_host must be an IP address"):
        RunConfig(ray_host="my laptop")

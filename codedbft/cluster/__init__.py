"""The training runtime: :class:`Master`, the ``local`` and ``ray`` backends, the run directory.

::

    from codedbft.cluster import Master, RunConfig
    summary = Master(RunConfig(backend="local", steps=100), run_dir="runs/demo").run()

Only the master and the config are imported eagerly; the Ray backend imports Ray on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from codedbft._lazy import lazy_getattr

from codedbft.cluster.config import RunConfig

_LAZY = {
    "Master": "codedbft.cluster.master",
    "model_sha256": "codedbft.cluster.master",
    "make_backend": "codedbft.cluster.master",
    "BACKENDS": "codedbft.cluster.backend",
    "Adversary": "codedbft.cluster.adversary",
    "Coalition": "codedbft.cluster.adversary",
    "LocalBackend": "codedbft.cluster.local",
    "RayBackend": "codedbft.cluster.ray_backend",
    "init_ray": "codedbft.cluster.ray_backend",
    "RunDir": "codedbft.cluster.rundir",
    "WorkerSpec": "codedbft.cluster.worker",
    "WorkerCore": "codedbft.cluster.worker",
}

__all__ = ["RunConfig", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from codedbft.cluster.local import LocalBackend
    from codedbft.cluster.master import Master, make_backend, model_sha256
    from codedbft.cluster.ray_backend import RayBackend, init_ray
    from codedbft.cluster.rundir import RunDir
    from codedbft.cluster.worker import WorkerCore, WorkerSpec


__getattr__ = lazy_getattr(__name__, globals(), _LAZY)

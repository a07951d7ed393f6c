"""The run directory: everything a run produces, in one place, written atomically.

::

    DIR/config.json        the RunConfig (``codedbft train --resume DIR`` reads it back)
    DIR/metrics.jsonl      one JSON object per logged step
    DIR/summary.json       final loss/accuracy, model_sha256, flag totals, wall time
    DIR/checkpoints/       ckpt-<step>.pt every ``checkpoint_every`` steps (the last two kept)
    DIR/plots/             loss.png, accuracy.png (matplotlib, Agg backend)

Every file but metrics.jsonl is written to a temporary name in the same directory, flushed and
``os.fsync``-ed, then ``os.replace``-d (and the directory fsync-ed), so a run killed mid-write (even
by ``kill -9`` or a power cut) leaves the previous version intact; a failed write (``ENOSPC``, ...)
removes its temporary file and re-raises the ``OSError`` with ``filename`` set to the file it was
writing. :meth:`RunDir.load_checkpoint` skips an unreadable checkpoint (torn, truncated, garbage)
with a warning naming it and falls back to the previous one (see docs/reliability.md).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
import warnings
from typing import Any, BinaryIO, Callable, Iterable

import torch


def _fsync_dir(path: Path) -> None:
    """fsync a directory so a rename in it survives a crash (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """``write(f)`` into a temporary file next to ``path``, flush + fsync, rename onto ``path``, fsync
    the directory. On any error the temporary file is removed and ``path`` is left as it was; an
    ``OSError`` gets ``filename`` = ``path`` when it had none (a full disk: ``errno.ENOSPC``)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as err:
        if err.filename is None:
            err.filename = str(path)
        raise
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError) and err.filename is None:
            err.filename = str(path)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file in the same directory, then rename)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n").encode())


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, (set, frozenset, tuple)):
        return list(x)
    return str(x)


class RunDir:
    """Files of one run under ``root`` (created on first use)."""

    KEEP = 2

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path = self.root / "config.json"
        self.metrics_path = self.root / "metrics.jsonl"
        self.summary_path = self.root / "summary.json"
        self.ckpt_dir = self.root / "checkpoints"
        self.plots_dir = self.root / "plots"

    # -- config and summary ---------------------------------------------------------------------
    def write_config(self, config: dict[str, Any]) -> None:
        atomic_write_json(self.config_path, config)

    def read_config(self) -> dict[str, Any]:
        if not self.config_path.exists():
            raise ValueError(f"{self.root} is not a run directory (no config.json)")
        return json.loads(self.config_path.read_text())

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.summary_path, summary)

    # -- metrics --------------------------------------------------------------------------------
    def append_metrics(self, rows: Iterable[dict[str, Any]]) -> None:
        """Append rows (one JSON object per line); flushed so a crash loses at most a partial line."""
        text = "".join(json.dumps(r, default=_jsonable) + "\n" for r in rows)
        if text:
            try:
                with open(self.metrics_path, "a") as f:
                    f.write(text)
                    f.flush()
            except OSError as err:
                if err.filename is None:
                    err.filename = str(self.metrics_path)
                raise

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        rows = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a partial last line from a killed run
                break
        return rows

    def truncate_metrics(self, before_step: int) -> None:
        """Keep only the rows of steps < ``before_step`` (a resumed run rewrites the rest)."""
        rows = [r for r in self.read_metrics() if r.get("step", -1) < before_step]
        atomic_write_bytes(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows).encode())

    # -- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, step: int, state: dict[str, Any]) -> Path:
        """Save ``state`` as ``checkpoints/ckpt-<step>.pt`` atomically; keep the last :attr:`KEEP`.

        The older checkpoints are removed only once the new one is in place, so a failed write (a full
        disk) leaves the last good checkpoint and no temporary file behind."""
        path = self.ckpt_dir / f"ckpt-{step:08d}.pt"
        atomic_write(path, lambda f: torch.save(state, f))
        for old in sorted(self.ckpt_dir.glob("ckpt-*.pt"))[: -self.KEEP]:
            old.unlink()
        for stale in self.ckpt_dir.glob(".ckpt-*.pt.*"):  # the temporary file of a killed (kill -9) write
            try:
                stale.unlink()
            except OSError:
                pass
        return path

    def checkpoints(self) -> list[Path]:
        """The checkpoint files, oldest first."""
        return sorted(self.ckpt_dir.glob("ckpt-*.pt")) if self.ckpt_dir.exists() else []

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def load_checkpoint(self, path: Path | None = None) -> dict[str, Any] | None:
        """The state saved in ``path``, or (no ``path``) in the newest readable checkpoint; None if none.

        Without ``path``, a checkpoint that cannot be read (torn, truncated, not a checkpoint) is skipped
        with a ``warnings.warn`` naming it and the previous one is tried; when none is readable, the run
        starts from the beginning (a warning says so). With ``path``, a read error propagates."""
        if path is not None:
            return torch.load(path, weights_only=False)
        found = self.checkpoints()
        for candidate in reversed(found):
            try:
                state = torch.load(candidate, weights_only=False)
                if not isinstance(state, dict) or "step" not in state:
                    raise ValueError("not a codedbft checkpoint (no step)")
                return state
            except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ... on a torn file
                why = (str(err).strip().splitlines() or [""])[0][:200]
                warnings.warn(f"skipping unreadable checkpoint {candidate} ({type(err).__name__}: {why}); "
                              f"trying the previous one", RuntimeWarning, stacklevel=2)
        if found:
            warnings.warn(f"no readable checkpoint in {self.ckpt_dir}: the run starts from the beginning",
                          RuntimeWarning, stacklevel=2)
        return None

    # -- plots ----------------------------------------------------------------------------------
    def plot(self) -> list[Path]:
        """``plots/loss.png`` and ``plots/accuracy.png`` from metrics.jsonl (Agg backend, no display)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.read_metrics()
        out: list[Path] = []
        self.plots_dir.mkdir(parents=True, exist_ok=True)
        for key, fname, label in (("loss", "loss.png", "training loss (step batch)"),
                                  ("test_accuracy", "accuracy.png", "test accuracy")):
            pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
            if not pts:
                continue
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.plot(*zip(*pts), marker="." if key == "test_accuracy" else None)
            ax.set_xlabel("step")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            fig.tight_layout()
            path = self.plots_dir / fname
            tmp = self.plots_dir / f".{fname}.tmp.png"
            fig.savefig(tmp, dpi=100)
            plt.close(fig)
            os.replace(tmp, path)
            out.append(path)
        return out

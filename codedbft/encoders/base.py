"""The common base of all codes: parameters, assignment, encoding matrix, encode/decode."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from codedbft._arrays import as_numpy
from codedbft.decoders.base import DecodeResult, Decoder


class Code(ABC):
    """A gradient code over ``n`` workers and ``k`` data partitions.

    Subclasses set ``n``, ``k``, ``s`` and implement :attr:`assignment` and :meth:`decoder`; codes that
    are linear in the partition gradients also provide :attr:`B`, and :meth:`encode` then computes
    ``B @ G``.

    Attributes:
        n: number of workers.
        k: number of data partitions.
        s: number of Byzantine workers whose errors the code corrects exactly (2e + m <= 2s for
            e errors and m erasures, for codes of distance 2s + 1).
    """

    n: int
    k: int
    s: int

    @property
    @abstractmethod
    def assignment(self) -> tuple[tuple[int, ...], ...]:
        """Tuple of n tuples: the partition ids each worker computes on."""

    @property
    def redundancy(self) -> float:
        """Mean number of partitions each worker computes on (the computation overhead factor)."""
        return sum(len(a) for a in self.assignment) / self.n

    @property
    def B(self) -> np.ndarray:  # noqa: N802 - the papers' name
        """(n, k) encoding matrix: honest worker i sends sum_j B[i, j] g_j."""
        raise NotImplementedError(f"{type(self).__name__} is not linear in the partition gradients")

    def encode(self, G: Any) -> Any:
        """Honest messages for partition gradients ``G`` of shape (k, d): returns (n, d) (``B @ G``)."""
        arr, kind = as_numpy(G)
        if arr.ndim != 2 or arr.shape[0] != self.k:
            raise ValueError(f"G must have shape (k={self.k}, d), got {arr.shape}")
        B = self.B
        if np.iscomplexobj(B) and not np.iscomplexobj(arr):
            out = B.real @ arr if not np.any(B.imag) else B @ arr
        else:
            out = B.astype(np.result_type(B, arr), copy=False) @ arr
        return kind.wrap(out)

    @abstractmethod
    def _build_decoder(self) -> Decoder:
        """Build this code's decoder (called once; the result is cached on the code)."""

    def decoder(self) -> Decoder:
        """The decoder for this code, built once and cached (its precomputation is reused)."""
        dec = self.__dict__.get("_decoder")
        if dec is None:
            dec = self.__dict__["_decoder"] = self._build_decoder()
        return dec

    def decode(self, messages: Any, missing: Any = None) -> DecodeResult:
        """Recover the sum of partition gradients from the (n, d) messages; same as ``decoder().decode``."""
        return self.decoder().decode(messages, missing=missing)

    def max_distortion(self, q: int) -> tuple[float, tuple[int, ...]]:
        """Assignment codes: fraction of partitions an optimal q-worker attack corrupts, and its workers."""
        raise NotImplementedError(f"{type(self).__name__} has no max_distortion")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n}, k={self.k}, s={self.s}, redundancy={self.redundancy:g})"

"""The common base of all codes: parameters, assignment, encoding matrix, encode/decode.

Not every code has every piece: only codes linear in the partition gradients have an encoding matrix,
only assignment codes (whose workers send copies of partition gradients) have an optimal-attack
distortion, and data encoding encodes the data, not the gradients. Each optional piece comes with a
boolean property that says whether it is there, so generic code asks first and never calls a method
that raises (see :class:`Code`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from codedbft._arrays import as_numpy
from codedbft.decoders.base import DecodeResult, Decoder


class Code(ABC):
    """A gradient code over ``n`` workers and ``k`` data partitions.

    Subclasses set ``n``, ``k``, ``s`` and implement :attr:`assignment` and :meth:`_build_decoder`.
    Every code has :meth:`decoder` and :meth:`decode`. Three pieces are optional; a caller tells
    whether a code has one from a read-only boolean property, never by catching an exception:

    * :attr:`B`, asked with :attr:`linear`: when False, ``B`` is None (the messages are not one
      linear combination of partition gradients per worker: ByzShield, data encoding);
    * :meth:`encode`, asked with :attr:`encodes_gradients`: when False, ``encode`` raises
      NotImplementedError (data encoding: the workers encode the data, with the code's own methods);
    * :meth:`max_distortion`, asked with :attr:`has_distortion`: when False, it raises
      NotImplementedError (codes that mix partitions in every message: cyclic MDS, data encoding).

    Linear codes' :meth:`encode` computes ``B @ G``; a subclass may compute the same messages faster
    (cyclic MDS: banded adds) or, for a non-linear code, send something else (ByzShield: one gradient
    per held file, ``(n, l, d)``); each subclass documents its reading of encode/decode.

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

    # ---- optional pieces and how to ask for them ----------------------------------------------------

    @property
    def B(self) -> np.ndarray | None:  # noqa: N802 - the papers' name
        """(n, k) encoding matrix: honest worker i sends ``sum_j B[i, j] g_j``; None for codes that are
        not linear in the partition gradients (check :attr:`linear`)."""
        return None

    @property
    def linear(self) -> bool:
        """True when every honest message is one linear combination of partition gradients, so that
        :attr:`B` is an ``(n, k)`` matrix (and :meth:`encode` is ``B @ G``); False when ``B`` is None."""
        return self.B is not None

    @property
    def encodes_gradients(self) -> bool:
        """True when :meth:`encode` turns partition gradients ``(k, d)`` into the honest messages; False
        for codes whose workers encode something else (data encoding), where ``encode`` raises."""
        return self.linear or type(self).encode is not Code.encode

    @property
    def has_distortion(self) -> bool:
        """True when :meth:`max_distortion` is available: assignment codes whose workers send copies of
        partition gradients (repetition groups, ByzShield), where an attack wins whole partitions."""
        return type(self).max_distortion is not Code.max_distortion

    def encode(self, G: Any) -> Any:
        """Honest messages for partition gradients ``G`` of shape (k, d): returns (n, d) (``B @ G``).

        Raises:
            NotImplementedError: the code is not linear and does not override encode
                (:attr:`encodes_gradients` is False).
        """
        B = self.B
        if B is None:
            raise NotImplementedError(f"{type(self).__name__} is not linear in the partition gradients: no B @ G")
        arr, kind = as_numpy(G)
        if arr.ndim != 2 or arr.shape[0] != self.k:
            raise ValueError(f"G must have shape (k={self.k}, d), got {arr.shape}")
        if np.iscomplexobj(B) and not np.iscomplexobj(arr):
            out = B.real @ arr if not np.any(B.imag) else B @ arr
        else:
            out = B.astype(np.result_type(B, arr), copy=False) @ arr
        return kind.wrap(out)

    def max_distortion(self, q: int) -> tuple[float, tuple[int, ...]]:
        """Assignment codes: fraction of partitions an optimal q-worker attack corrupts, and its workers.

        Raises:
            NotImplementedError: the code has no such figure (:attr:`has_distortion` is False).
        """
        raise NotImplementedError(f"{type(self).__name__} has no max_distortion")

    # ---- decoding ----------------------------------------------------------------------------------

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
        """Recover the sum of partition gradients from the (n, d) messages; same as ``decoder().decode``.

        ``res.info`` follows the vocabulary of :mod:`codedbft.decoders.base`.
        """
        return self.decoder().decode(messages, missing=missing)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n}, k={self.k}, s={self.s}, redundancy={self.redundancy:g})"

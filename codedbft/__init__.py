"""codedbft: Byzantine-resilient distributed SGD with coding theory.

Subpackages:

* :mod:`codedbft.encoders`: codes that say which partitions each worker computes on
  (repetition, cyclic MDS, ByzShield MOLS, data encoding).
* :mod:`codedbft.decoders`: recover the exact gradient sum and name the Byzantine workers
  (majority vote, syndrome decoding, L1/LP error correction).
* :mod:`codedbft.aggregators`: robust rules over stacked ``(..., n, d)`` torch tensors.
* :mod:`codedbft.attacks`: what Byzantine workers send, and where they sit.
* :mod:`codedbft.cluster`: the training runtime (local simulator and Ray backend).
"""

__version__ = "0.1.0"

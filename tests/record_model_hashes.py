"""Record (or check) the model_sha256 of a fixed set of short local runs: the bit-identity table.

``python tests/record_model_hashes.py`` rewrites ``tests/data/model_sha256.json``; the test
``test_model_hashes.py`` asserts every run still reaches the recorded hash. Re-record only when a
change is *meant* to change what a run computes, and say so in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BASE = dict(backend="local", workers=9, byzantine=2, dataset="digits", model="logreg", batch_size=90,
            lr=0.2, steps=6, eval_every=6, momentum=0.9)

#: name -> RunConfig fields (over BASE): every scheme, data-level and failing-on-partial-round attacks,
#: a stateful rule, the worst placement, adam, isolation, redraw.
CASES: dict[str, dict] = {
    "draco-repetition/omniscient": dict(scheme="draco-repetition", attack="omniscient", workers=10),
    "draco-repetition/label-flip": dict(scheme="draco-repetition", attack="label-flip", workers=10),
    "draco-cyclic/alie": dict(scheme="draco-cyclic", attack="alie"),
    "draco-cyclic/sign-flip-redraw": dict(scheme="draco-cyclic", attack="sign-flip", redraw=True),
    "detox/ipm-multi-krum": dict(scheme="detox", attack="ipm", aggregator="multi-krum", byzantine=1),
    "detox/gaussian-bucket": dict(scheme="detox", attack="gaussian", workers=12, bucket=2, byzantine=1),
    "vanilla/alie-median": dict(scheme="vanilla", attack="alie", aggregator="median"),
    "vanilla/bit-flip-cclip": dict(scheme="vanilla", attack="bit-flip", aggregator="centered-clipping"),
    "vanilla/mixed-krum": dict(scheme="vanilla", attack="mixed", aggregator="krum"),
    "byzshield/omniscient": dict(scheme="byzshield", attack="omniscient", byzantine=3, workers=15, batch_size=100),
    "byzshield/alie-cclip-worst": dict(scheme="byzshield", attack="alie", aggregator="centered-clipping",
                                       placement="worst", byzantine=3, workers=15, batch_size=100),
    "rrr/alie": dict(scheme="rrr", attack="alie", workers=7),
    "rrr/omniscient-adam": dict(scheme="rrr", attack="omniscient", optimizer="adam", lr=0.01),
    "rrr-randomized/gambler": dict(scheme="rrr-randomized", attack="gambler", scheme_params={"q": 0.5},
                                   attack_params={"p": 0.5}),
    "data-encoding/alie": dict(scheme="data-encoding", attack="alie", dataset="synthetic-regression",
                               model="linear", lr=0.05, batch_size=120),
    "data-encoding/label-flip": dict(scheme="data-encoding", attack="label-flip", dataset="digits-linear",
                                     model="linear", lr=0.05, batch_size=120, byzantine=1),
    "draco-repetition/isolate": dict(scheme="draco-repetition", attack="constant", workers=10,
                                     isolate_after=2, placement="fixed", placement_ids=(1, 7)),
}

PATH = Path(__file__).parent / "data" / "model_sha256.json"


def run_case(name: str) -> str:
    from codedbft.cluster import Master, RunConfig

    m = Master(RunConfig(**{**BASE, **CASES[name]}))
    try:
        return m.run()["model_sha256"]
    finally:
        m.close()


def main() -> int:
    table = {name: run_case(name) for name in CASES}
    PATH.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    for k, v in table.items():
        print(f"{k:40s} {v[:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

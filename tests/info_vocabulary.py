"""The decoders' common diagnostics (codedbft.decoders.base), checked the same way for every decoder."""

from __future__ import annotations

#: keys the vocabulary replaced; none may come back
OLD_KEYS = {"time_ms", "total_s", "project_s", "locate_s", "solve_s", "undecided_groups", "undecided_files",
            "tolerance_groups", "slow_path_groups", "erased_workers", "nonfinite_copies", "erased", "error"}


def assert_common_info(res, stages: set[str] | None = None) -> None:
    """The common keys with their types; stage timings are flat floats inside decode_ms (exactly
    ``stages`` when given); a non-empty reason exactly when the result is not exact."""
    info = res.info
    assert type(info["decode_ms"]) is float and info["decode_ms"] >= 0.0
    assert type(info["erasures"]) is int and type(info["nonfinite"]) is int
    found = {k: v for k, v in info.items() if k.endswith("_ms") and k != "decode_ms"}
    assert found and all(type(v) is float and v >= 0.0 for v in found.values()), found
    assert stages is None or found.keys() == stages, found
    assert sum(found.values()) <= info["decode_ms"] * (1 + 1e-9) + 1e-9
    assert not OLD_KEYS & info.keys()
    if res.exact:
        assert info["reason"] is None
    else:
        assert isinstance(info["reason"], str) and info["reason"]

"""``run --dry-run``: which planned stages are cached, new, or changed (and what changed), before anything runs.

A planned stage is *cached* when its id is in the store. Otherwise it is *changed* when the store holds a stage
with the same seed and name, or else the same seed and kind (an earlier run's version of it): the two identity documents (``identity.json``, see
:attr:`Stage.identity <w2s_harness.Stage.identity>`) are compared and the differences named in words (a loss
parameter, a module's code, the dataset's content, an upstream stage). Anything else is *new*.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .._execution.store import StageStore
from .._plan.planner import Plan, Stage

#: At most this many differences are named per stage.
MAX_REASONS = 4


@dataclass
class StageStatus:
    """One planned stage's standing against the store."""

    stage: Stage
    status: str  # "cached" | "new" | "changed"
    reasons: list[str] = field(default_factory=list)


def _flatten(doc: Any, prefix: tuple = ()) -> dict[tuple, Any]:
    if isinstance(doc, dict) and doc:
        out: dict[tuple, Any] = {}
        for k, v in doc.items():
            out.update(_flatten(v, (*prefix, str(k))))
        return out
    return {prefix: doc}


def _short(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _describe(path: tuple, old: Any, new: Any) -> str:
    """One difference in words."""
    head = path[:2]
    if path == ("context", "engine"):
        return "harness code changed (ops, training loop, feature cache or kernels)"
    if path[:1] == ("op_code",):  # a plugin op's code fingerprint: {module: digest}
        return f"code of the stage op changed ({path[1] if len(path) > 1 else '?'})"
    if path == ("format",):
        return "stage format changed (a harness upgrade)"
    if head == ("context", "dataset"):
        if path[2:3] == ("code",):
            return f"code of the dataset plugin changed ({path[3] if len(path) > 3 else '?'})"
        if path[-1] == "fingerprint":
            return "dataset content changed"
        return f"dataset {'.'.join(path[3:] or path[2:])}: {_short(old)} -> {_short(new)}"
    if path[:1] == ("spec",) and len(path) > 2 and path[1] in ("model", "loss"):
        what, rest = path[1], path[2:]
        if rest[:1] == ("code",):
            return f"code of the {what} changed ({rest[1] if len(rest) > 1 else '?'})"
        if rest[:1] == ("params",) and len(rest) > 1:
            return f"{what} parameter {'.'.join(rest[1:])}: {_short(old)} -> {_short(new)}"
        if rest[:1] == ("instance",):
            return f"{what} {'.'.join(rest[1:])} changed: {_short(old)} -> {_short(new)}"
        return f"{what} {'.'.join(rest)}: {_short(old)} -> {_short(new)}"
    return f"{'.'.join(path)}: {_short(old)} -> {_short(new)}"


def differences(old: dict[str, Any], new: dict[str, Any], names: dict[str, str]) -> list[str]:
    """What differs between two stage identity documents, in words; upstream changes are named last and only
    when nothing of the stage's own changed (they follow from the upstream stage's own change)."""
    a, b = _flatten(old), _flatten(new)
    own, upstream = [], []
    for path in sorted(set(a) | set(b)):
        if a.get(path, None) == b.get(path, None):
            continue
        if path == ("spec", "deps"):
            changed = [names.get(d, d) for d in (b.get(path) or []) if d not in (a.get(path) or [])]
            upstream.append(f"upstream stage changed: {', '.join(changed) or '(order)'}")
            continue
        reason = _describe(path, a.get(path), b.get(path))
        if reason not in own:
            own.append(reason)
    reasons = own or upstream
    if len(reasons) > MAX_REASONS:
        reasons = [*reasons[:MAX_REASONS], f"and {len(reasons) - MAX_REASONS} more"]
    return reasons


def _distance(old: dict[str, Any], new: dict[str, Any]) -> int:
    a, b = _flatten(old), _flatten(new)
    return sum(a.get(p) != b.get(p) for p in set(a) | set(b))


def explain(plan: Plan, store: StageStore) -> Iterator[StageStatus]:
    """Every planned stage with its status against ``store``, in plan order. A stage not in the store is matched
    with the stored stage of the same seed and name, or else of the same seed and kind (a changed parameter may
    change the display name), the closest one."""
    by_name: dict[tuple, list[dict]] = {}
    by_kind: dict[tuple, list[dict]] = {}
    for sid in store.stored_ids():
        doc = store.identity(sid)
        if doc and isinstance(doc.get("identity"), dict):
            by_name.setdefault((doc.get("seed"), doc.get("name")), []).append(doc["identity"])
            by_kind.setdefault((doc.get("seed"), doc.get("kind")), []).append(doc["identity"])
    names = {st.id: st.name for st in plan.stages}
    for st in plan.stages:
        if store.has(st.id):
            yield StageStatus(st, "cached")
            continue
        candidates = by_name.get((st.seed, st.name)) or by_kind.get((st.seed, str(st.kind)), [])
        if not candidates:
            yield StageStatus(st, "new")
            continue
        best = min(candidates, key=lambda c: _distance(c, st.identity))
        yield StageStatus(st, "changed", differences(best, st.identity, names))


__all__ = ["StageStatus", "differences", "explain"]

"""The active-learning stop verdict of `mapper validate` and of label campaigns (mapper.al.verdict).

**4. Active-learning stop verdict per province** (paper Sect. 3.2.4): stop when the final map's IoU ≥ 0.85,
its semantic correctness ≥ 0.85 and PCS ≥ 0.80 over the province (the thresholds are defined once:
StopThresholds in mapper.config.models, whose defaults STOP_THRESHOLDS is). A criterion that cannot be
measured (no truth, no statistic) fails, named.

**The rule** (`rule`: al.stop_rule of a campaign, `mapper validate --stop-rule`):

- `point`: the value must reach the threshold (the paper's rule; `mapper validate`'s default).
- `lower_bound`: the lower end of the value's 95 % interval must reach it (a campaign's default): a province
  stops when its validation sample shows that it meets the criteria, not when a small sample happens to. A
  criterion without an interval (fewer than 2 blocks; a census of the whole province) is decided on its
  point value, and its reason says so.

**The waiver for cloudy provinces.** The paper lets a province with persistent cloud or poor imagery stop
after three extra rounds of labelling although its area criterion is not met. The run does not know its
rounds, so the caller says (`extra_rounds`: a campaign's ledger, or `mapper validate --extra-rounds`). A PCS
that fails is waived (listed in `waived`, not in `failing`) only when there were 3 or more extra rounds AND
the province's share of blocks with poor imagery (`poor_imagery_share`, validation/imagery.py: no source
usable by IQA) is at least `waiver_min_poor_imagery_share` (0.3): a clear province whose area is short has a
mapping problem that more labels should fix, not a cloud problem. Without the share there is no waiver,
and the reason says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from mapper.config.models import StopThresholds

STOP_THRESHOLDS = StopThresholds().model_dump()  # the paper's: defined once, as the config's defaults
EXTRA_ROUNDS_FOR_EXCEPTION = 3
WAIVER_KEY = "waiver_min_poor_imagery_share"  # the least share of poor imagery for the waiver
_CRITERION_LABELS = {"iou": "IoU", "semantic_correctness": "semantic correctness", "pcs": "PCS"}
CRITERIA = tuple(_CRITERION_LABELS)
RULES = ("point", "lower_bound")


def stop_verdict(
    iou: float | None,
    semantic_correctness: float | None,
    pcs: float | None,
    extra_rounds: int = 0,
    thresholds: Mapping[str, float] = STOP_THRESHOLDS,
    unmeasured: Mapping[str, str] | None = None,
    *,
    intervals: Mapping[str, list[float] | None] | None = None,
    rule: str = "point",
    poor_imagery_share: float | None = None,
) -> dict:
    """The active-learning stop verdict of one province (see the module docstring): stop when IoU, semantic
    correctness and PCS all reach their thresholds, judged by `rule` on the values or on the lower ends of
    their `intervals` ({criterion: [low, high]}). `failing` names the criteria that keep it going; an
    unmeasured value (None) fails, with the reason from `unmeasured` if given. A failing PCS is waived after
    `extra_rounds` ≥ 3 only in a province whose `poor_imagery_share` reaches the threshold."""
    if rule not in RULES:
        raise ValueError(f"stop rule {rule!r}: give one of {', '.join(RULES)}")
    values = {"iou": iou, "semantic_correctness": semantic_correctness, "pcs": pcs}
    criteria, failing, waived = {}, [], []
    for name, value in values.items():
        entry = _criterion(name, value, float(thresholds[name]), (intervals or {}).get(name), rule, unmeasured)
        criteria[name] = entry
        if entry["met"] is True:
            continue
        if name == "pcs" and entry["met"] is False and extra_rounds >= EXTRA_ROUNDS_FOR_EXCEPTION:
            min_share = float(thresholds.get(WAIVER_KEY, STOP_THRESHOLDS[WAIVER_KEY]))
            ok, why = _waiver(poor_imagery_share, min_share, extra_rounds)
            entry["reason"] += why
            (waived if ok else failing).append(name)
        else:
            failing.append(name)
    return {
        "stop": not failing,
        "failing": failing,
        "waived": waived,
        "extra_rounds": int(extra_rounds),
        "rule": rule,
        "poor_imagery_share": poor_imagery_share,
        "criteria": criteria,
    }


def _usable_ci(ci) -> list[float] | None:
    """An interval as [low, high] floats, or None when there is none (or it is not finite)."""
    if not ci or len(ci) != 2 or any(v is None or not math.isfinite(v) for v in ci):
        return None
    return [float(ci[0]), float(ci[1])]


def _criterion(name: str, value, threshold: float, ci, rule: str, unmeasured) -> dict:
    """One criterion's entry: met (None when unmeasured), what decided it and the reason in words."""
    label = _CRITERION_LABELS[name]
    ci = _usable_ci(ci)
    entry = {"value": value, "threshold": threshold, "ci95": ci, "met": None, "decided_on": None}
    if value is None or not math.isfinite(value):
        entry["reason"] = f"{label} not measured: {(unmeasured or {}).get(name, 'no value')}"
        return entry
    shown = f" (95 % CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
    if rule == "lower_bound" and ci is not None:
        met = bool(ci[0] >= threshold - 1e-12)
        why = f"{label} {value:.3f}{shown}: lower end {ci[0]:.3f} {'≥' if met else '<'} {threshold:.2f}"
        entry.update(met=met, decided_on="lower end", reason=why)
        return entry
    met = bool(value >= threshold - 1e-12)
    why = f"{label} {value:.3f} {'≥' if met else '<'} {threshold:.2f}{shown}"
    if rule == "lower_bound":
        why += " (no interval: decided on the point value)"
    entry.update(met=met, decided_on="point", reason=why)
    return entry


def _waiver(share: float | None, min_share: float, extra_rounds: int) -> tuple[bool, str]:
    """(waive?, the words added to PCS's reason) for a failing PCS after enough extra rounds."""
    after = f"after {extra_rounds} extra rounds"
    if share is None:
        return False, (f"; not waived {after}: the province's share of poor imagery is unknown (the exception "
                       "is for persistently cloudy provinces)")  # fmt: skip
    if share >= min_share - 1e-12:
        return True, (f"; waived {after}: {share:.0%} of its blocks have poor imagery (≥ {min_share:.0%}; the "
                      "paper's exception for persistently cloudy provinces)")  # fmt: skip
    return False, (f"; not waived {after}: {share:.0%} of its blocks have poor imagery (< {min_share:.0%}; the "
                   "exception is for persistently cloudy provinces)")  # fmt: skip

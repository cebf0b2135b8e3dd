"""The active-learning stop verdict of `mapper validate`.

**4. Active-learning stop verdict per province** (paper Sect. 3.2.4): stop when the final map's IoU ≥ 0.85,
its semantic correctness ≥ 0.85 and PCS ≥ 0.80 over the province. A criterion that cannot be measured (no
truth, no statistic) fails, named. The paper lets a persistently cloudy province stop after three extra
rounds of labelling although its area criterion is not met; the run does not know its rounds, so the caller
says (`extra_rounds`): with 3 or more, a PCS below 0.80 is waived (listed in `waived`, not in `failing`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from mapper.config.models import StopThresholds

STOP_THRESHOLDS = StopThresholds().model_dump()  # the paper's: defined once, as the config's defaults
EXTRA_ROUNDS_FOR_EXCEPTION = 3
_CRITERION_LABELS = {"iou": "IoU", "semantic_correctness": "semantic correctness", "pcs": "PCS"}


def stop_verdict(
    iou: float | None,
    semantic_correctness: float | None,
    pcs: float | None,
    extra_rounds: int = 0,
    thresholds: Mapping[str, float] = STOP_THRESHOLDS,
    unmeasured: Mapping[str, str] | None = None,
) -> dict:
    """The active-learning stop verdict of one province (paper Sect. 3.2.4): stop when IoU, semantic
    correctness and PCS all reach their thresholds (0.85, 0.85, 0.80). `failing` names the criteria that keep
    it going; an unmeasured value (None) fails, with the reason from `unmeasured` if given. With
    `extra_rounds` ≥ 3 a PCS below its threshold is waived (the exception for persistently cloudy provinces)."""
    values = {"iou": iou, "semantic_correctness": semantic_correctness, "pcs": pcs}
    criteria, failing, waived = {}, [], []
    for name, value in values.items():
        threshold = float(thresholds[name])
        if value is None or not math.isfinite(value):
            met, why = None, f"{_CRITERION_LABELS[name]} not measured: {(unmeasured or {}).get(name, 'no value')}"
        else:
            met = bool(value >= threshold - 1e-12)
            why = f"{_CRITERION_LABELS[name]} {value:.3f} {'≥' if met else '<'} {threshold:.2f}"
        criteria[name] = {"value": value, "threshold": threshold, "met": met, "reason": why}
        if met is not True:
            if name == "pcs" and met is False and extra_rounds >= EXTRA_ROUNDS_FOR_EXCEPTION:
                waived.append(name)
                criteria[name]["reason"] += (
                    f"; waived after {extra_rounds} extra rounds (the paper's exception for persistently cloudy "
                    "provinces)"
                )
            else:
                failing.append(name)
    return {
        "stop": not failing,
        "failing": failing,
        "waived": waived,
        "extra_rounds": int(extra_rounds),
        "criteria": criteria,
    }

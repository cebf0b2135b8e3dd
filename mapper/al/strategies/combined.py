"""combined: the project's default — the combined score (mapper.al.scores) with diversity, a negative quota and
a random share.

n is split into round(random_share · n) random picks, round(negative_share · n) negative-quota picks and the
rest "combined score" picks (picked first). The combined and negative parts pick by greedy k-center
(mapper.al.picker) over the combined score and the negative score; a part that runs short (too few negatives,
random draws blocked) leaves its places to the combined score.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from mapper.al.picker import Pick
from mapper.al.pool import SOURCES
from mapper.al.scores import COMPONENTS, disagreement_text, error_text, negative_candidates, uncertainty_text
from mapper.al.strategies.base import Context, Strategy, register
from mapper.config.models import SelectionSettings

log = logging.getLogger(__name__)


@register
class CombinedStrategy(Strategy):
    name = "combined"
    reports_combined = True

    def needs(self, settings: SelectionSettings) -> tuple[str, ...]:
        return tuple(c for c in COMPONENTS if getattr(settings.weights, c) > 0)

    def pick(self, ctx: Context, n: int) -> None:
        picker, settings, combined = ctx.picker, ctx.settings, ctx.combined
        n_random, n_negative = round(settings.random_share * n), round(settings.negative_share * n)
        picker.k_center(combined, n - n_random - n_negative, "combined score")
        negative, negative_score = negative_candidates(ctx.table, settings)
        before = len(picker.picks)
        picker.k_center(negative_score, n_negative, "negative quota", eligible=negative)
        if len(picker.picks) - before < n_negative:
            log.info("only %d of the %d negative-quota blocks found; the combined score fills the rest",
                     len(picker.picks) - before, n_negative)  # fmt: skip
        picker.random(np.random.default_rng(ctx.seed), n_random, "random share")
        picker.k_center(combined, n - len(picker.picks), "combined score")  # places the other parts left

    def reason(self, ctx: Context, pick: Pick) -> str:
        if pick.part == "random share":
            return "random share (keeps the sample unbiased)"
        if pick.part == "negative quota":
            return _negative_text(ctx.table, pick.row, ctx.settings)
        return _combined_text(ctx, pick)


def _negative_text(table: pd.DataFrame, r: int, settings: SelectionSettings) -> str:
    judged = [s.upper() for s in SOURCES if table[f"{s}_pred_semantic"].iat[r] == "FP"]
    fraction = pd.to_numeric(pd.Series([table["cropland_fraction"].iat[r]]), errors="coerce").iat[0]
    parts = [f"source {' and '.join(judged)} judged FP"] if judged else []
    if fraction == fraction and fraction <= settings.negative_max_cropland_fraction:
        parts.append(f"final map {fraction:.1%} cropland")
    return "negative: " + ", ".join(parts)


def _combined_text(ctx: Context, pick: Pick) -> str:
    scores, r, parts = ctx.scores, pick.row, []
    if scores.error_p[r] >= 0.5:
        parts.append(error_text(ctx.table, scores, r, ctx.settings))
    if scores.disagreement[r] >= 0.5:
        parts.append(disagreement_text(scores, r))
    if scores.uncertainty[r] > 0:
        parts.append(uncertainty_text(scores, r))
    if math.isfinite(pick.feature_distance):
        parts.append(f"unlike the labelled blocks (feature distance {pick.feature_distance:.1f})")
    return "; ".join(parts[:3]) or "high combined score"

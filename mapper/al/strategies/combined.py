"""combined: the project's default — the combined score (mapper.al.scores) with diversity, a negative quota and
a random share.

The shares hold over the campaign, not per round: with T the picks of the campaign's earlier rounds plus this
round's n, a round takes floor(random_share · T) minus the random picks of earlier rounds (never below 0) as
random picks, likewise for the negative quota (within n, random first), and the rest as "combined score" picks
(picked first). Rounding each round's share alone would never draw a random block at 2 blocks a round and
make half of every round negatives; this way 5 rounds of 2 with shares 0.2 and 0.3 take 2 random and 3
negative picks. A part that runs short (too few negatives, random draws blocked) leaves its places to the
combined score, and what it owes stays due in later rounds. `history` (the picks per part of earlier rounds;
mapper.al.rounds reads it from the ledger) is empty for a selection on its own: the shares then apply to n.

The combined and negative parts pick by greedy k-center (mapper.al.picker) over the combined score and the
negative score. In a one-source pool table the combined score ranks by the components it can compute (error and
disagreement need two sources), its weights renormalised over them, and the log says so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from mapper.al.picker import Pick
from mapper.al.pool import SOURCES, SelectionError, sources_in
from mapper.al.scores import (
    COMPONENTS,
    combined_components,
    disagreement_text,
    error_text,
    judged_sources,
    negative_candidates,
    uncertainty_text,
)
from mapper.al.strategies.base import Context, Strategy, register
from mapper.config.models import SelectionSettings

log = logging.getLogger(__name__)
RANDOM, NEGATIVE, COMBINED = "random share", "negative quota", "combined score"  # the parts, as picks name them


@register
class CombinedStrategy(Strategy):
    name = "combined"
    reports_combined = True

    def needs(self, settings: SelectionSettings, sources: tuple[str, ...] = SOURCES) -> tuple[str, ...]:
        components = combined_components(settings.weights, sources)
        if not components:
            weighted = ", ".join(c for c in COMPONENTS if getattr(settings.weights, c) > 0)
            raise SelectionError(f"the combined score's weighted components ({weighted}) need two sources, and "
                                 "this pool table has source A only: give uncertainty a weight above 0 "
                                 "(al.selection.weights) or select from a pool run with two sources")  # fmt: skip
        return components

    def pick(self, ctx: Context, n: int) -> None:
        picker, settings, combined = ctx.picker, ctx.settings, ctx.combined
        if len(sources_in(ctx.table)) < 2:
            log.info("one source: the combined score ranks by %s only, its weights renormalised (error and "
                     "disagreement need two sources)", " and ".join(ctx.components))  # fmt: skip
        n_random, n_negative = quotas(settings, n, ctx.history)
        picker.k_center(combined, n - n_random - n_negative, COMBINED)
        negative, negative_score = negative_candidates(ctx.table, settings)
        before = len(picker.picks)
        picker.k_center(negative_score, n_negative, NEGATIVE, eligible=negative)
        if len(picker.picks) - before < n_negative:
            log.info("only %d of the %d negative-quota blocks found; the combined score fills the rest",
                     len(picker.picks) - before, n_negative)  # fmt: skip
        picker.random(np.random.default_rng(ctx.seed), n_random, RANDOM)
        picker.k_center(combined, n - len(picker.picks), COMBINED)  # places the other parts left

    def reason(self, ctx: Context, pick: Pick) -> str:
        if pick.part == RANDOM:
            return "random share (keeps the sample unbiased)"
        if pick.part == NEGATIVE:
            return _negative_text(ctx.table, pick.row, ctx.settings)
        return _combined_text(ctx, pick)


def quotas(settings: SelectionSettings, n: int, history: Mapping[str, int]) -> tuple[int, int]:
    """(random, negative) picks due this round of n, the shares held over the campaign (module docstring)."""
    total = sum(history.values()) + n
    # 1e-9: a share times a count that should be whole (0.29 · 100) may land just below it in floating point
    due = [max(0, math.floor(share * total + 1e-9) - history.get(part, 0))
           for share, part in ((settings.random_share, RANDOM), (settings.negative_share, NEGATIVE))]  # fmt: skip
    n_random = min(due[0], n)
    return n_random, min(due[1], n - n_random)


def _negative_text(table: pd.DataFrame, r: int, settings: SelectionSettings) -> str:
    judged = [s.upper() for s in judged_sources(table) if table[f"{s}_pred_semantic"].iat[r] == "FP"]
    fraction = pd.to_numeric(pd.Series([table["cropland_fraction"].iat[r]]), errors="coerce").iat[0]
    parts = [f"source {' and '.join(judged)} judged FP"] if judged else []
    if fraction == fraction:  # a negative candidate's fraction is known and low (mapper.al.scores)
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
    only = f" ({' and '.join(ctx.components)} only: one source)" if len(sources_in(ctx.table)) < 2 else ""
    return "; ".join(parts[:3]) or f"high combined score{only}"

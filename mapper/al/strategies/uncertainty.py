"""uncertainty: the largest uncertain cropland area (true m², the larger of the two sources) first."""

from __future__ import annotations

from mapper.al.picker import Pick
from mapper.al.scores import uncertainty_text
from mapper.al.strategies.base import Context, TopScoreStrategy, register


@register
class UncertaintyStrategy(TopScoreStrategy):
    name = "uncertainty"

    def reason(self, ctx: Context, pick: Pick) -> str:
        return uncertainty_text(ctx.scores, pick.row)

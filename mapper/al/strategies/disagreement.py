"""disagreement: the blocks whose two sources' masks agree least (1 − consistency IoU) first."""

from __future__ import annotations

from mapper.al.picker import Pick
from mapper.al.scores import disagreement_text
from mapper.al.strategies.base import Context, TopScoreStrategy, register


@register
class DisagreementStrategy(TopScoreStrategy):
    name = "disagreement"

    def reason(self, ctx: Context, pick: Pick) -> str:
        return disagreement_text(ctx.scores, pick.row)

"""error: the highest error scores first — the paper's way (label where the correctness model sees errors,
weighted up in provinces whose PCS is below the stop threshold; mapper.al.scores)."""

from __future__ import annotations

from mapper.al.picker import Pick
from mapper.al.scores import error_text
from mapper.al.strategies.base import Context, TopScoreStrategy, register


@register
class ErrorStrategy(TopScoreStrategy):
    name = "error"

    def reason(self, ctx: Context, pick: Pick) -> str:
        return error_text(ctx.table, ctx.scores, pick.row, ctx.settings)

"""random: uniform draws (seeded) among the candidates — the baseline the other strategies must beat."""

from __future__ import annotations

import numpy as np

from mapper.al.picker import Pick
from mapper.al.strategies.base import Context, Strategy, register


@register
class RandomStrategy(Strategy):
    name = "random"

    def pick(self, ctx: Context, n: int) -> None:
        ctx.picker.random(np.random.default_rng(ctx.seed), n, "random")

    def reason(self, ctx: Context, pick: Pick) -> str:
        return "random pick (baseline)"

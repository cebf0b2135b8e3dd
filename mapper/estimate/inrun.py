"""The estimate `mapper run` gives when it starts: of the blocks it has just planned (not planned again), kept in
the run directory as estimate.json (what benchmarks/estimate_vs_actual.py compares with the run's actual costs)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from mapper.estimate.core import estimate, estimate_sources
from mapper.estimate.plan import plan_of_store
from mapper.estimate.text import render
from mapper.store.atomic import atomic_write_text

log = logging.getLogger("mapper.run")
ESTIMATE_FILE = "estimate.json"


def estimate_hook(config, region_name: str, source: str, executor: str, echo: Callable[[str], None] | None) -> Callable:
    """RunRequest.on_planned for a new run: writes RUN/estimate.json, logs the estimate and hands its short form
    to `echo` (None: quiet). An estimate that cannot be made is logged and the run goes on."""

    def on_planned(store) -> None:
        try:
            est = estimate(
                config, estimate_sources(config, source), plan_of_store(store, region_name), executor=executor
            )
        except (ValueError, OSError) as e:  # ConfigError is a ValueError: a broken throughputs file
            log.warning("no estimate of this run: %s", e)
            return
        atomic_write_text(store.layout.root / ESTIMATE_FILE, json.dumps(est.to_dict(), indent=1) + "\n")
        text = render(est, bases=False) + f"\n  (each figure's basis: {store.layout.root / ESTIMATE_FILE})"
        log.info("%s", text)
        if echo is not None:
            echo(text)

    return on_planned

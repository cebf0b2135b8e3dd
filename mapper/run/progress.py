"""Live progress of a run: one bar per stage (tasks done of all, tasks/s, ETA, failures) on a terminal, a
status line every `log_every_s` seconds in the run log (the only output in quiet mode, for batch jobs) and, when
stderr is not a terminal, on stderr too."""

from __future__ import annotations

import logging
import sys
import time

from mapper.run.stage import StageSpec
from mapper.run.stages import CROPLAND_STAGES

log = logging.getLogger("mapper.run")


class Progress:
    def __init__(self, blocks: int, n_sources: int, counts: dict[tuple[str, str], int], quiet: bool = False,
                 log_every_s: float = 30.0, stages: tuple[StageSpec, ...] = CROPLAND_STAGES):  # fmt: skip
        from tqdm import tqdm

        self.stages = tuple(s.name for s in stages)
        self.totals = {s.name: blocks * (n_sources if s.per_source else 1) for s in stages}
        self.done = {s: counts.get((s, "done"), 0) for s in self.stages}
        self.failed = {s: counts.get((s, "failed"), 0) for s in self.stages}
        self.retried = dict.fromkeys(self.stages, 0)
        self.blocks_done = self.blocks_failed = 0
        self.blocks = blocks
        self.log_every_s = log_every_s
        self._last_log = time.monotonic()
        self.bars = {}
        self.echo = not quiet and not sys.stderr.isatty()
        if not quiet and sys.stderr.isatty():  # bars on a terminal; log lines elsewhere (CI, nohup, batch jobs)
            width = max(len(s) for s in self.stages)
            for i, stage in enumerate(self.stages):
                self.bars[stage] = tqdm(total=self.totals[stage], initial=self.done[stage], desc=stage.ljust(width),
                                        unit="task", position=i, leave=True, dynamic_ncols=True)  # fmt: skip

    def task(self, stage: str, status: str) -> None:
        if status == "done":
            self.done[stage] += 1
            if stage in self.bars:
                self.bars[stage].update()
        elif status == "failed":
            self.failed[stage] += 1
        else:
            self.retried[stage] += 1
        if stage in self.bars and status != "done":
            self.bars[stage].set_postfix(failed=self.failed[stage], retried=self.retried[stage], refresh=False)

    def block(self, failed: bool) -> None:
        if failed:
            self.blocks_failed += 1
        else:
            self.blocks_done += 1

    def refresh(self) -> None:
        now = time.monotonic()
        if now - self._last_log >= self.log_every_s:
            self._last_log = now
            log.info("progress: %s", self.line())
            if self.echo:
                print(f"progress: {self.line()}", file=sys.stderr, flush=True)

    def line(self) -> str:
        parts = [f"{s} {self.done[s]}/{self.totals[s]}" + (f" ({self.failed[s]} failed)" if self.failed[s] else "")
                 for s in self.stages]  # fmt: skip
        return "; ".join(parts)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        log.info("progress: %s", self.line())

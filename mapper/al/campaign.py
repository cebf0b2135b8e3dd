"""A label campaign's directory, identity and ledger.

    CAMPAIGN/
      campaign.json        what the campaign is: provinces, sources, world seed, the samples' sizes and digests,
                           the starting models (sha256), the al settings; fixed at `mapper al init`
      config.yaml          the resolved mapper config (tokens are never in it)
      samples/pool.txt  samples/validation.txt  samples/decision.txt       block ids, one a line
      pool/<chip>/         a chip campaign's pool: the chip images only (mapper.al.chips; chip ids in the samples)
      labels/train/        blocks labelled in the rounds (people or the simulated annotator), labels-store form
      labels/validation/  labels/decision/   the fixed samples' labels (world truth, or given at init)
      rounds/NNN/          selection.parquet, export/ (the QGIS hand-off), ingest.json
      runs/NNN-pool/  runs/NNN-decision/  runs/NNN-validation/     `mapper run` directories of round NNN
      models/NNN/seg/  models/NNN/decide/                          the round's candidate models
      ledger.json          every round: its steps and their results, the labels spent, the models (sha256),
                           the three-level numbers and the stop verdict per province
      report/              learning curves and the campaign page
      driver.lock          while a command works on the campaign (one at a time, like a run)

**The ledger is the single record of the campaign.** Each step writes its files first (atomically), then its
entry in the ledger (one atomic rewrite), so a kill at any moment leaves a step either recorded done — its
files complete — or not recorded, and then redone; the runs inside a step resume as `mapper run --resume`
does. `extra_rounds` of the stop rule's exception comes from here, not from a flag.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from mapper.store.atomic import atomic_write_text
from mapper.store.json_file import read_json

FORMAT = "mapper-al-campaign/1"
LEDGER_FORMAT = "mapper-al-ledger/1"
SAMPLES = ("pool", "validation", "decision")
STEPS = ("pool", "select", "export", "label", "ingest", "train", "validate")


class CampaignError(ValueError):
    """A campaign directory that cannot be used as asked; the message names the fix."""


@dataclass(frozen=True)
class CampaignLayout:
    root: Path

    @property
    def identity_file(self) -> Path:
        return self.root / "campaign.json"

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def ledger_file(self) -> Path:
        return self.root / "ledger.json"

    def sample_file(self, name: str) -> Path:
        return self.root / "samples" / f"{name}.txt"

    def labels(self, name: str) -> Path:  # train, validation, decision
        return self.root / "labels" / name

    def round_dir(self, k: int) -> Path:
        return self.root / "rounds" / f"{k:03d}"

    def export_dir(self, k: int) -> Path:
        return self.round_dir(k) / "export"

    def run_dir(self, k: int, what: str) -> Path:  # pool, decision, validation
        return self.root / "runs" / f"{k:03d}-{what}"

    def model_dir(self, k: int, what: str) -> Path:  # seg, decide
        return self.root / "models" / f"{k:03d}" / what

    def pool_chip(self, chip_id: str) -> Path:  # a chip campaign's pool image (mapper.al.chips)
        return self.root / "pool" / chip_id

    @property
    def report_dir(self) -> Path:
        return self.root / "report"


def digest(block_ids) -> str:
    return hashlib.sha256("\n".join(sorted(block_ids)).encode()).hexdigest()


def write_sample(layout: CampaignLayout, name: str, block_ids) -> None:
    atomic_write_text(layout.sample_file(name), "".join(f"{b}\n" for b in block_ids))


def read_sample(layout: CampaignLayout, name: str) -> list[str]:
    path = layout.sample_file(name)
    if not path.exists():
        raise CampaignError(f"{path} is missing: the campaign was not initialised; run `mapper al init`")
    return path.read_text(encoding="utf-8").split()


NEW_CAMPAIGN = "start a new campaign with `mapper al init` (was it written by another mapper version?)"


def read_identity(root: Path | str) -> dict:
    layout = CampaignLayout(Path(root))
    if not layout.identity_file.exists():
        raise CampaignError(f"{layout.root} is not a label campaign (no campaign.json); start one with "
                            "`mapper al init`")  # fmt: skip
    return read_json(layout.identity_file, FORMAT, "a label campaign", NEW_CAMPAIGN, CampaignError)


# ---------------------------------------------------------------------------------------------- ledger
class Ledger:
    """ledger.json: `current` (the models in force and their validation), `rounds` (one entry per round)."""

    def __init__(self, path: Path, data: dict):
        self.path = path
        self.data = data

    @classmethod
    def load(cls, layout: CampaignLayout) -> Ledger:
        path = layout.ledger_file
        if not path.exists():
            raise CampaignError(f"{path} is missing: the campaign was not initialised; run `mapper al init`")
        data = read_json(path, LEDGER_FORMAT, "a campaign ledger", NEW_CAMPAIGN, CampaignError)
        return cls(path, data)

    @classmethod
    def new(cls, layout: CampaignLayout, models: dict) -> Ledger:
        return cls(layout.ledger_file, {"format": LEDGER_FORMAT, "current": {"round": 0, "models": models},
                                        "rounds": []})  # fmt: skip

    def save(self) -> None:
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_text(self.path, json.dumps(self.data, indent=1, ensure_ascii=False, default=str) + "\n")

    # ------------------------------------------------------------------------------------------ rounds
    @property
    def rounds(self) -> list[dict]:
        return self.data["rounds"]

    @property
    def current(self) -> dict:
        return self.data["current"]

    def round(self, k: int) -> dict:
        for r in self.rounds:
            if r["round"] == k:
                return r
        raise KeyError(k)

    def open_round(self) -> dict:
        """The round being worked on: the last one if unfinished, else a new one."""
        if self.rounds and not self.rounds[-1].get("done"):
            return self.rounds[-1]
        k = self.rounds[-1]["round"] + 1 if self.rounds else 0
        entry = {"round": k, "steps": {}, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "done": False}
        self.rounds.append(entry)
        return entry

    def record(self, k: int, step: str, result: dict, seconds: float | None = None) -> None:
        entry = self.round(k)
        entry["steps"][step] = {**result, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if seconds is not None:  # wall time of this attempt (a resumed step counts only its last attempt)
            entry["steps"][step]["seconds"] = round(seconds, 2)
        self.save()

    def labelled_blocks(self) -> list[str]:
        """Every block ingested so far (a block labelled twice counts once)."""
        out: dict[str, None] = {}
        for r in self.rounds:
            for b in r["steps"].get("ingest", {}).get("ingested", []):
                out[b] = None
        return list(out)

    def extra_rounds(self, province: str) -> int:
        """Rounds in which the province had blocks labelled, after its first such round (the paper's count
        for the exception of persistently cloudy provinces: PCS waived after three extra rounds)."""
        with_labels = [r for r in self.rounds if province in r["steps"].get("ingest", {}).get("provinces", {})]
        return max(0, len(with_labels) - 1)

    def stopped(self) -> dict[str, bool]:
        """{province: stop verdict} of the latest validated round."""
        for r in reversed(self.rounds):
            verdicts = r["steps"].get("validate", {}).get("verdicts")
            if verdicts:
                return {p: bool(v["stop"]) for p, v in verdicts.items()}
        return {}

"""What `mapper serve` shows of a label campaign: each round's selected blocks over the images handed to the
labeller, with the polygons of the round's labels.gpkg as they stand (returned or still being edited), so a
lead can review a labeller's work before `mapper al ingest`. Read-only, like the run view."""

from __future__ import annotations

import json
from pathlib import Path

from mapper.al.handoff import IMAGES, LABELS, MANIFEST
from mapper.al.labels_gpkg import BLOCKS_LAYER, CLASSES, CROPLAND_LAYER, read_layer
from mapper.grid.blocks import Block
from mapper.serve.runview import Layer, ServeError, _block_raster, _box, file_signature

CAMPAIGN_FILE = "campaign.json"
LABEL_COLOURS = {"1": "#ffc400", "0": "#e53935", "255": "#9e9e9e"}  # class -> colour of a returned polygon


def is_campaign(root: Path) -> bool:
    return (root / CAMPAIGN_FILE).is_file()


class CampaignView:
    """A campaign directory (`mapper al init`) as the web app sees it."""

    kind = "campaign"

    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        if not is_campaign(self.root):
            raise ServeError(f"{root} is not a label campaign (no {CAMPAIGN_FILE}); create one with `mapper al init`")
        self.identity = json.loads((self.root / CAMPAIGN_FILE).read_text())
        if self.identity.get("kind") == "chips":
            raise ServeError(f"{root} is a campaign over chips, which have no place on a map: its rounds are in "
                             f"`mapper al status {root}` and `mapper al report {root}`")  # fmt: skip
        self.refresh()

    def signature(self) -> tuple:
        """The rounds' manifests and labels.gpkg files (a labeller saving edits changes them)."""
        return file_signature(sorted((self.root / "rounds").glob(f"*/export/{MANIFEST}"))
                              + sorted((self.root / "rounds").glob(f"*/export/{LABELS}")))  # fmt: skip

    def refresh(self) -> None:
        self.rounds = self._rounds()
        self.layers = {layer.id: layer for layer in self._layers()}

    def _rounds(self) -> dict[str, dict]:
        """round id ('001') -> its export manifest, for rounds exported so far."""
        out = {}
        for manifest in sorted((self.root / "rounds").glob(f"*/export/{MANIFEST}")):
            try:
                out[manifest.parent.parent.name] = json.loads(manifest.read_text())
            except (OSError, json.JSONDecodeError):
                continue  # being written: the next refresh reads it
        return out

    def _export(self, round_id: str) -> Path:
        return self.root / "rounds" / round_id / "export"

    def _layers(self) -> list[Layer]:
        layers = []
        for k, (round_id, manifest) in enumerate(self.rounds.items()):
            sources = sorted({s for b in manifest["blocks"] for s in b["sources"]})
            for i, s in enumerate(sources):
                rasters = {}
                for b in manifest["blocks"]:
                    path = self._export(round_id) / b["images"].get(s, f"{IMAGES}/-")
                    if path.is_file():
                        rasters[b["block_id"]] = _block_raster(b["block_id"], path, int(b.get("zoom", 16)))
                visible = i == 0 and k == len(self.rounds) - 1
                layers.append(Layer(f"round-{round_id}-{s}", f"round {round_id}: {s}", "imagery",
                                    f"round {round_id}", 12, rasters, visible=visible))  # fmt: skip
        return layers

    def status(self) -> dict:
        notes = [] if self.rounds else ["no round exported yet: `mapper al export` hands a round out"]
        return {"rounds": len(self.rounds), "notes": notes, "complete": True}

    def _statuses(self, round_id: str) -> dict[str, dict]:
        """block id -> the labeller's status and note, from the round's labels.gpkg as it stands."""
        path = self._export(round_id) / LABELS
        try:
            frame = read_layer(path, BLOCKS_LAYER)
        except Exception:
            return {}
        return {str(r["block_id"]): {"label_status": r.get("status"), "note": r.get("note")}
                for _, r in frame.iterrows()}  # fmt: skip

    def grid_features(self) -> dict:
        features = []
        for round_id, manifest in self.rounds.items():
            statuses = self._statuses(round_id)
            for b in manifest["blocks"]:
                bid = b["block_id"]
                props = {"block_id": bid, "round": round_id, "reason": b.get("reason"),
                         **{f"iqa_{s}": c for s, c in (b.get("coverage") or {}).items()},
                         **statuses.get(bid, {"label_status": "todo"})}  # fmt: skip
                features.append({"type": "Feature", "id": f"{round_id}:{bid}", "properties": props,
                                 "geometry": _box(Block.parse(bid).bounds)})  # fmt: skip
        return {"type": "FeatureCollection", "features": features}

    def label_features(self, round_id: str) -> dict | None:
        """The round's cropland polygons in EPSG:4326 with their class, as the labeller left them."""
        if round_id not in self.rounds:
            return None
        path = self._export(round_id) / LABELS
        try:
            frame = read_layer(path, CROPLAND_LAYER).to_crs("EPSG:4326")
        except Exception:
            return {"type": "FeatureCollection", "features": []}
        frame["class_name"] = frame["class"].map(lambda c: CLASSES.get(int(c), str(c)))
        return json.loads(frame[["block_id", "class", "class_name", "geometry"]].to_json())

    def block_files(self, block_id: str) -> dict[str, tuple[Path, str]]:
        return {lid: (layer.rasters[block_id].path, "imagery") for lid, layer in self.layers.items()
                if block_id in layer.rasters}  # fmt: skip

    def block_detail(self, block_id: str) -> dict | None:
        entries = [(r, b) for r, m in self.rounds.items() for b in m["blocks"] if b["block_id"] == block_id]
        if not entries:
            return None
        return {"block_id": block_id, "rounds": [{"round": r, **{k: b.get(k) for k in ("reason", "coverage",
                "predicted_polygons")}, **self._statuses(r).get(block_id, {})} for r, b in entries],
                "pictures": sorted(self.block_files(block_id)), "bounds": Block.parse(block_id).bounds}  # fmt: skip

    def bounds(self) -> list[float] | None:
        bs = [Block.parse(b["block_id"]).bounds for m in self.rounds.values() for b in m["blocks"]]
        if not bs:
            return None
        return [min(b[0] for b in bs), min(b[1] for b in bs), max(b[2] for b in bs), max(b[3] for b in bs)]

    def describe(self) -> dict:
        return {"kind": self.kind, "name": self.root.name, "region": ", ".join(self.identity.get("provinces", [])),
                "sources": self.identity.get("sources", []), "status": self.status(),
                "layers": [layer.describe() for layer in self.layers.values()], "bounds": self.bounds(),
                "rounds": list(self.rounds), "label_colours": LABEL_COLOURS,
                "colour_by": {"label_status": {"todo": "#fdd835", "done": "#43a047", "negative": "#e53935",
                                               "skip": "#9e9e9e"}}}  # fmt: skip

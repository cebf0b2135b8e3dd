"""One pass of `mapper validate` over a run's done blocks: each map of each block scored against the block's
truth (pixel counts, correctness class) and the run's correctness model, summed overall and per province; in
world runs also the true cropland of the mapped pixels per province and prefecture (for level 3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mapper.validation.pixels import HA, ground_area, pixel_counts, pixel_metrics
from mapper.validation.run_data import FINAL, RunData
from mapper.validation.semantic import final_coverage, final_model_class
from mapper.validation.truth import LabelSet, Truth


@dataclass
class Totals:
    """Pixel counts and classes accumulated over blocks, per map."""

    maps: list[str]
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    blocks: dict[str, int] = field(default_factory=dict)
    truth_classes: dict[str, list[str]] = field(default_factory=dict)
    model_on_truth: dict[str, list[str]] = field(default_factory=dict)  # model's class on the same blocks
    model_classes: dict[str, list[str]] = field(default_factory=dict)
    block_counts: dict[str, list[np.ndarray]] = field(default_factory=dict)  # each block's counts: the bootstrap

    def __post_init__(self):
        for m in self.maps:
            self.counts[m] = np.zeros(5)
            self.blocks[m] = 0
            self.truth_classes[m], self.model_on_truth[m], self.model_classes[m] = [], [], []
            self.block_counts[m] = []

    def iou_parts(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Per block TP and TP + FP + FN of a map (m²): the numerator and denominator of its pooled IoU."""
        c = np.array(self.block_counts[name]).reshape(-1, 5)
        return c[:, 0], c[:, :3].sum(axis=1)

    def area_ratio_parts(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Per block mapped (TP + FP) and true (TP + FN) cropland of a map over the labelled pixels (m²)."""
        c = np.array(self.block_counts[name]).reshape(-1, 5)
        return c[:, 0] + c[:, 1], c[:, 0] + c[:, 2]

    @property
    def truth_blocks(self) -> int:
        return max(self.blocks.values(), default=0)

    def add_model_class(self, name: str, model_class: str | None) -> None:
        if model_class is not None:
            self.model_classes[name].append(model_class)

    def add_truth(self, name: str, counts: np.ndarray, truth_class: str, model_class: str | None) -> None:
        """A block where the map was judged against the truth (the model's class kept beside, to compare)."""
        self.counts[name] += counts
        self.blocks[name] += 1
        self.block_counts[name].append(np.asarray(counts, np.float64))
        self.truth_classes[name].append(truth_class)
        if model_class is not None:
            self.model_on_truth[name].append(model_class)


@dataclass
class Evaluation:
    """What the pass over the done blocks gives."""

    records: list[dict]  # one per done block, in planning order
    overall: Totals
    per_province: dict[str, Totals]  # province name -> its blocks' totals
    unit_truth: dict[str, dict[str, float]] | None  # world runs: true cropland m² per province / prefecture code
    problems: list[str]  # maps that are not on the block grid
    block_truth: dict[str, dict[str, float]] = field(default_factory=dict)  # world runs: block -> {province code: m²}


def evaluate_blocks(run: RunData, labels: LabelSet | None, seed: int | None, units, progress: bool) -> Evaluation:
    """One pass over the done blocks: per-block records, totals overall and per province, and (world runs)
    the true cropland of the mapped pixels per unit."""
    from tqdm import tqdm

    world = None
    if seed is not None:
        from mapper.world.world import get_world

        world = get_world(seed)
    evaluator = _BlockEvaluator(run, labels, world, units)
    province_of = run.province_of
    for block_id in tqdm(run.done, desc="validate", unit="block", disable=not progress):
        evaluator.add(block_id, province_of.get(block_id))
    return evaluator.result


class _BlockEvaluator:
    """Scores one block at a time into an Evaluation."""

    def __init__(self, run: RunData, labels: LabelSet | None, world, units):
        self.run, self.labels, self.world, self.units = run, labels, world, units
        unit_truth = {"provinces": {}, "prefectures": {}} if world is not None else None
        self.result = Evaluation([], Totals(run.maps), {}, unit_truth, [])

    def add(self, block_id: str, province: str | None) -> None:
        from mapper.grid.area import row_pixel_areas
        from mapper.grid.blocks import Block

        run = self.run
        block = Block.parse(block_id)
        window = block.window(run.zoom)
        maps, bad = _block_maps(run, block)
        self.result.problems += bad
        decide = run.decide.get(block_id, {})
        decision = decide.get("decision") or run.final[block_id].get("decision")
        model = _model_classes(run.sources, decide, decision)
        truth = self._truth(block, window)
        totals = [self.result.overall]
        if province:
            totals.append(self.result.per_province.setdefault(province, Totals(run.maps)))
        record = {
            "block_id": block_id,
            "province": province,
            "decision": decision,
            "truth": truth is not None,
            "maps": {},
        }
        areas = row_pixel_areas(window)
        if truth is not None:
            record["truth_cropland_ha"] = ground_area(truth.mask == 1, areas) / HA
        for name in run.maps:
            true_coverage = _true_coverage(name, truth, decision, run.sources) if truth is not None else None
            record["maps"][name] = _score_map(
                name, maps.get(name), truth, true_coverage, model.get(name), areas, totals
            )
        self.result.records.append(record)

    def _truth(self, block, window) -> Truth | None:
        """The block's truth: the labels when given, else the world's; in world runs the world's true cropland
        of the block's pixels is added per unit."""
        run, world_truth = self.run, None
        if self.world is not None:
            from mapper.world.truth import block_truth

            world_truth = block_truth(self.world, block)
            mask = world_truth.cropland.astype(np.uint8)  # as mapper.labels.world.write_world_block writes mask.tif
            for kind, values in _unit_truth(mask, block, window, self.units).items():
                if kind == "provinces":  # per block too: the like-for-like PCS is bootstrapped by blocks
                    self.result.block_truth[block.id] = dict(values)
                for code, m2 in values.items():
                    self.result.unit_truth[kind][code] = self.result.unit_truth[kind].get(code, 0.0) + m2
        if self.labels is not None:
            return self.labels.truth(block)
        if world_truth is not None:
            return Truth(mask, {s: world_truth.coverage_name(run.rendering(s)) for s in run.sources})
        return None


def _model_classes(sources: list[str], decide: dict, decision: str | None) -> dict[str, str | None]:
    """{map name: class} as the run's correctness model predicted it, the final map's derived from the sources'."""
    predicted = [decide.get(f"{p}_pred_semantic") for p in "ab"[: len(sources)]]
    model = {s: predicted[i] for i, s in enumerate(sources)}
    model[FINAL] = final_model_class(decision, predicted)
    return model


def _true_coverage(name: str, truth: Truth, decision: str | None, sources: list[str]) -> str | None:
    """The true coverage type to judge a map's class with (the final map's from the source the decision kept)."""
    if name == FINAL:
        return final_coverage(decision, [truth.coverage.get(s) for s in sources])
    return truth.coverage.get(name)


def _score_map(
    name: str,
    pred: np.ndarray | None,
    truth: Truth | None,
    true_coverage: str | None,
    model_class: str | None,
    areas: np.ndarray,
    totals: list[Totals],
) -> dict:
    """One map's entry of a block record (its model class; with truth and the map, its metrics and true class),
    added to the totals."""
    from mapper.decide.truth import correctness_class

    entry = {"model_class": model_class}
    for t in totals:
        t.add_model_class(name, model_class)
    if truth is None or pred is None:
        return entry
    counts = pixel_counts(pred, truth.mask, areas)
    klass = correctness_class(pred, truth.mask, true_coverage, areas)
    m = pixel_metrics(counts)
    entry.update({"iou": m["iou"], "precision": m["precision"], "recall": m["recall"], "truth_class": klass,
                  "tp_ha": m["tp_ha"], "fp_ha": m["fp_ha"], "fn_ha": m["fn_ha"]})  # a paired comparison's parts
    for t in totals:
        t.add_truth(name, counts, klass, model_class)
    return entry


def _read_band1(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    import rasterio

    with rasterio.open(path) as src:
        if (src.height, src.width) != shape:
            return None
        return src.read(1)


def _block_maps(run: RunData, block) -> tuple[dict[str, np.ndarray], list[str]]:
    """{map name: 0/1/255 array} of a done block (sources whose mask is absent left out), and problems."""
    from mapper.seg.predict import read_prediction

    window = block.window(run.zoom)
    maps, problems = {}, []
    for source in run.sources:
        path = run.layout.mask(source, block.id)
        if path.exists():
            mask = read_prediction(path)[0]
            if mask.shape == window.shape:
                maps[source] = mask
            else:
                problems.append(f"masks/{source}/{block.id}.tif is {mask.shape}, not the block grid {window.shape}")
    final = _read_band1(run.layout.final(block.id), window.shape)
    if final is None:
        problems.append(f"final/{block.id}.tif is not on the block grid {window.shape}")
    else:
        maps[FINAL] = final
    return maps, problems


def _unit_truth(truth_mask: np.ndarray, block, window, units) -> dict[str, dict[str, float]]:
    """True cropland m² of the block's pixels in each province and prefecture (pixel-centre rule, as the map)."""
    from mapper.maps.areas import cropland_by_unit, unit_labels

    out = {}
    for kind in ("provinces", "prefectures"):
        frame = units[kind]
        near = frame[frame.intersects(block.polygon)]
        labels = unit_labels(window, list(near.geometry))
        crop = cropland_by_unit(truth_mask, window, labels, len(near))
        out[kind] = {code: float(c) for code, c in zip(near["code"], crop, strict=True)}
    return out

"""forest: the random-forest baseline (mapper.croptype.baseline — XGBoost's random-forest mode over the
flattened series, predicting the leaf directly; its levels are the leaf's path, their probabilities the sums of
their leaves')."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mapper.croptype.baseline import MODEL_FILE, ForestBaseline, load_forest
from mapper.croptype.kinds.base import CropTypeModel, level_probabilities, register


@register
class ForestModel(CropTypeModel):
    kind = "forest"

    def __init__(self, forest: ForestBaseline) -> None:
        self.forest = forest
        self.taxonomy, self.bands, self.steps = forest.taxonomy, forest.bands, forest.steps

    @classmethod
    def holds(cls, path: Path) -> bool:
        return (Path(path) / MODEL_FILE).is_file()

    @classmethod
    def load(cls, path, taxonomy=None, bands=None, steps=None) -> ForestModel:
        return cls(load_forest(path, expect_taxonomy=taxonomy, expect_bands=bands, expect_steps=steps))

    @classmethod
    def fit(cls, train, val, taxonomy, cfg, trees, log) -> tuple[ForestModel, dict]:
        forest = ForestBaseline.fit(train.series, train.leaves(taxonomy), taxonomy, n_trees=trees, seed=cfg.seed,
                                    device=cfg.device, bands=train.bands, steps=train.steps)  # fmt: skip
        return cls(forest), {}

    def predict(self, X: np.ndarray, prior: np.ndarray | None = None, batch_size: int = 512) -> dict:
        if prior is not None:
            raise ValueError("the forest takes no prior; call without prior=")
        parts = [self.forest.predict(X[i : i + batch_size]) for i in range(0, len(X), batch_size)]  # bounds memory
        out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else self.forest.predict(X)
        out["level_probs"] = level_probabilities(out["probs"], self.taxonomy)
        return out

    def save(self, path: Path, training: dict) -> Path:
        self.forest.meta["training"] = {**self.forest.meta.get("training", {}), **training}
        return self.forest.save(path)

"""cropnet: CropNet with hierarchical heads (mapper.croptype.model), trained by mapper.croptype.train and saved
as a mapper.models checkpoint of kind "croptype" (mapper.croptype.checkpoint) — the packaged croptype-default."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mapper.croptype.checkpoint import checkpoint_taxonomy, load_croptype, save_croptype_checkpoint
from mapper.croptype.kinds.base import CropTypeModel, register
from mapper.croptype.taxonomy import Taxonomy
from mapper.models.checkpoint import META_FILE


@register
class CropNetModel(CropTypeModel):
    kind = "cropnet"

    def __init__(self, net, taxonomy: Taxonomy, normalisation: dict, bands: Sequence[str], steps: Sequence[int],
                 config) -> None:  # fmt: skip
        self.net, self.taxonomy, self.normalisation = net, taxonomy, normalisation
        self.bands, self.steps = [str(b) for b in bands], [int(d) for d in steps]
        self.config = config  # the CropTrainConfig (or its dict, once saved) it was trained with

    @property
    def uses_prior(self) -> bool:
        return bool(self.net.use_prior)

    @classmethod
    def holds(cls, path: Path) -> bool:
        return (Path(path) / META_FILE).is_file()

    @classmethod
    def load(cls, path, taxonomy=None, bands=None, steps=None) -> CropNetModel:
        ckpt = load_croptype(path, expect_taxonomy=taxonomy, expect_bands=bands, expect_steps=steps)
        meta = ckpt.meta
        return cls(ckpt.model, checkpoint_taxonomy(ckpt), meta["normalisation"], meta["input"]["bands"],
                   meta["input"]["steps"], meta.get("training", {}).get("config"))  # fmt: skip

    @classmethod
    def fit(cls, train, val, taxonomy, cfg, trees, log) -> tuple[CropNetModel, dict]:
        from mapper.croptype.train import train_cropnet

        prior = cfg.prior
        net, history = train_cropnet(
            train.series, train.leaves(taxonomy), val.series, val.leaves(taxonomy), taxonomy, cfg,
            prior_train=train.priors(taxonomy) if prior else None, prior_val=val.priors(taxonomy) if prior else None,
            log=log, days=train.steps,
        )  # fmt: skip
        record = {"best_epoch": history["best_epoch"], "epochs_run": len(history["epochs"]),
                  "seconds": history["seconds"], "device": str(history["device"])}  # fmt: skip
        steps = history.get("steps", train.steps)  # a window: the steps inside it
        return cls(net, taxonomy, history["normalisation"], train.bands, steps, cfg), record

    def predict(self, X: np.ndarray, prior: np.ndarray | None = None, batch_size: int = 512) -> dict:
        from mapper.croptype.predict import predict_croptype

        return predict_croptype(self.net, X, batch_size, prior, normalisation=self.normalisation,
                                taxonomy=self.taxonomy)  # fmt: skip

    def save(self, path: Path, training: dict) -> Path:
        return save_croptype_checkpoint(path, self.net, self.taxonomy, self.normalisation, self.config, training,
                                        bands=self.bands, steps=self.steps)  # fmt: skip

    def to(self, device: str | None) -> None:
        from mapper.models.training import torch_device

        self.net.to(torch_device(device))  # a GPU when there is one

"""Crop-type prediction in batches: normalise, run CropNet, decode the four levels into one valid path."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from mapper.croptype.decode import decode
from mapper.croptype.normalise import normalise
from mapper.croptype.taxonomy import Taxonomy
from mapper.models.checkpoint import Checkpoint


def _resolve(model_or_ckpt, normalisation, taxonomy) -> tuple[torch.nn.Module, Mapping, Taxonomy]:
    if isinstance(model_or_ckpt, Checkpoint):
        from mapper.croptype.checkpoint import checkpoint_taxonomy

        tax = taxonomy or checkpoint_taxonomy(model_or_ckpt)
        return model_or_ckpt.model, normalisation or model_or_ckpt.meta["normalisation"], tax
    if normalisation is None or taxonomy is None:
        raise ValueError(
            "predicting with a bare model needs normalisation= (train_cropnet's history['normalisation']) and "
            "taxonomy=; or pass the Checkpoint from load_croptype, which carries both"
        )
    return model_or_ckpt, normalisation, taxonomy


@torch.no_grad()
def predict_croptype(
    model_or_ckpt,
    X: np.ndarray,
    batch_size: int = 512,
    prior: np.ndarray | None = None,
    *,
    normalisation: Mapping | None = None,
    taxonomy: Taxonomy | None = None,
) -> dict[str, np.ndarray | list[np.ndarray]]:
    """Predict (N, bands, T) reflectance series. Returns
    leaf (N,) leaf index, code (N,) its taxonomy code, levels (N, 4) its path, leaf_prob (N,) the path's
    probability among valid paths, level_probs [4 × (N, C_level)] each head's own softmax, raw_levels (N, 4)
    each head's own argmax (for the raw consistency). `prior` (N,) last year's leaf or −1, for prior models."""
    model, norm, tax = _resolve(model_or_ckpt, normalisation, taxonomy)
    x = np.asarray(X, np.float32)
    if x.ndim != 3:
        raise ValueError(f"predict_croptype takes (N, bands, T) series, got shape {x.shape}")
    uses_prior = bool(getattr(model, "use_prior", False))
    if prior is not None and not uses_prior:
        raise ValueError("this model was trained without a prior; call without prior=")
    if prior is not None and len(prior) != len(x):
        raise ValueError(f"prior has {len(prior)} entries for {len(x)} series")
    model.eval()
    device = next(model.parameters()).device
    per_level: list[list[torch.Tensor]] = [[] for _ in tax.sizes]
    for i in range(0, len(x), batch_size):
        xt = torch.from_numpy(normalise(x[i : i + batch_size], norm)).to(device)
        pt = None
        if prior is not None:
            pt = torch.as_tensor(np.asarray(prior[i : i + batch_size], np.int64), device=device)
        for lv, z in enumerate(model(xt, pt)):
            per_level[lv].append(z.float().log_softmax(1).cpu())
    empty = [np.zeros((0, n), np.float32) for n in tax.sizes]
    logp = [torch.cat(p).numpy() if p else e for p, e in zip(per_level, empty, strict=True)]
    dec = decode(logp, tax.paths)
    return {
        "leaf": dec.leaf,
        "code": tax.code_array()[dec.leaf],
        "levels": dec.levels,
        "leaf_prob": dec.leaf_prob,
        "level_probs": [np.exp(a) for a in logp],
        "raw_levels": np.stack([a.argmax(1) for a in logp], axis=1).astype(np.int64),
    }

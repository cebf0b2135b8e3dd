"""CropNet: a small CNN that convolves jointly over bands and time, with H2Crop-style hierarchical heads.

The input is one series as a one-channel image, (B, 1, bands, T) — (B, bands, T) is unsqueezed. Four blocks
of [conv3x3 - BN - ReLU - conv3x3 - BN - ReLU - Dropout2d] with `width` channels (the first conv of the first
block has stride 2), then global average pooling gives `width` shared features. `dropout` is one rate for
every block or one per block (the published CropNet: 0.2, 0.3, 0.3, 0.4, PUBLISHED_DROPOUT); `init_weights`
gives its Kaiming initialisation (training's choice: the weights of a saved model are what they are).

The heads predict the four taxonomy levels coarse to fine: level 1 sees the features, level l > 1 the features
and level l − 1's logits, so a fine level can lean on its parent's decision. With `prior` every head also sees
last year's leaf as a one-hot vector (all zeros when unknown, leaf index −1).

arch (what checkpoint.json stores): {"name": "cropnet", "bands": 10, "steps": 43, "width": 128, "dropout": 0.2,
"sizes": [5, 11, 17, 25], "prior": false, "n_leaves": 25}.
"""

from __future__ import annotations

import torch
from torch import nn

ARCH_KEYS = ("name", "bands", "steps", "width", "dropout", "sizes", "prior", "n_leaves")
N_BLOCKS = 4
PUBLISHED_DROPOUT = (0.2, 0.3, 0.3, 0.4)  # x-ytong/CropNet models/CropNet.py, block by block


def default_arch(
    sizes, n_leaves: int, width: int = 128, dropout: float | list[float] = 0.2, prior: bool = False, bands: int = 10,
    steps: int = 43,
) -> dict:
    return {
        "name": "cropnet",
        "bands": int(bands),
        "steps": int(steps),
        "width": int(width),
        "dropout": [float(d) for d in dropout] if isinstance(dropout, list | tuple) else float(dropout),
        "sizes": [int(s) for s in sizes],
        "prior": bool(prior),
        "n_leaves": int(n_leaves),
    }


def conv_block(c_in: int, c_out: int, stride: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),  # bias is redundant before BN
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Dropout2d(dropout),
    )


def block_dropouts(dropout) -> list[float]:
    """One rate per block from one number or a list of N_BLOCKS."""
    rates = [float(d) for d in dropout] if isinstance(dropout, list | tuple) else [float(dropout)] * N_BLOCKS
    if len(rates) != N_BLOCKS or not all(0 <= r < 1 for r in rates):
        raise ValueError(f"dropout {dropout}: one rate in [0, 1) or {N_BLOCKS} of them, one per block")
    return rates


def init_weights(model: nn.Module, scheme: str = "torch") -> nn.Module:
    """"torch": PyTorch's defaults, left as built; "kaiming": the published CropNet's — convolutions He-normal
    over fan-out, linear layers He-normal over fan-in, biases 0, batch norms weight 1 and bias 0."""
    if scheme == "torch":
        return model
    if scheme != "kaiming":
        raise ValueError(f"init {scheme!r}: choose torch or kaiming")
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_out" if isinstance(m, nn.Conv2d) else "fan_in",
                                    nonlinearity="relu")  # fmt: skip
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def prior_one_hot(prior_leaf: torch.Tensor, n_leaves: int) -> torch.Tensor:
    """(B,) leaf indices, −1 for unknown -> (B, n_leaves) float one-hot (a zero row for unknown)."""
    prior_leaf = prior_leaf.long()
    if ((prior_leaf < -1) | (prior_leaf >= n_leaves)).any():
        raise ValueError(f"prior leaf indices must be −1 (unknown) or 0..{n_leaves - 1}")
    out = torch.zeros(len(prior_leaf), n_leaves + 1, device=prior_leaf.device)
    out[torch.arange(len(prior_leaf), device=prior_leaf.device), prior_leaf + 1] = 1.0
    return out[:, 1:]  # column 0 took the unknowns


class HierarchicalHeads(nn.Module):
    """One Linear per level over [features, logits of the level above, prior one-hot]."""

    def __init__(self, n_features: int, sizes, n_prior: int = 0):
        super().__init__()
        self.sizes = [int(s) for s in sizes]
        self.n_prior = int(n_prior)
        ins = [n_features + (self.sizes[i - 1] if i else 0) + self.n_prior for i in range(len(self.sizes))]
        self.levels = nn.ModuleList(nn.Linear(i, s) for i, s in zip(ins, self.sizes, strict=True))

    def forward(self, features: torch.Tensor, prior: torch.Tensor | None = None) -> list[torch.Tensor]:
        if self.n_prior and prior is None:
            raise ValueError("these heads take a prior; pass a (B, n_leaves) one-hot (zeros for unknown)")
        extra = [prior] if self.n_prior else []
        out: list[torch.Tensor] = []
        for head in self.levels:
            out.append(head(torch.cat([features, *out[-1:], *extra], dim=1)))
        return out


class CropNet(nn.Module):
    def __init__(self, bands: int, steps: int, width: int, dropout: float | list[float], sizes, prior: bool,
                 n_leaves: int):  # fmt: skip
        super().__init__()
        self.bands, self.steps, self.n_leaves, self.use_prior = int(bands), int(steps), int(n_leaves), bool(prior)
        rates = block_dropouts(dropout)
        blocks = [conv_block(1 if i == 0 else width, width, 2 if i == 0 else 1, rates[i]) for i in range(N_BLOCKS)]
        self.blocks = nn.Sequential(*blocks)
        self.heads = HierarchicalHeads(width, sizes, self.n_leaves if prior else 0)
        self.arch = default_arch(sizes, n_leaves, width, dropout, prior, bands, steps)

    def forward(self, x: torch.Tensor, prior_leaf: torch.Tensor | None = None) -> list[torch.Tensor]:
        """x (B, 1, bands, T) or (B, bands, T), normalised -> [level-1 … level-4 logits]."""
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.shape[1:] != (1, self.bands, self.steps):
            raise ValueError(
                f"CropNet takes (B, 1, {self.bands}, {self.steps}) series, got {tuple(x.shape)}; resample the "
                "series onto the model's bands and time steps"
            )
        features = self.blocks(x).mean(dim=(2, 3))  # global average pooling
        prior = None
        if self.use_prior:
            if prior_leaf is None:
                prior_leaf = torch.full((len(x),), -1, dtype=torch.long, device=x.device)
            prior = prior_one_hot(prior_leaf.to(x.device), self.n_leaves).to(features.dtype)
        elif prior_leaf is not None:
            raise ValueError("this model was built without a prior (arch prior: false); drop prior_leaf")
        return self.heads(features, prior)


def build_model(arch: dict) -> CropNet:
    """CropNet from its arch dict (checkpoint.json's arch); unknown or missing keys are errors."""
    missing = [k for k in ARCH_KEYS if k not in arch]
    unknown = [k for k in arch if k not in ARCH_KEYS]
    if missing or unknown:
        raise ValueError(f"crop-type arch: missing keys {missing}, unknown keys {unknown}; the keys are {ARCH_KEYS}")
    if arch["name"] != "cropnet":
        raise ValueError(f"crop-type arch name {arch['name']!r} is not 'cropnet'")
    if len(arch["sizes"]) != 4 or int(arch["sizes"][-1]) > int(arch["n_leaves"]):
        raise ValueError(f"arch sizes {arch['sizes']} must be four class counts, the last ≤ n_leaves")
    return CropNet(**{k: arch[k] for k in ARCH_KEYS if k != "name"})

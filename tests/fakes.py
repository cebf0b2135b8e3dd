"""Stand-ins shared by the model tests."""

import torch


class ExplodingNet(torch.nn.Module):
    """A network that fails if it is run: for paths that must not reach the network (e.g. empty imagery)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, pixel_values):
        raise AssertionError("the network must not run")

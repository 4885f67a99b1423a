"""Small building blocks shared by the encoder, prompt encoder and mask decoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm3d(nn.Module):
    """LayerNorm over the channel axis of a channels-first volume.

    Args:
        num_channels (int): C, the size of the normalised axis.
        eps (float): variance floor; 1e-6 as in the published model.

    Input and output: (B, C, D, H, W), normalised independently at every voxel.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.layer_norm normalises trailing axes, so move C last and back.
        x = x.permute(0, 2, 3, 4, 1)
        x = F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
        return x.permute(0, 4, 1, 2, 3)


class FeedForward(nn.Module):
    """Two-layer position-wise MLP used inside transformer blocks.

    Args:
        dim (int): input and output width.
        hidden_dim (int): width of the hidden layer.
        activation (type[nn.Module]): nonlinearity class (GELU in the encoder, ReLU in the decoder).

    Input (..., dim) -> output (..., dim).
    """

    def __init__(self, dim: int, hidden_dim: int, activation: type[nn.Module]) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = activation()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class MLP(nn.Module):
    """Stack of Linear layers with ReLU between them (none after the last).

    Args:
        in_dim (int): input width.
        hidden_dim (int): width of every hidden layer.
        out_dim (int): output width.
        num_layers (int): number of Linear layers (>= 1).

    Input (..., in_dim) -> output (..., out_dim).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        widths = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = F.relu(x)
        return x

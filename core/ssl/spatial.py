"""DTA-SNL's feature-extraction changes (seeds/002): local attention enhancement over the
encoder's last feature map, and random dropout of feature-map regions while training, so no
single face region (the mouth, say) carries the whole decision.

They work on a (B, C, h, w) map, so they exist only where the encoder's map is computed:
fine-tune mode. Head mode caches pooled features; asking for them there is an error that says
to use fine-tune mode.
"""

from __future__ import annotations

import torch
from torch import nn

# Which modules a run uses is decided without torch (the studio validates settings with it).
from core.ssl.config import REGION_DROPOUT_DEFAULT, SpatialModeError, SpatialOptions, spatial_options  # noqa: F401


def drop_regions(
    fmap: torch.Tensor, probability: float, grid: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zeroes each cell of a grid x grid partition of the map with `probability`, per face,
    never all cells of a face, and rescales the kept ones so the expected sum is unchanged."""
    b, _c, h, w = fmap.shape
    grid = max(1, min(grid, h, w))
    keep = torch.rand((b, grid * grid), generator=generator, device="cpu") >= probability
    none_kept = ~keep.any(dim=1)
    if none_kept.any():  # keep one random cell of those faces
        pick = torch.randint(grid * grid, (int(none_kept.sum()),), generator=generator)
        keep[none_kept.nonzero().squeeze(1), pick] = True
    scale = (grid * grid) / keep.sum(dim=1, keepdim=True).float()
    cells = (keep.float() * scale).view(b, 1, grid, grid).to(fmap.device, fmap.dtype)
    mask = nn.functional.interpolate(cells, size=(h, w), mode="nearest")
    return fmap * mask


class LocalAttentionPool(nn.Module):
    """(B, C, h, w) -> (B, C): optional region dropout (training only), then local attention
    enhancement (a per-location weight in (0, 1) from a small conv net; locations are boosted
    by it, f + a * f, so salient regions count more without the rest vanishing), then the
    global average."""

    def __init__(self, channels: int, options: SpatialOptions):
        super().__init__()
        self.channels = channels
        self.options = options
        self.attention = (
            nn.Sequential(
                nn.Conv2d(channels, max(channels // 8, 8), 1),
                nn.ReLU(inplace=True),
                nn.Conv2d(max(channels // 8, 8), 1, 3, padding=1),
            )
            if options.local_attention
            else None
        )

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        if self.training and self.options.region_dropout > 0:
            fmap = drop_regions(fmap, self.options.region_dropout, self.options.region_grid)
        if self.attention is not None:
            weights = torch.sigmoid(self.attention(fmap))
            fmap = fmap + weights * fmap
        return fmap.mean(dim=(2, 3))

"""Multi-scale aggregation (Cai et al., MICCAI 2018, section 2.3).

The last stage is reduced by a 1x1 convolution (512 channels in the seed) and upsampled to the
penultimate stage's size, bilinearly or by a 3x3 transposed convolution; the penultimate stage
is reduced by another 1x1 convolution (256); the two are concatenated. The CAMs then have the
penultimate stage's resolution, twice the last one's for ResNets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperinit.errors import LocalizationError

__all__ = ["MSA_MODES", "MultiScaleAggregation"]

#: upsampling of the deeper map: bilinear interpolation or a transposed convolution
MSA_MODES = ("bilinear", "deconv")


class MultiScaleAggregation(nn.Module):
    """``forward(shallow, deep) -> (N, deep_out + shallow_out, h, w)`` at ``shallow``'s size.

    Args:
        shallow_channels, deep_channels: channels of the penultimate and the last stage.
        mode: ``"bilinear"`` or ``"deconv"`` (a 3x3 transposed convolution, stride 2).
        channels: ``(deep_out, shallow_out)`` after the 1x1 reductions (seed: 512, 256).
    """

    def __init__(
        self,
        shallow_channels: int,
        deep_channels: int,
        mode: str = "bilinear",
        channels: tuple[int, int] = (512, 256),
    ) -> None:
        super().__init__()
        if mode not in MSA_MODES:
            raise LocalizationError(f"msa must be one of {MSA_MODES} (or True/False); got {mode!r}")
        deep_out, shallow_out = (int(c) for c in channels)
        self.mode = mode
        self.reduce_deep = nn.Conv2d(deep_channels, deep_out, 1)
        self.reduce_shallow = nn.Conv2d(shallow_channels, shallow_out, 1)
        self.up = (
            nn.ConvTranspose2d(deep_out, deep_out, 3, stride=2, padding=1, output_padding=1)
            if mode == "deconv"
            else None
        )
        self.out_channels = deep_out + shallow_out

    def forward(self, shallow: Tensor, deep: Tensor) -> Tensor:
        d = F.relu(self.reduce_deep(deep))
        size = shallow.shape[-2:]
        if self.up is not None:  # then resized if the stages are not a factor 2 apart
            d = F.relu(self.up(d))
        if d.shape[-2:] != size:
            d = F.interpolate(d, size=size, mode="bilinear", align_corners=False)
        s = F.relu(self.reduce_shallow(shallow))
        return torch.cat([d, s], dim=1)

"""U-Net with a timm or torchvision classification backbone as its encoder."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hyperinit.errors import BenchConfigError

__all__ = ["TorchvisionEncoder", "UNet"]


def _changes(module: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Run ``module``; return its output and how often it halves the resolution (approx.)."""
    y = module(x)
    ratio = x.shape[-1] / max(y.shape[-1], 1)
    return y, max(0, round(torch.log2(torch.tensor(float(ratio))).item()))


class TorchvisionEncoder(nn.Module):
    """A torchvision classifier cut into stages at each change of resolution.

    The model's feature path (``features`` if it has one, else its children up to global pooling)
    is flattened until no single module halves the resolution more than once; the output before
    each downsampling and the last one are returned, shallow to deep.
    """

    def __init__(self, model: nn.Module, in_chans: int, probe_size: int = 64) -> None:
        super().__init__()
        feats = getattr(model, "features", None)
        if isinstance(feats, nn.Sequential):
            mods = list(feats.children())
        else:
            mods = [
                m
                for m in model.children()
                if not isinstance(m, (nn.AdaptiveAvgPool2d, nn.Linear, nn.Dropout))
                and not (isinstance(m, nn.Sequential) and any(isinstance(c, nn.Linear) for c in m))
            ]
        x = torch.zeros(1, in_chans, probe_size, probe_size)
        flat: list[nn.Module] = []
        with torch.no_grad():
            while mods:
                m = mods.pop(0)
                y, n = _changes(m, x)
                if n > 1 and isinstance(m, nn.Sequential) and len(m) > 1:
                    mods = list(m.children()) + mods
                    continue
                flat.append(m)
                x = y
        # group modules into stages: a new stage starts at each module that downsamples
        stages: list[list[nn.Module]] = [[]]
        x = torch.zeros(1, in_chans, probe_size, probe_size)
        with torch.no_grad():
            for m in flat:
                y, n = _changes(m, x)
                if n and stages[-1]:
                    stages.append([])
                stages[-1].append(m)
                x = y
        self.stages = nn.ModuleList(nn.Sequential(*s) for s in stages)
        with torch.no_grad():
            outs = self(torch.zeros(1, in_chans, probe_size, probe_size))
        self.channels = [o.shape[1] for o in outs]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


class _Up(nn.Module):
    def __init__(self, c_in: int, c_skip: int, c_out: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(c_in + c_skip, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        size = skip.shape[-2:] if skip is not None else [2 * s for s in x.shape[-2:]]
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], 1)
        return self.block(x)


class UNet(nn.Module):
    """U-Net: encoder feature pyramid, a decoder of upsampling conv blocks and a 1x1 head.

    Args:
        encoder: ``timm:NAME`` (built with ``features_only=True``) or ``torchvision:NAME``
            (cut at its resolution changes, see :class:`TorchvisionEncoder`); a bare name is timm.
        in_chans: input channels.
        num_classes: output channels (logits), 1 for binary segmentation.
        decoder_channels: width of the decoder block at each level, deep to shallow.

    The encoder is ``self.encoder``, the rest is ``self.decoder`` and ``self.head``, so
    ``hyperinit.initialize(unet, exclude=["decoder", "head"])`` predicts the encoder only.
    The output has the input's spatial size.
    """

    def __init__(
        self,
        encoder: str = "timm:resnet18",
        in_chans: int = 3,
        num_classes: int = 1,
        decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16),
    ) -> None:
        super().__init__()
        source, _, name = encoder.partition(":") if ":" in encoder else ("timm", "", encoder)
        if source == "timm":
            import timm

            self.encoder = timm.create_model(
                name, pretrained=False, features_only=True, in_chans=in_chans
            )
            channels = list(self.encoder.feature_info.channels())
        elif source in ("torchvision", "tv"):
            from hyperinit.models import create_model

            self.encoder = TorchvisionEncoder(
                create_model(f"torchvision:{name}", in_chans=in_chans), in_chans
            )
            channels = self.encoder.channels
        else:
            raise BenchConfigError(f"U-Net encoder {encoder!r}: use timm:NAME or torchvision:NAME")
        self.encoder_name = encoder
        skips = channels[::-1][1:]
        blocks, c_in = [], channels[-1]
        for i, c_out in enumerate(decoder_channels):
            c_skip = skips[i] if i < len(skips) else 0
            blocks.append(_Up(c_in, c_skip, c_out))
            c_in = c_out
            if i >= len(skips):
                break
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(c_in, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = list(self.encoder(x))
        y, skips = feats[-1], feats[::-1][1:]
        for i, block in enumerate(self.decoder):
            y = block(y, skips[i] if i < len(skips) else None)
        y = self.head(y)
        if y.shape[-2:] != size:
            y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
        return y

"""AttentionMiner: weakly supervised disease localisation from image-level labels (Cai et al.,
MICCAI 2018): attention mining, knowledge preservation and multi-scale aggregation."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from hyperinit.errors import LocalizationError
from hyperinit.localize.boxes import DEFAULT_BOX_THRESHOLDS, heatmap_boxes
from hyperinit.localize.features import StageFeatures
from hyperinit.localize.kp import KP_MODES
from hyperinit.localize.mining import aggregate_heatmaps, class_activation_maps, mine
from hyperinit.localize.mining import normalize_maps as _normalize
from hyperinit.localize.msa import MSA_MODES, MultiScaleAggregation
from hyperinit.localize.training import MinerTraining

__all__ = ["AttentionMiner", "MinerNet"]

logger = logging.getLogger(__name__)

_MSA_ALIASES = {"transposed": "deconv", "deconvolution": "deconv", "transposed_conv": "deconv"}


class MinerNet(nn.Module):
    """Backbone stages, optional MSA and one binary branch per class on the GAP of the
    (erased) feature map; ``forward(x) -> (fmap, cams, logits, kp_layers)``.

    ``logits`` are the un-erased branch outputs (eqs. 1-2 with M = 1); the logits of an erased
    map are ``logits - mean_hw(cams * (1 - M))``, since GAP and the branch are linear.
    """

    def __init__(
        self, features: StageFeatures, msa: MultiScaleAggregation | None, num_classes: int
    ) -> None:
        super().__init__()
        self.features = features
        self.msa = msa
        width = msa.out_channels if msa is not None else features.deep_channels
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, list[Tensor]]:
        shallow, deep = self.features(x)
        fmap = self.msa(shallow, deep) if self.msa is not None else deep
        cams = class_activation_maps(fmap, self.classifier.weight)
        logits = cams.mean(dim=(2, 3)) + self.classifier.bias
        layers = [shallow, deep, *([fmap] if self.msa is not None else []), logits]
        return fmap, cams, logits, layers


def _first_conv_channels(model: nn.Module) -> int | None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.in_channels
    return None


class AttentionMiner(MinerTraining):
    """Harvest disease locations from images with image-level labels only.

    Args:
        backbone: a timm or torchvision model, any module with a spatial feature map, or a
            ``"timm:NAME"`` / ``"torchvision:NAME"`` spec. Its head is removed in place.
        num_classes: findings, one binary branch each (sigmoid, cross-entropy, multi-label).
        msa: multi-scale aggregation of the last two stages: ``True``/``"bilinear"``,
            ``"deconv"`` (transposed convolution) or ``False``.
        kp: knowledge preservation during mining: ``"features"`` (only ``am_fraction`` of each
            batch is mined, and the GAP features of the other images are kept close to those of
            a frozen copy, eqs. 4-6), ``"vanilla"`` (only the fraction) or ``None`` (every image
            is mined, no KP loss).
        kp_weight: lambda of eq. 6.
        am_fraction: n/N, the share of each batch that goes through mining (0.125).
        mining_steps: T (eq. 7-8). ``1`` is the CAM baseline: no erasure, no KP.
        threshold: binarisation of the normalised CAM for the erasure masks (0.5).
        class_names: names of the classes (used in boxes); default: the dataset's.
        in_chans, image_size: input channels (default: the first convolution's) and the side of
            the dry forward that finds the stages.
        stages: ``(shallow, deep)`` module names to read, instead of the automatic choice.
        msa_channels: channels of the deep and the shallow map after the 1x1 reductions.
    """

    def __init__(
        self,
        backbone: nn.Module | str,
        num_classes: int = 8,
        *,
        msa: bool | str = True,
        kp: str | None = "features",
        kp_weight: float = 0.5,
        am_fraction: float = 0.125,
        mining_steps: int = 3,
        threshold: float = 0.5,
        class_names: Sequence[str] | None = None,
        in_chans: int | None = None,
        image_size: int = 256,
        stages: Sequence[str] | None = None,
        msa_channels: tuple[int, int] = (512, 256),
    ) -> None:
        if int(num_classes) < 1:
            raise LocalizationError(f"num_classes must be >= 1; got {num_classes}")
        if kp not in KP_MODES:
            raise LocalizationError(f"kp must be one of {KP_MODES}; got {kp!r}")
        if not 0.0 < am_fraction <= 1.0:
            raise LocalizationError(f"am_fraction must be in (0, 1]; got {am_fraction}")
        if int(mining_steps) < 1:
            raise LocalizationError(f"mining_steps must be >= 1; got {mining_steps}")
        if not 0.0 < threshold < 1.0 or kp_weight < 0:
            raise LocalizationError(
                f"threshold must be in (0, 1) and kp_weight >= 0; got {threshold}, {kp_weight}"
            )
        if class_names is not None and len(class_names) != num_classes:
            raise LocalizationError(
                f"{len(class_names)} class_names for num_classes={num_classes}; give one name "
                "per class."
            )
        mode = "bilinear" if msa is True else (msa or None)
        mode = _MSA_ALIASES.get(mode, mode) if isinstance(mode, str) else None
        if mode is not None and mode not in MSA_MODES:
            raise LocalizationError(f"msa must be True, False or one of {MSA_MODES}; got {msa!r}")
        self.backbone_spec: str | None = None
        if isinstance(backbone, str):
            from hyperinit.models import create_model

            self.backbone_spec = backbone
            backbone = create_model(backbone, in_chans=in_chans or 1)
        if not isinstance(backbone, nn.Module):
            raise LocalizationError(f"backbone must be an nn.Module; got {type(backbone)}")
        in_chans = int(in_chans or _first_conv_channels(backbone) or 3)
        features = StageFeatures(backbone, in_chans=in_chans, image_size=image_size, stages=stages)
        head = (
            MultiScaleAggregation(
                features.shallow_channels, features.deep_channels, mode, tuple(msa_channels)
            )
            if mode
            else None
        )
        self.net = MinerNet(features, head, int(num_classes))
        self.frozen: nn.Module | None = None
        self.num_classes = int(num_classes)
        self.msa = mode
        self.msa_channels = tuple(int(c) for c in msa_channels)
        self.kp = kp
        self.kp_weight = float(kp_weight)
        self.am_fraction = float(am_fraction)
        self.mining_steps = int(mining_steps)
        self.threshold = float(threshold)
        self.class_names = list(class_names) if class_names is not None else None
        self.in_chans = in_chans
        self.image_size = int(image_size)
        self.stages = (features.shallow_name, features.deep_name)
        self.epoch = 0
        self.step = 0
        self.history: dict[str, list[dict[str, float]]] = {"steps": [], "epochs": []}
        self.device = torch.device("cpu")

    @property
    def backbone(self) -> nn.Module:
        """The backbone being tuned (without its head)."""
        return self.net.features.body

    def config(self) -> dict[str, Any]:
        """What defines the network and the mining (saved with checkpoints and weights)."""
        return {
            "method": "attention_mining",
            "backbone_class": type(self.backbone).__name__,
            "backbone_spec": self.backbone_spec,
            "num_classes": self.num_classes,
            "class_names": self.class_names,
            "msa": self.msa,
            "msa_channels": list(self.msa_channels),
            "kp": self.kp,
            "kp_weight": self.kp_weight,
            "am_fraction": self.am_fraction,
            "mining_steps": self.mining_steps,
            "threshold": self.threshold,
            "in_chans": self.in_chans,
            "image_size": self.image_size,
            "stages": list(self.stages),
        }

    # ------------------------------------------------------------------ checks

    def _check_images(self, x: Tensor, where: str) -> None:
        if not isinstance(x, Tensor) or x.dim() != 4:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise LocalizationError(f"{where}: images must be (N, C, H, W) tensors; got {shape}")
        if x.shape[1] != self.in_chans:
            raise LocalizationError(
                f"{where}: images have {x.shape[1]} channels but the model takes "
                f"{self.in_chans}; convert them (e.g. x.mean(1, keepdim=True) for grayscale, "
                f"x.repeat(1, 3, 1, 1) for RGB) or build the miner with in_chans={x.shape[1]}."
            )

    def _check_dataset(self, ds: Dataset) -> None:
        """Channels, label width and positives of every class, before anything is written."""
        x, y = ds[0]
        self._check_images(x[None] if isinstance(x, Tensor) else x, "train data")
        y = torch.as_tensor(y)
        if y.numel() != self.num_classes:
            raise LocalizationError(
                f"the labels have {y.numel()} entries but num_classes={self.num_classes}: give "
                "one multi-hot entry per class, or build the miner with "
                f"num_classes={y.numel()}."
            )
        labels = getattr(ds, "labels", None)
        if not isinstance(labels, Tensor):
            logger.info("the dataset has no .labels: reading every item to check the labels")
            labels = torch.stack([torch.as_tensor(ds[i][1]).float() for i in range(len(ds))])
        if labels.dim() != 2 or labels.shape[1] != self.num_classes:
            raise LocalizationError(
                f"labels of shape {tuple(labels.shape)} do not fit num_classes={self.num_classes}."
            )
        names = self.class_names or [str(c) for c in range(self.num_classes)]
        empty = [n for n, v in zip(names, labels.sum(0)) if v <= 0]
        if empty:
            raise LocalizationError(
                f"no positive image for class(es) {empty}: their branches cannot learn. Drop "
                "them (num_classes, class_names) or add images that have them."
            )

    def _as_dataset(self, data: Any) -> Dataset:
        if isinstance(data, str | Path):
            from hyperinit.localize.data import BOX_FINDINGS, load_localization_data

            names = self.class_names or (
                list(BOX_FINDINGS) if self.num_classes == len(BOX_FINDINGS) else None
            )
            if names is None:
                raise LocalizationError(
                    f"num_classes={self.num_classes}: pass class_names to read a folder or CSV."
                )
            return load_localization_data(
                data, image_size=self.image_size, in_chans=self.in_chans, classes=names
            )
        if isinstance(data, Dataset):
            return data
        raise LocalizationError(
            f"train data must be a folder, a label CSV or a Dataset of (image, labels); got "
            f"{type(data).__name__}"
        )

    # ------------------------------------------------------------------ inference

    def _image_batches(self, images: Tensor | Dataset, batch_size: int) -> Iterable[Tensor]:
        if isinstance(images, Tensor):
            self._check_images(images, "images")
            for i in range(0, images.shape[0], batch_size):
                yield images[i : i + batch_size]
            return
        if not isinstance(images, Dataset):
            raise LocalizationError(
                f"images must be an (N, C, H, W) tensor or a Dataset; got {type(images)}"
            )
        for i in range(0, len(images), batch_size):  # type: ignore[arg-type]
            items = [images[j] for j in range(i, min(i + batch_size, len(images)))]  # type: ignore[arg-type]
            x = torch.stack([it[0] if isinstance(it, tuple | list) else it for it in items])
            self._check_images(x, "images")
            yield x

    @torch.no_grad()
    def _mine_batch(self, x: Tensor) -> dict[str, Tensor]:
        self.net.eval()
        fmap, _, logits, _ = self.net(x.to(self.device))
        maps, masks = mine(fmap.float(), self.net.classifier.weight.float(),
                           self.mining_steps, self.threshold)  # fmt: skip
        final = aggregate_heatmaps(maps, masks)
        up = F.interpolate(final, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return {
            "heatmaps": _normalize(up).cpu(),
            "steps": torch.stack(maps, 1).cpu(),
            "masks": torch.stack(masks[1:], 1).cpu(),
            "probs": torch.sigmoid(logits).cpu(),
        }

    def heatmaps(
        self, images: Tensor | Dataset, *, batch_size: int = 16, details: bool = False
    ) -> Tensor | dict[str, Tensor]:
        """Final heatmaps ``(N, C, H, W)`` in [0, 1] at input resolution (eq. 8 over the
        ``mining_steps`` CAMs, upsampled bilinearly, min-max normalised per map).

        ``images``: ``(N, C, H, W)`` tensors prepared as for training, or a Dataset of them.
        With ``details``, a dict with also ``steps`` (N, T, C, h, w) (the H_t), ``masks``
        (N, T, C, h, w) (the M_t) and ``probs`` (N, C).
        """
        parts = [self._mine_batch(x) for x in self._image_batches(images, batch_size)]
        if not parts:
            raise LocalizationError("no images given.")
        out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        return out if details else out["heatmaps"]

    @torch.no_grad()
    def predict(self, images: Tensor | Dataset, *, batch_size: int = 16) -> Tensor:
        """Class probabilities ``(N, C)``."""
        self.net.eval()
        return torch.cat(
            [torch.sigmoid(self.net(x.to(self.device))[2]).cpu()
             for x in self._image_batches(images, batch_size)]
        )  # fmt: skip

    def boxes(
        self,
        images: Tensor | Dataset,
        *,
        per_class: int = 3,
        thresholds: Sequence[float] = DEFAULT_BOX_THRESHOLDS,
        batch_size: int = 16,
        progress: bool = False,
    ) -> list[list[tuple]]:
        """Per image, up to ``per_class`` boxes ``(class, x, y, w, h, score)`` per class in input
        pixels, from the final heatmap at several intensity thresholds, ranked by the mean
        heatmap intensity inside (section 3.2). ``class`` is the class name if known, else its
        index. Heatmaps are made batch by batch and not kept."""
        from tqdm.auto import tqdm

        names: list[Any] = self.class_names or list(range(self.num_classes))
        out: list[list[tuple]] = []
        n = images.shape[0] if isinstance(images, Tensor) else len(images)  # type: ignore[arg-type]
        bar = tqdm(total=n, desc="boxes", unit="img", disable=not progress)
        for x in self._image_batches(images, batch_size):
            maps = self._mine_batch(x)["heatmaps"]
            for hm in maps:
                found = []
                for c in range(self.num_classes):
                    for bx in heatmap_boxes(hm[c], per_class=per_class, thresholds=thresholds):
                        found.append((names[c], *bx))
                out.append(found)
            bar.update(len(maps))
        bar.close()
        return out

    # ------------------------------------------------------------------ export

    def save(self, path: str | Path) -> Path:
        """Write ``model.safetensors`` (the network) and ``config.json`` to the folder ``path``;
        :meth:`load` reads them back."""
        from safetensors.torch import save_file

        from hyperinit.atomic import atomic_write_text
        from hyperinit.localize.checkpoint import unshare

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "model.safetensors.tmp"
        save_file(unshare(self.net.state_dict()), str(tmp), metadata={"format": "pt"})
        tmp.replace(out / "model.safetensors")
        cfg = {**self.config(), "epochs": self.epoch, "steps": self.step}
        atomic_write_text(json.dumps(cfg, indent=2) + "\n", out / "config.json")
        return out

    @classmethod
    def load(
        cls, path: str | Path, backbone: nn.Module | None = None, **overrides: Any
    ) -> AttentionMiner:
        """A miner from :meth:`save`'s folder. ``backbone``: a fresh model of the saved class
        (not needed if the miner was built from a spec). ``overrides``: settings that do not
        change the network (``kp``, ``mining_steps``, ``threshold``...), e.g. to fine-tune a
        saved classifier with mining."""
        from safetensors.torch import load_file

        folder = Path(path)
        try:
            cfg = json.loads((folder / "config.json").read_text())
            state = load_file(str(folder / "model.safetensors"))
        except (OSError, ValueError) as e:
            raise LocalizationError(f"no AttentionMiner weights in {folder}: {e}") from e
        if backbone is None:
            if not cfg.get("backbone_spec"):
                raise LocalizationError(
                    f"{folder} was saved from a backbone module, not a spec: pass a fresh "
                    f"{cfg.get('backbone_class')} as backbone="
                )
            backbone = cfg["backbone_spec"]
        arch = ("msa", "msa_channels", "num_classes", "in_chans", "stages")
        bad = sorted(set(overrides) & set(arch))
        if bad:
            raise LocalizationError(f"{bad} change the network; they cannot be overridden.")
        kwargs = {k: cfg[k] for k in ("kp", "kp_weight", "am_fraction", "mining_steps",
                                      "threshold", "class_names", "image_size")}  # fmt: skip
        kwargs.update(overrides)
        miner = cls(
            backbone, cfg["num_classes"], msa=cfg["msa"] or False,
            msa_channels=tuple(cfg["msa_channels"]), in_chans=cfg["in_chans"],
            stages=cfg["stages"] if cfg["stages"][1] else None, **kwargs,
        )  # fmt: skip
        if isinstance(backbone, str):
            miner.backbone_spec = backbone
        try:
            miner.net.load_state_dict(state)
        except RuntimeError as e:
            raise LocalizationError(f"{folder} does not fit this backbone: {e}") from e
        return miner

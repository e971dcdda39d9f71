"""Feature distillation from a modality teacher: the objective ``"distill"``.

A teacher network pretrained on the modality's unlabelled images (``hyperinit c2l``, a
:class:`hyperinit.C2LPretrainer` checkpoint) sees the same batch as the predicted network, and
the predicted network is trained to represent the images as the teacher does at several depths.
The loss has to work across widths and architectures, so it compares the two networks by linear
CKA (Kornblith et al., ICML 2019) of their features at matching relative depths: CKA is
invariant to rotations and to the scale of either feature space and compares features of any
widths, so no per-architecture projection is learned.

Depths are found without knowing the architecture (:class:`StageRecorder`): a convolutional
network's stage ends are the last outputs at each spatial resolution; a transformer's are the
outputs of its blocks (the children of a block list).

    hyperinit c2l --data DIR --model timm:resnet18 --in-chans 1 --image-size 64 --out T
    hyperinit train --objective distill --teacher T ...
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hyperinit.errors import ObjectiveError
from hyperinit.training.data import normalize
from hyperinit.training.objectives import Network, Objective, ObjectiveOutput, register_objective

__all__ = ["DistillObjective", "StageRecorder", "linear_cka", "load_teacher", "match_depths"]


def linear_cka(x: Tensor, y: Tensor, eps: float = 1e-8) -> Tensor:
    """Linear centred kernel alignment of features ``x`` (B, p) and ``y`` (B, q), in [0, 1].

    1 when one is a rotation and rescaling of the other; invariant to the widths p and q.

    >>> x = torch.randn(32, 8)
    >>> round(float(linear_cka(x, 3 * x @ torch.linalg.qr(torch.randn(8, 8))[0])), 4)
    1.0
    """
    if x.shape[0] != y.shape[0] or x.shape[0] < 2:
        raise ObjectiveError(f"linear_cka needs two batches of >= 2 rows, got {x.shape}, {y.shape}")
    x = x.float().flatten(1)
    y = y.float().flatten(1)
    x = x - x.mean(0, keepdim=True)
    y = y - y.mean(0, keepdim=True)
    kx, ky = x @ x.t(), y @ y.t()  # Gram matrices of centred features are centred
    return (kx * ky).sum() / (kx.norm() * ky.norm()).clamp_min(eps)


def _pooled(t: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4C) on a 2 x 2 grid (keeps where a feature is); tokens -> mean."""
    if t.dim() == 4:
        if min(t.shape[-2:]) >= 2:
            return F.adaptive_avg_pool2d(t, 2).flatten(1)
        return t.mean((2, 3))
    return t.mean(1)


#: modules whose output is not a feature map of their own (attention-map dropout...)
_PASS_THROUGH = (nn.Dropout, nn.Dropout2d, nn.Identity)


class StageRecorder:
    """Collects the features of ``module`` at its stage ends during the forward passes run
    inside the ``with`` block (forward hooks; works under ``torch.func.functional_call``).

    A convolutional network's stages are its spatial resolutions: for each (larger than 1 x 1,
    no larger than the one before, in order of appearance) the last output recorded at it.
    With fewer than two resolutions (a transformer) the stages are the outputs of the children
    of its block lists (``nn.ModuleList`` / ``nn.Sequential``) that are token tensors
    (B, N, C).
    """

    def __init__(self, module: nn.Module):
        self.module = module
        self._by_res: dict[tuple[int, int], Tensor] = {}
        self._area = 1 << 62  # the smallest resolution so far: later ones may not be larger
        self._tokens: list[Tensor] = []
        self._handles: list[Any] = []

    def __enter__(self) -> StageRecorder:
        in_list = {
            id(child)
            for m in self.module.modules()
            if isinstance(m, (nn.ModuleList, nn.Sequential))
            for child in m.children()
        }
        for m in self.module.modules():
            if m is not self.module and not isinstance(m, _PASS_THROUGH):
                self._handles.append(m.register_forward_hook(self._hook(id(m) in in_list)))
        return self

    def _hook(self, block: bool) -> Any:
        def hook(_m: nn.Module, _inputs: Any, out: Any) -> None:
            if not isinstance(out, Tensor) or not out.is_floating_point():
                return
            if out.dim() == 4 and out.shape[-1] * out.shape[-2] > 1:
                res = (int(out.shape[-2]), int(out.shape[-1]))
                if res in self._by_res or not self._by_res or res[0] * res[1] <= self._area:
                    self._by_res[res] = out  # a dict keeps the order of first assignment
                    self._area = min(self._area, res[0] * res[1])
            elif out.dim() == 3 and block:
                self._tokens.append(out)

        return hook

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType
    ) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def stages(self) -> list[Tensor]:
        """The recorded stage features, shallow to deep, each pooled to (B, D)."""
        feats = list(self._by_res.values()) if len(self._by_res) >= 2 else self._tokens
        return [_pooled(t) for t in feats]


def match_depths(n_student: int, n_teacher: int, depths: int) -> list[tuple[int, int]]:
    """Index pairs (student stage, teacher stage) at ``depths`` evenly spaced relative depths,
    deepest included: ``match_depths(6, 4, 3) == [(1, 1), (3, 2), (5, 3)]``."""
    pairs: list[tuple[int, int]] = []
    for k in range(1, depths + 1):
        p = k / depths
        pair = (math.ceil(p * n_student) - 1, math.ceil(p * n_teacher) - 1)
        if pair not in pairs:
            pairs.append(pair)
    return pairs


def load_teacher(path: str | Path, model: str | None = None) -> tuple[nn.Module, int]:
    """A frozen teacher from a C2L checkpoint folder: ``(module in eval mode, in_chans)``.

    ``model`` (``timm:NAME`` ...) names its architecture when ``config.json`` does not (folders
    written by ``hyperinit c2l`` do)."""
    from hyperinit.c2l import load_backbone, strip_head
    from hyperinit.models import create_model

    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise ObjectiveError(
            f"no C2L teacher at {folder} (config.json missing): pretrain one with "
            "`hyperinit c2l --data DIR --model timm:resnet18 --out FOLDER` and pass that folder"
        )
    cfg = json.loads((folder / "config.json").read_text())
    spec = model or cfg.get("model")
    if not spec:
        raise ObjectiveError(
            f"{folder}/config.json does not name the teacher's architecture; pass it as "
            "teacher_model (e.g. 'timm:resnet18', the --model it was pretrained with)"
        )
    in_chans = int(cfg.get("in_chans", 1))
    net = strip_head(create_model(spec, in_chans=in_chans))
    load_backbone(net, folder)
    return net.eval().requires_grad_(False), in_chans


def _recolour(x: Tensor, channels: int) -> Tensor:
    """Normalised images with another channel count (through their grey values)."""
    if x.shape[1] == channels:
        return x
    from hyperinit.c2l.augment import default_normalization

    mean, std = default_normalization(x.shape[1])
    raw = x * torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    raw = raw + torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    return normalize(raw.mean(1, keepdim=True).expand(-1, channels, -1, -1))


@register_objective
class DistillObjective(Objective):
    """Match a frozen modality teacher's features at ``depths`` relative depths by linear CKA.

    Args:
        feature_dim: unused (no head: CKA needs no projection); kept for the common signature.
        teacher: a C2L checkpoint folder (see :func:`load_teacher`) or a module mapping
            images to features (then ``teacher_chans`` gives its input channels).
        teacher_model: the teacher's architecture when its config.json does not name it.
        depths: how many relative depths are compared (the deepest always).
        teacher_chans: input channels of a teacher passed as a module.

    The loss is the mean of ``1 - CKA`` over the depth pairs; the score the mean CKA. The
    teacher is not part of the objective's state (a resumed run reloads it from ``teacher``).
    """

    name = "distill"

    def __init__(
        self,
        feature_dim: int = 128,
        teacher: str | Path | nn.Module | None = None,
        teacher_model: str | None = None,
        depths: int = 3,
        teacher_chans: int = 1,
    ):
        super().__init__(feature_dim)
        if teacher is None:
            raise ObjectiveError(
                "the distill objective needs a teacher: a C2L checkpoint folder "
                "(hyperinit train --teacher FOLDER, or objective_options={'distill': "
                "{'teacher': FOLDER}})"
            )
        if not isinstance(depths, int) or depths < 1:
            raise ObjectiveError(f"depths must be an integer >= 1, got {depths!r}")
        if isinstance(teacher, nn.Module):
            net, chans = teacher.eval().requires_grad_(False), teacher_chans
        else:
            net, chans = load_teacher(teacher, teacher_model)
        self._teacher = [net]  # a list keeps it out of state_dict() and parameters()
        self.teacher_chans, self.depths = chans, depths

    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    @torch.no_grad()
    def teacher_stages(self, x: Tensor) -> list[Tensor]:
        """The teacher's pooled stage features for normalised images ``x``."""
        net = self.teacher
        if next(net.parameters()).device != x.device:
            net.to(x.device)
        with StageRecorder(net) as rec:
            net(_recolour(x, self.teacher_chans))
        return rec.stages()

    def forward(self, net: Network, x: Tensor, generator: torch.Generator) -> ObjectiveOutput:
        module = getattr(net, "module", None)
        if not isinstance(module, nn.Module):
            raise ObjectiveError("distill needs the network's module (net.module) to hook")
        with StageRecorder(module) as rec:
            net(x)
        student, teacher = rec.stages(), self.teacher_stages(x)
        if not student or not teacher:
            which = "predicted network" if not student else "teacher"
            raise ObjectiveError(f"distill found no stage features in the {which}")
        ckas = [
            linear_cka(student[i], teacher[j])
            for i, j in match_depths(len(student), len(teacher), self.depths)
        ]
        score = torch.stack(ckas).mean()
        loss = 1 - score
        metrics = {"distill_loss": loss.item(), "cka": score.item()}
        metrics.update({f"cka{k}": c.item() for k, c in enumerate(ckas)})
        return ObjectiveOutput(loss, score.detach(), metrics, x.shape[0])

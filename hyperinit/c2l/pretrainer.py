"""C2LPretrainer: Comparing-to-Learn self-supervised pretraining for any feature backbone."""

from __future__ import annotations

import copy
import csv
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from hyperinit import distributed as hdist
from hyperinit.c2l.augment import TwoViews, default_augment, default_normalization
from hyperinit.c2l.loss import batch_mixup, c2l_loss
from hyperinit.c2l.queue import FeatureQueue, suggested_queue_size
from hyperinit.errors import C2LCheckpointError, C2LConfigError, HyperInitError

__all__ = [
    "C2LHistory",
    "C2LPretrainer",
    "load_backbone",
    "strip_head",
]

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"
_CHECKPOINT_VERSION = 1
_HEAD_NAMES = ("fc", "classifier", "heads", "head", "last_linear")


def strip_head(model: nn.Module) -> nn.Module:
    """Turn a classifier into a feature extractor (in place; returns it).

    timm models: ``reset_classifier(0)``. Others (torchvision, user models): the first of
    ``fc``, ``classifier``, ``heads``, ``head``, ``last_linear`` becomes ``nn.Identity``, so
    the state dict keeps the backbone's key names.
    """
    if hasattr(model, "reset_classifier") and hasattr(model, "get_classifier"):
        model.reset_classifier(0)
        return model
    for name in _HEAD_NAMES:
        if isinstance(getattr(model, name, None), nn.Module):
            setattr(model, name, nn.Identity())
            return model
    raise C2LConfigError(
        f"{type(model).__name__} has no head named {', '.join(_HEAD_NAMES)}; remove its "
        "classifier by hand so that it returns a (batch, features) tensor."
    )


def _first_conv_channels(model: nn.Module) -> int | None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Conv1d | nn.Conv3d):
            return m.in_channels
    return None


class _Encoder(nn.Module):
    """Backbone followed by the linear projection head (the official 128-d head)."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))


class _TwoViewStudent(nn.Module):
    """Both student forwards in one call, so DDP sees one forward per backward."""

    def __init__(self, encoder: _Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, xa: Tensor, xm: Tensor) -> tuple[Tensor, Tensor]:
        return self.encoder(xa), self.encoder(xm)


@dataclass
class C2LHistory:
    """Training record: one row per step and per epoch (loss, positive-pair accuracy, lr)."""

    steps: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)

    @property
    def loss(self) -> list[float]:
        """Loss of every step."""
        return [r["loss"] for r in self.steps]

    @property
    def accuracy(self) -> list[float]:
        """Positive-pair accuracy of every step (the A term: positive beats all negatives)."""
        return [r["accuracy"] for r in self.steps]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> C2LHistory:
        return cls([dict(r) for r in d.get("steps", [])], [dict(r) for r in d.get("epochs", [])])


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


class C2LPretrainer:
    """Comparing-to-Learn (Zhou et al., MICCAI 2020) pretraining of a feature backbone.

    A student (``backbone`` + linear ``feature_dim`` head) learns to match an EMA teacher on two
    augmented views, their batch mixups (one lambda, one permutation) and the feature mixup of
    the teacher's features, against a FIFO queue of past teacher features (Algorithm 1).

    Args:
        backbone: any module mapping (B, C, H, W) images to (B, F) features: timm with
            ``num_classes=0``, torchvision after :func:`strip_head`, or your own.
        feature_dim: width of the L2-normalised projection (128 in the seed).
        queue_size: queue length N, or ``"auto"`` (default): the seed's share of an epoch's
            keys, about a tenth (:func:`~hyperinit.c2l.suggested_queue_size`), set from the
            data at the first :meth:`fit`. The seed's 2**15 is that share of its 112k images;
            on a smaller set it would hold several epochs of keys.
        momentum: EMA factor of the teacher (0.999).
        temperature: InfoNCE temperature (0.07).
        mixup_alpha: lambda ~ Beta(alpha, alpha) (1.0).
        image_size: training crop size; also the size of the dry forward.
        in_chans: input channels; default: the first convolution's.
        augment: per-image transform to a normalised (C, H, W) tensor; default
            :func:`default_augment`.
        bn_mode: ``"shuffle"`` (shuffled BN for the teacher across ranks, as MoCo), ``"sync"``
            (SyncBatchNorm, GPU only) or ``"none"``.

    After :meth:`fit`, ``.backbone`` is the pretrained student; :meth:`save_pretrained` writes
    it as safetensors.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        feature_dim: int = 128,
        queue_size: int | str = "auto",
        momentum: float = 0.999,
        temperature: float = 0.07,
        mixup_alpha: float = 1.0,
        image_size: int = 224,
        in_chans: int | None = None,
        augment: Callable[[Any], Tensor] | None = None,
        bn_mode: str = "shuffle",
    ) -> None:
        if not isinstance(backbone, nn.Module):
            raise C2LConfigError(f"backbone must be an nn.Module; got {type(backbone).__name__}")
        if not 0.0 <= momentum < 1.0:
            raise C2LConfigError(f"momentum must be in [0, 1); got {momentum}")
        auto_queue = queue_size == "auto"
        if not auto_queue and (isinstance(queue_size, str) or int(queue_size) < 1):
            raise C2LConfigError(f"queue_size must be an int >= 1 or 'auto'; got {queue_size!r}")
        if temperature <= 0 or mixup_alpha <= 0 or feature_dim < 1:
            raise C2LConfigError(
                "temperature and mixup_alpha must be > 0 and feature_dim >= 1; got "
                f"{temperature}, {mixup_alpha}, {feature_dim}"
            )
        if bn_mode not in ("shuffle", "sync", "none"):
            raise C2LConfigError(f"bn_mode must be 'shuffle', 'sync' or 'none'; got {bn_mode!r}")
        in_chans = in_chans or _first_conv_channels(backbone) or 3
        self.feature_width = self._infer_width(backbone, in_chans, image_size)
        self.feature_dim = feature_dim
        #: the queue's length; with ``"auto"`` the seed's 2**15 until the first fit sets it
        self.queue_size = 2**15 if auto_queue else int(queue_size)
        self._auto_queue = auto_queue
        self.momentum = momentum
        self.temperature = temperature
        self.mixup_alpha = mixup_alpha
        self.image_size = image_size
        self.in_chans = in_chans
        self.bn_mode = bn_mode
        self.augment = augment
        self.student = _Encoder(backbone, nn.Linear(self.feature_width, feature_dim))
        self.teacher = copy.deepcopy(self.student).requires_grad_(False)
        self.queue = FeatureQueue(self.queue_size, feature_dim)
        self.history = C2LHistory()
        self.step = 0
        self.epoch = 0

    @property
    def backbone(self) -> nn.Module:
        """The student backbone (the pretrained model)."""
        return self.student.backbone

    @staticmethod
    def _infer_width(backbone: nn.Module, in_chans: int, image_size: int) -> int:
        was_training = backbone.training
        try:
            p = next(iter(backbone.parameters()), None)
            dev = p.device if p is not None else torch.device("cpu")
            x = torch.zeros(2, in_chans, image_size, image_size, device=dev)
            with torch.no_grad():
                out = backbone.eval()(x)
        except Exception as e:
            raise C2LConfigError(
                f"dry forward of {type(backbone).__name__} on a (2, {in_chans}, {image_size}, "
                f"{image_size}) input failed: {e}. Set in_chans / image_size to fit the model."
            ) from e
        finally:
            backbone.train(was_training)
        if not isinstance(out, Tensor) or out.dim() != 2:
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise C2LConfigError(
                f"the backbone must return a (batch, features) tensor; {type(backbone).__name__} "
                f"returned {shape}. Use timm.create_model(..., num_classes=0), "
                "hyperinit.c2l.strip_head(model), or add global pooling and flatten."
            )
        return int(out.shape[1])

    def config(self) -> dict[str, Any]:
        """Hyperparameters that define the model and the objective (saved with checkpoints)."""
        return {
            "method": "c2l",
            "backbone_class": type(self.backbone).__name__,
            "feature_width": self.feature_width,
            "feature_dim": self.feature_dim,
            "queue_size": self.queue_size,
            "momentum": self.momentum,
            "temperature": self.temperature,
            "mixup_alpha": self.mixup_alpha,
            "image_size": self.image_size,
            "in_chans": self.in_chans,
            "bn_mode": self.bn_mode,
        }

    # ------------------------------------------------------------------ data

    def _make_augment(self) -> Callable[[Any], Tensor]:
        return self.augment or default_augment(self.image_size, self.in_chans)

    def _as_dataset(self, data: Any) -> Dataset:
        if isinstance(data, str | Path):
            from hyperinit.data import ImageFolder

            root = Path(data)
            if not root.is_dir():
                raise C2LConfigError(f"{root} is not a folder of images.")
            try:
                channels = self.in_chans if self.in_chans in (1, 3) else None
                return ImageFolder(root, channels=channels)
            except HyperInitError as e:
                raise C2LConfigError(f"no images to pretrain on in {root}: {e}") from e
        if isinstance(data, Dataset):
            return data
        raise C2LConfigError(
            f"data must be a folder, a Dataset or a DataLoader; got {type(data).__name__}"
        )

    def _loader(
        self, dataset: Dataset, batch_size: int, num_workers: int, seed: int, epoch: int
    ) -> DataLoader:
        pairs = TwoViews(dataset, self._make_augment())
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        sampler = None
        if hdist.is_distributed():
            from torch.utils.data.distributed import DistributedSampler

            sampler = DistributedSampler(pairs, shuffle=True, seed=seed, drop_last=True)
            sampler.set_epoch(epoch)
        return DataLoader(
            pairs,
            batch_size=batch_size,
            shuffle=sampler is None,
            sampler=sampler,
            drop_last=True,
            num_workers=num_workers,
            generator=g,
            persistent_workers=False,
        )

    def _views_from_batch(self, batch: Any) -> tuple[Tensor, Tensor]:
        """Two augmented views from a user DataLoader's batch of images (or (images, ...))."""
        if isinstance(batch, tuple | list):
            batch = batch[0]
        if not isinstance(batch, Tensor) or batch.dim() != 4:
            raise C2LConfigError(
                "a DataLoader given to fit must yield (B, C, H, W) image tensors (or tuples "
                f"starting with one); got {type(batch).__name__}"
            )
        aug = self._make_augment()
        return torch.stack([aug(x) for x in batch]), torch.stack([aug(x) for x in batch])

    # ------------------------------------------------------------ algorithm

    @torch.no_grad()
    def _momentum_update(self) -> None:
        """teacher = m * teacher + (1 - m) * student for parameters; buffers copied."""
        m = self.momentum
        t_params = list(self.teacher.parameters())
        s_params = [p.detach() for p in self.student.parameters()]
        torch._foreach_mul_(t_params, m)
        torch._foreach_add_(t_params, s_params, alpha=1.0 - m)
        for bt, bs in zip(self.teacher.buffers(), self.student.buffers()):
            bt.copy_(bs)

    @torch.no_grad()
    def _sync_buffers(self) -> None:
        """Average the student's float buffers (BN statistics) over ranks, so that every rank
        (and the teacher, which copies them) holds the same state."""
        if not hdist.is_distributed():
            return
        for b in self.student.buffers():
            if b.is_floating_point():
                b.copy_(hdist.all_reduce_mean(b))

    @torch.no_grad()
    def _teacher_features(self, x: Tensor) -> Tensor:
        if self.bn_mode != "shuffle" or not hdist.is_distributed():
            return self.teacher(x)
        # Shuffled BN: each rank normalises a random slice of the global batch.
        world, rank, b = hdist.get_world_size(), hdist.get_rank(), x.shape[0]
        x_all = hdist.all_gather_tensors(x)
        if x_all.shape[0] != world * b:  # ranks disagree on the batch size: no shuffling
            logger.debug("unequal batches across ranks; teacher BN not shuffled this step")
            return self.teacher(x)
        perm = torch.randperm(x_all.shape[0], device=x.device)
        hdist.broadcast(perm, 0)
        feats = self.teacher(x_all[perm.view(world, b)[rank]])
        feats_all = hdist.all_gather_tensors(feats)
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(perm.numel(), device=perm.device)
        return feats_all[inverse.view(world, b)[rank]]

    def _train_step(self, x1: Tensor, x2: Tensor) -> dict[str, float]:
        xm1, xm2, lam, perm = batch_mixup(x1, x2, self.mixup_alpha, self._gen)
        use_amp = self._amp
        with torch.autocast(self._device.type, dtype=torch.float16, enabled=use_amp):
            v1a, v1m = self._student_call(x1, xm1)
            v2a = self._teacher_features(x2)
            v2m = self._teacher_features(xm2)
        out = c2l_loss(
            v1a.float(), v1m.float(), v2a.float(), v2m.float(), self.queue.features,
            lam=lam, perm=perm, temperature=self.temperature,
        )  # fmt: skip
        if not torch.isfinite(out.loss):
            raise C2LConfigError(
                f"the C2L loss became {out.loss.item()} at step {self.step}; lower lr or "
                "check the inputs for NaN/inf."
            )
        self._optimizer.zero_grad(set_to_none=True)
        self._scaler.scale(out.loss).backward()
        self._scaler.step(self._optimizer)
        self._scaler.update()
        self._scheduler.step()
        self._sync_buffers()
        self._momentum_update()
        self.queue.enqueue(hdist.all_gather_tensors(out.keys))
        self.step += 1
        return {
            "step": self.step,
            "epoch": self.epoch,
            "loss": float(hdist.all_reduce_mean(out.loss)),
            "accuracy": float(hdist.all_reduce_mean(out.accuracy)),
            "loss_A": float(out.terms["A"].detach()),
            "loss_M": float(out.terms["M"].detach()),
            "loss_mix": float(out.terms["mix"].detach()),
            "lam": lam,
            "lr": self._optimizer.param_groups[0]["lr"],
        }

    # ------------------------------------------------------------ training

    def fit(
        self,
        data: str | Path | Dataset | DataLoader,
        *,
        epochs: int = 1,
        batch_size: int = 64,
        lr: float = 0.03,
        weight_decay: float = 1e-4,
        sgd_momentum: float = 0.9,
        lr_milestones: Sequence[float] = (0.5, 2 / 3, 5 / 6),
        lr_gamma: float = 0.1,
        max_steps_per_epoch: int | None = None,
        num_workers: int = 0,
        checkpoint_dir: str | Path | None = None,
        resume: bool | str | Path = False,
        seed: int = 0,
        device: str | torch.device | None = None,
        amp: bool = True,
        log_every: int = 20,
        progress: bool = True,
        on_epoch_end: Callable[[C2LPretrainer, int], None] | None = None,
    ) -> C2LHistory:
        """Pretrain the backbone; returns the history (also at ``self.history``).

        Args:
            data: a folder of unlabelled images (any depth), a Dataset of images (or
                ``(image, ...)`` tuples) or a DataLoader of (B, C, H, W) batches (the views are
                then augmented in this process; under torchrun give it a DistributedSampler
                and ``drop_last=True`` so that every rank sees as many equal batches).
            epochs, batch_size: per process (under torchrun the global batch is world x batch).
            lr, weight_decay, sgd_momentum: SGD as the seed (0.03, 1e-4, 0.9).
            lr_milestones, lr_gamma: lr x ``lr_gamma`` at these fractions of all steps (the
                seed's 120/160/200 of 240 epochs).
            max_steps_per_epoch: cap the steps of each epoch (quick runs).
            checkpoint_dir: write ``last.pt`` (atomic) after every epoch, plus
                ``history.json`` and ``steps.csv``.
            resume: True to continue from ``checkpoint_dir/last.pt`` if it exists, or a path.
            seed: seeds data order, augmentations and mixup (re-seeded from ``(seed, epoch,
                rank)`` at each epoch, so a resumed run repeats an uninterrupted one). The
                head and a fixed-length queue start from the global RNG at construction; an
                ``"auto"`` queue is drawn from ``seed`` at the first fit.
            device: default ``cuda`` (this rank's GPU) if available, else ``cpu``.
            amp: float16 autocast + GradScaler on CUDA (ignored on CPU).
            on_epoch_end: called as ``f(self, epoch)`` after each epoch's checkpoint.
        """
        if epochs < 1 or batch_size < 2:
            raise C2LConfigError(
                f"need epochs >= 1 and batch_size >= 2; got {epochs}, {batch_size}"
            )
        info = hdist.init_distributed(device=device)
        self._device = info.device if device is None else torch.device(device)
        if self._device.type == "cuda" and info.world_size > 1:
            self._device = info.device
        self._amp = bool(amp and self._device.type == "cuda")
        main = info.is_main
        user_loader = data if isinstance(data, DataLoader) else None
        dataset = None if user_loader is not None else self._as_dataset(data)
        if dataset is not None:
            n = len(dataset)  # type: ignore[arg-type]
            if n // info.world_size < batch_size:
                raise C2LConfigError(
                    f"{n} images over {info.world_size} process(es) is fewer than one batch of "
                    f"{batch_size}; lower batch_size."
                )
            steps_per_epoch = n // info.world_size // batch_size
        else:
            steps_per_epoch = len(user_loader)  # type: ignore[arg-type]
        if max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, max_steps_per_epoch)
        if steps_per_epoch < 1:
            raise C2LConfigError("the data gives no full batch; add images or lower batch_size.")
        total_steps = epochs * steps_per_epoch
        loader_batch = getattr(user_loader, "batch_size", None)  # a DataLoader's own wins
        keys_per_step = 3 * (loader_batch or batch_size) * info.world_size
        keys_per_epoch = keys_per_step * steps_per_epoch
        suggested = suggested_queue_size(keys_per_epoch, keys_per_step)
        if self._auto_queue and self.step == 0:
            if self.queue_size != suggested:
                gen = torch.Generator().manual_seed(seed)
                self.queue = FeatureQueue(suggested, self.feature_dim, generator=gen)
                self.queue_size = suggested
            logger.info(
                "queue_size auto: %d keys (%.0f%% of an epoch's %d)",
                suggested,
                100 * suggested / keys_per_epoch,
                keys_per_epoch,
            )
        elif keys_per_step > self.queue_size:
            logger.warning(
                "queue_size %d holds less than one step's %d keys", self.queue_size, keys_per_step
            )
        elif self.queue_size > 2 * suggested:
            share = self.queue_size / keys_per_epoch
            logger.warning(
                "queue_size %d holds %.0f%% of an epoch's keys of these images%s; the seed's queue "
                "holds about 10%% (2**15 keys, 112k images), and a longer one pretrained worse "
                "backbones on small medical sets. Pass queue_size=%d.",
                self.queue_size,
                100 * share,
                ", so every image is also contrasted with its own earlier keys"
                if share > 1
                else "",
                suggested,
            )

        self._setup(
            lr=lr, weight_decay=weight_decay, sgd_momentum=sgd_momentum,
            lr_milestones=lr_milestones, lr_gamma=lr_gamma, total_steps=total_steps, seed=seed,
        )  # fmt: skip
        ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else None
        resumed = False
        if resume:
            path = ckpt_dir / CHECKPOINT_NAME if resume is True and ckpt_dir else resume
            if path is True:
                raise C2LConfigError("resume=True needs checkpoint_dir.")
            path = Path(path)  # type: ignore[arg-type]
            if path.is_file():
                self._load_checkpoint(path)
                resumed = True
                logger.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.step)
            elif resume is not True:
                raise C2LCheckpointError(f"no checkpoint at {path}")
        if not resumed:
            self.step, self.epoch, self.history = 0, 0, C2LHistory()
            # identical start on every rank: rank 0's student, queue; teacher = student
            for t in [*self.student.state_dict().values(), *self.queue.state_dict().values()]:
                hdist.broadcast(t, 0)
            self._momentum_update_from_scratch()
        if ckpt_dir and main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)

        if info.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self._device.index] if self._device.type == "cuda" else None
            self._student_call = DDP(_TwoViewStudent(self.student), device_ids=ids)
        try:
            for epoch in range(self.epoch, epochs):
                self.epoch = epoch
                self._run_epoch(
                    epoch, epochs, dataset, user_loader, batch_size, num_workers, seed,
                    steps_per_epoch, log_every, progress and main, ckpt_dir if main else None,
                )  # fmt: skip
                self.epoch = epoch + 1
                if ckpt_dir is not None:
                    if main:
                        self._save_checkpoint(ckpt_dir / CHECKPOINT_NAME)
                    hdist.barrier()
                if on_epoch_end is not None:
                    on_epoch_end(self, epoch)
        finally:
            self._student_call = None  # drop the DDP wrapper
        self.student.eval()
        return self.history

    def _setup(
        self,
        *,
        lr: float,
        weight_decay: float,
        sgd_momentum: float,
        lr_milestones: Sequence[float],
        lr_gamma: float,
        total_steps: int,
        seed: int,
        device: str | torch.device | None = None,
        amp: bool | None = None,
    ) -> None:
        """Move to the device and build optimizer, schedule, scaler and the mixup generator."""
        if device is not None:
            self._device = torch.device(device)
        if amp is not None:
            self._amp = bool(amp and self._device.type == "cuda")
        if self.bn_mode == "sync":
            if self._device.type != "cuda":
                raise C2LConfigError("bn_mode='sync' needs CUDA; use 'shuffle' on CPU.")
            self.student = nn.SyncBatchNorm.convert_sync_batchnorm(self.student)
            self.teacher = nn.SyncBatchNorm.convert_sync_batchnorm(self.teacher)
        self.student.to(self._device).train()
        # as the official code: teacher in eval mode (no dropout / drop-path) but its batch
        # norms in train mode (batch statistics)
        self.teacher.to(self._device).eval()
        for m in self.teacher.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.train()
        self.queue.to(self._device)
        params = [p for p in self.student.parameters() if p.requires_grad]
        self._optimizer = torch.optim.SGD(
            params, lr=lr, momentum=sgd_momentum, weight_decay=weight_decay
        )
        marks = sorted(round(f * total_steps) for f in lr_milestones)
        self._scheduler = torch.optim.lr_scheduler.LambdaLR(
            self._optimizer, lambda s: lr_gamma ** sum(s >= m for m in marks)
        )
        self._scaler = torch.amp.GradScaler(self._device.type, enabled=self._amp)
        self._gen = torch.Generator().manual_seed(seed + 7919 * hdist.get_rank())
        self._student_call = _TwoViewStudent(self.student)

    def _momentum_update_from_scratch(self) -> None:
        with torch.no_grad():
            for pt, ps in zip(self.teacher.parameters(), self.student.parameters()):
                pt.copy_(ps)
            for bt, bs in zip(self.teacher.buffers(), self.student.buffers()):
                bt.copy_(bs)

    def _run_epoch(
        self,
        epoch: int,
        epochs: int,
        dataset: Dataset | None,
        user_loader: DataLoader | None,
        batch_size: int,
        num_workers: int,
        seed: int,
        steps_per_epoch: int,
        log_every: int,
        show: bool,
        log_dir: Path | None,
    ) -> None:
        # Everything random in an epoch derives from (seed, epoch, rank): exact resume.
        rank = hdist.get_rank()
        torch.manual_seed(seed * 1_000_003 + epoch * 7_919 + rank)
        self._gen.manual_seed(seed * 1_000_003 + epoch * 7_919 + 104_729 * (rank + 1))
        batches: Iterable[Any]
        if user_loader is not None:
            batches = user_loader
        else:
            assert dataset is not None
            batches = self._loader(dataset, batch_size, num_workers, seed, epoch)
        start = time.perf_counter()
        rows: list[dict[str, float]] = []
        bar = tqdm(total=steps_per_epoch, desc=f"C2L epoch {epoch + 1}/{epochs}", disable=not show)
        for i, batch in enumerate(batches):
            if i >= steps_per_epoch:
                break
            if user_loader is not None:
                x1, x2 = self._views_from_batch(batch)
            else:
                x1, x2 = batch
            row = self._train_step(
                x1.to(self._device, non_blocking=True), x2.to(self._device, non_blocking=True)
            )
            rows.append(row)
            self.history.steps.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['accuracy']:.2f}")
            if log_every and self.step % log_every == 0 and rank == 0:
                logger.info(
                    "step %d  loss %.4f  pos-acc %.3f  lr %.4g",
                    self.step, row["loss"], row["accuracy"], row["lr"],
                )  # fmt: skip
        bar.close()
        if not rows:
            raise C2LConfigError("the data gave no batch in this epoch.")
        summary = {
            "epoch": epoch + 1,
            "steps": len(rows),
            "loss": sum(r["loss"] for r in rows) / len(rows),
            "accuracy": sum(r["accuracy"] for r in rows) / len(rows),
            "time_s": time.perf_counter() - start,
        }
        self.history.epochs.append(summary)
        if rank == 0:
            logger.info(
                "epoch %d: loss %.4f  pos-acc %.3f  (%.0f s)",
                summary["epoch"], summary["loss"], summary["accuracy"], summary["time_s"],
            )  # fmt: skip
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            _atomic_write_text(json.dumps(self.history.to_dict()) + "\n", log_dir / "history.json")
            with open(log_dir / "steps.csv", "a", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                if f.tell() == 0:
                    w.writeheader()
                w.writerows(rows)

    # ------------------------------------------------------------ checkpoints

    def _save_checkpoint(self, path: Path) -> None:
        state = {
            "version": _CHECKPOINT_VERSION,
            "config": self.config(),
            "student": self.student.state_dict(),
            "teacher": self.teacher.state_dict(),
            "queue": self.queue.state_dict(),
            "optimizer": self._optimizer.state_dict(),
            "scheduler": self._scheduler.state_dict(),
            "scaler": self._scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "mixup": self._gen.get_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "step": self.step,
            "epoch": self.epoch,
            "history": self.history.to_dict(),
        }
        _atomic_torch_save(state, path)
        logger.info("checkpoint: %s (epoch %d, step %d)", path, self.epoch, self.step)

    def _load_checkpoint(self, path: Path) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise C2LCheckpointError(f"cannot read the C2L checkpoint {path}: {e}") from e
        if not isinstance(state, dict) or state.get("version") != _CHECKPOINT_VERSION:
            raise C2LCheckpointError(f"{path} is not a C2L training checkpoint (version 1).")
        ours, theirs = self.config(), state["config"]
        diff = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v}
        if diff:
            raise C2LCheckpointError(
                f"{path} was written with other settings (checkpoint, now): {diff}"
            )
        try:
            self.student.load_state_dict(state["student"])
            self.teacher.load_state_dict(state["teacher"])
            self.queue.load_state_dict(state["queue"])
            self._optimizer.load_state_dict(state["optimizer"])
            self._scheduler.load_state_dict(state["scheduler"])
            self._scaler.load_state_dict(state["scaler"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise C2LCheckpointError(f"{path} does not fit this model: {e}") from e
        torch.set_rng_state(state["rng"]["torch"])
        self._gen.set_state(state["rng"]["mixup"])
        if torch.cuda.is_available() and state["rng"]["cuda"]:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.history = C2LHistory.from_dict(state["history"])

    # ------------------------------------------------------------ export

    def save_pretrained(self, path: str | Path) -> Path:
        """Write ``model.safetensors`` (the student backbone's state dict, loadable with
        ``load_state_dict`` into the same model) and ``config.json`` to the folder ``path``."""
        from safetensors.torch import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.backbone.state_dict().items()}
        seen: dict[int, str] = {}
        for k, v in list(state.items()):  # safetensors refuses shared storage
            if v.untyped_storage().data_ptr() in seen and v.numel():
                state[k] = v.clone()
            seen[v.untyped_storage().data_ptr()] = k
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt", "method": "c2l"})
        mean, std = default_normalization(self.in_chans)
        cfg = {
            **self.config(),
            "steps": self.step,
            "epochs": self.epoch,
            "final_loss": self.history.loss[-1] if self.history.steps else None,
            "normalization": {"mean": list(mean), "std": list(std)},
        }
        _atomic_write_text(json.dumps(cfg, indent=2) + "\n", out / "config.json")
        logger.info("saved the C2L backbone to %s", out)
        return out


def _adapt_in_chans(state: dict[str, Tensor], model: nn.Module, file: Path) -> None:
    """Fit a stem convolution saved for 1 (or C) input channels to a model with C (or 1).

    1 -> C repeats the kernel over the channels and divides by C, so a grayscale image copied
    into C channels gives the same response; C -> 1 sums over the channels (as timm does for
    ``in_chans=1``). Only the input-channel dimension may differ, and only for one tensor.
    """
    own = model.state_dict()
    odd = [
        k
        for k, v in state.items()
        if k in own
        and v.ndim == 4
        and own[k].ndim == 4
        and v.shape[1] != own[k].shape[1]
        and v.shape[0] == own[k].shape[0]
        and v.shape[2:] == own[k].shape[2:]
    ]
    if len(odd) != 1:
        return
    key = odd[0]
    saved, want = state[key].shape[1], own[key].shape[1]
    if saved == 1:
        state[key] = state[key].repeat(1, want, 1, 1) / want
    elif want == 1:
        state[key] = state[key].sum(dim=1, keepdim=True)
    else:
        return
    logger.info("%s: %s adapted from %d to %d input channels", file, key, saved, want)


def load_backbone(
    model: nn.Module, path: str | Path, *, strict: bool = True, ignore_head: bool = True
) -> list[str]:
    """Load C2L weights written by :meth:`C2LPretrainer.save_pretrained` into ``model``.

    ``path``: the folder or its ``model.safetensors``. With ``strict``, every saved tensor must
    fit and every model tensor must be loaded, except (``ignore_head``) those of a classifier
    head the backbone did not have (``fc``/``classifier``/``head``...), left at their init.
    A backbone pretrained on 1-channel images loads into a 3-channel model (and back): the
    stem is adapted as timm adapts pretrained weights to ``in_chans``.
    Returns the names left unloaded.
    """
    from safetensors.torch import load_file

    p = Path(path)
    file = p / "model.safetensors" if p.is_dir() else p
    if not file.is_file():
        raise C2LCheckpointError(f"no C2L weights at {file}")
    try:
        state = load_file(str(file))
    except Exception as e:
        raise C2LCheckpointError(f"cannot read {file}: {e}") from e
    state = {k.removeprefix("module."): v for k, v in state.items()}
    _adapt_in_chans(state, model, file)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:
        raise C2LCheckpointError(f"{file} does not fit {type(model).__name__}: {e}") from e
    missing = list(result.missing_keys)
    if strict:
        head_missing = [k for k in missing if k.split(".")[0] in _HEAD_NAMES]
        other = [k for k in missing if k not in head_missing or not ignore_head]
        if result.unexpected_keys or other:
            raise C2LCheckpointError(
                f"{file} does not fit {type(model).__name__}: missing {other[:5]}, "
                f"unexpected {list(result.unexpected_keys)[:5]}"
            )
    return missing

"""C2LPretrainer: Comparing-to-Learn self-supervised pretraining for any feature backbone."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from hyperinit import distributed as hdist
from hyperinit.c2l.augment import default_augment, default_normalization
from hyperinit.c2l.backbone import (
    Encoder,
    TwoViewStudent,
    feature_width,
    first_conv_channels,
    strip_head,
)
from hyperinit.c2l.checkpointing import (
    CHECKPOINT_NAME,
    C2LHistory,
    load_training_state,
    save_training_state,
)
from hyperinit.c2l.data import as_dataset
from hyperinit.c2l.export import C2LBackbone, load_backbone
from hyperinit.c2l.loop import run_epoch, setup
from hyperinit.c2l.loss import batch_mixup, c2l_loss
from hyperinit.c2l.queue import FeatureQueue, suggested_queue_size
from hyperinit.c2l.teacher import copy_student, momentum_update, sync_buffers, teacher_features
from hyperinit.errors import C2LCheckpointError, C2LConfigError

__all__ = [
    "C2LHistory",
    "C2LPretrainer",
    "load_backbone",
    "strip_head",
]

logger = logging.getLogger(__name__)


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
        in_chans = in_chans or first_conv_channels(backbone) or 3
        self.feature_width = feature_width(backbone, in_chans, image_size)
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
        self.student = Encoder(backbone, nn.Linear(self.feature_width, feature_dim))
        self.teacher = copy.deepcopy(self.student).requires_grad_(False)
        self.queue = FeatureQueue(self.queue_size, feature_dim)
        self.history = C2LHistory()
        self.step = 0
        self.epoch = 0

    @property
    def backbone(self) -> nn.Module:
        """The student backbone (the pretrained model)."""
        return self.student.backbone

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

    # ------------------------------------------------------------ algorithm

    def _make_augment(self) -> Callable[[Any], Tensor]:
        return self.augment or default_augment(self.image_size, self.in_chans)

    def _momentum_update(self) -> None:
        """teacher = m * teacher + (1 - m) * student for parameters; buffers copied."""
        momentum_update(self.teacher, self.student, self.momentum)

    def _teacher_features(self, x: Tensor) -> Tensor:
        return teacher_features(self.teacher, x, self.bn_mode)

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
        sync_buffers(self.student)
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
        dataset = None if user_loader is not None else as_dataset(data, self.in_chans)
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
                load_training_state(self, path)
                resumed = True
                logger.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.step)
            elif resume is not True:
                raise C2LCheckpointError(f"no checkpoint at {path}")
        if not resumed:
            self.step, self.epoch, self.history = 0, 0, C2LHistory()
            # identical start on every rank: rank 0's student, queue; teacher = student
            for t in [*self.student.state_dict().values(), *self.queue.state_dict().values()]:
                hdist.broadcast(t, 0)
            copy_student(self.teacher, self.student)
        if ckpt_dir and main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)

        if info.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self._device.index] if self._device.type == "cuda" else None
            self._student_call = DDP(TwoViewStudent(self.student), device_ids=ids)
        try:
            for epoch in range(self.epoch, epochs):
                self.epoch = epoch
                run_epoch(
                    self, epoch, epochs, dataset, user_loader, batch_size, num_workers, seed,
                    steps_per_epoch, log_every, progress and main, ckpt_dir if main else None,
                )  # fmt: skip
                self.epoch = epoch + 1
                if ckpt_dir is not None:
                    if main:
                        save_training_state(self, ckpt_dir / CHECKPOINT_NAME)
                    hdist.barrier()
                if on_epoch_end is not None:
                    on_epoch_end(self, epoch)
        finally:
            self._student_call = None  # drop the DDP wrapper
        self.student.eval()
        return self.history

    def _setup(self, **kwargs: Any) -> None:
        """Move to the device and build optimizer, schedule, scaler and the mixup generator
        (see :func:`hyperinit.c2l.loop.setup`)."""
        setup(self, **kwargs)

    # ------------------------------------------------------------ export

    def save_pretrained(
        self, path: str | Path, *, model_spec: str | None = None, **kwargs: Any
    ) -> Path:
        """Write ``model.safetensors`` (the student backbone's state dict, loadable with
        ``load_state_dict`` into the same model), ``config.json`` and a model card to the
        folder ``path`` (a :class:`~hyperinit.c2l.C2LBackbone`; ``kwargs`` go to its
        ``save_pretrained``, e.g. ``push_to_hub=True, repo_id=...``). ``model_spec``
        (``timm:resnet18``...) is recorded as ``"model"``, so the backbone can be rebuilt."""
        mean, std = default_normalization(self.in_chans)
        cfg = {
            **({"model": model_spec} if model_spec else {}),
            **self.config(),
            "steps": self.step,
            "epochs": self.epoch,
            "final_loss": self.history.loss[-1] if self.history.steps else None,
            "normalization": {"mean": list(mean), "std": list(std)},
        }
        out = C2LBackbone(self.backbone, cfg).save_pretrained(path, **kwargs)
        logger.info("saved the C2L backbone to %s", out)
        return out

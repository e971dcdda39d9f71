"""The training loop of :class:`~hyperinit.localize.AttentionMiner`: the classifier phase, the
mining phase (eqs. 1-3 at every step, KP of eqs. 4-6), checkpoints that resume exactly, DDP."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from hyperinit.errors import LocalizationError
from hyperinit.localize.kp import frozen_copy
from hyperinit.localize.mining import mine

if TYPE_CHECKING:
    from hyperinit.localize.miner import AttentionMiner, MinerNet

__all__ = ["MinerTraining"]

logger = logging.getLogger("hyperinit.localize.miner")


class MinerTraining:
    """``fit`` and its helpers; :class:`AttentionMiner` holds the network and the settings."""

    net: MinerNet
    frozen: nn.Module | None
    num_classes: int
    mining_steps: int
    kp: str | None
    kp_weight: float
    am_fraction: float
    threshold: float
    in_chans: int
    image_size: int
    class_names: list[str] | None
    epoch: int
    step: int
    history: dict[str, list[dict[str, float]]]
    device: torch.device

    # ------------------------------------------------------------------ training

    def fit(
        self,
        data: Any,
        *,
        epochs: int = 10,
        batch_size: int = 16,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        mining_start: int | None = None,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        seed: int = 0,
        num_workers: int = 0,
        device: str | torch.device | None = None,
        max_steps_per_epoch: int | None = None,
        progress: bool = True,
        on_epoch_end: Callable[[AttentionMiner, int], None] | None = None,
    ) -> dict[str, list[dict[str, float]]]:
        """Train the classifier, then fine-tune it with attention mining (and KP).

        Epochs ``[0, mining_start)`` train the plain multi-label classifier (the CAM baseline);
        at ``mining_start`` the network is copied and frozen (N_A) and the remaining epochs
        mine. Default ``mining_start``: ``epochs // 2``, or ``epochs`` with ``mining_steps=1``;
        pass 0 to mine from the first epoch (e.g. after loading a trained classifier).

        AdamW with a cosine schedule over all steps. With ``checkpoint_dir``, the full state is
        written to ``last.safetensors`` after every epoch and ``resume=True`` continues from it,
        with the same result as an uninterrupted run. Under ``torchrun`` each process takes a
        shard of every epoch (DDP; gloo on CPU) and only rank 0 writes.

        Raises:
            LocalizationError: images of the wrong channel count, labels that do not fit
                ``num_classes``, a class without positives, or a checkpoint of other
                settings; all are checked before anything is written.
        """
        from hyperinit import distributed as hdist

        dataset = self._as_dataset(data)
        found = getattr(dataset, "classes", None)
        if self.class_names is None and found is not None and len(found) == self.num_classes:
            self.class_names = list(found)
        self._check_dataset(dataset)
        if epochs < 1 or batch_size < 1:
            raise LocalizationError(
                f"epochs and batch_size must be >= 1; got {epochs}, {batch_size}"
            )
        if mining_start is None:
            mining_start = epochs if self.mining_steps == 1 else epochs // 2
        mining_start = max(0, min(int(mining_start), epochs))
        info = hdist.init_distributed(device=device)
        self.device = info.device
        main = info.is_main
        per_rank = len(dataset) // info.world_size
        steps_per_epoch = max(1, per_rank // batch_size if per_rank >= batch_size else 1)
        if max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, int(max_steps_per_epoch))
        run = {
            "epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr),
            "weight_decay": float(weight_decay), "mining_start": mining_start, "seed": int(seed),
            "world_size": info.world_size, "steps_per_epoch": steps_per_epoch,
        }  # fmt: skip
        self.net.to(self.device)
        params = [p for p in self.net.parameters() if p.requires_grad]
        self._optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        ckpt_dir = Path(checkpoint_dir) if checkpoint_dir else None
        path = ckpt_dir / "last.safetensors" if ckpt_dir else None
        if resume and path is None:
            raise LocalizationError("resume=True needs checkpoint_dir.")
        if resume and path is not None and path.is_file():
            self._load_checkpoint(path, run)
            logger.info("resumed from %s at epoch %d, step %d", path, self.epoch, self.step)
        else:
            self.epoch, self.step, self.frozen = 0, 0, None
            self.history = {"steps": [], "epochs": []}
            for t in self.net.state_dict().values():  # identical start on every rank
                hdist.broadcast(t, 0)
        if ckpt_dir is not None and main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
        self._call: nn.Module = self.net
        if info.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            # timm heads keep modules forward_features does not run (conv_head, ...)
            self._call = DDP(self.net, device_ids=ids, find_unused_parameters=self._has_unused())
        total = epochs * steps_per_epoch
        try:
            for epoch in range(self.epoch, epochs):
                if epoch >= mining_start and self.frozen is None and self._mines():
                    self.frozen = frozen_copy(self.net).to(self.device)
                self._run_epoch(
                    dataset, epoch, epochs, batch_size, num_workers, seed, steps_per_epoch,
                    total, lr, epoch >= mining_start, progress and main,
                )  # fmt: skip
                self.epoch = epoch + 1
                self._sync_buffers()
                if path is not None:
                    if main:
                        self._save_checkpoint(path, run)
                    hdist.barrier()
                if on_epoch_end is not None:
                    on_epoch_end(self, epoch)
        finally:
            self._call = self.net
        self.net.eval()
        return self.history

    def _has_unused(self) -> bool:
        """True if some trainable parameter gets no gradient from the network's outputs."""
        params = [p for p in self.net.parameters() if p.requires_grad]
        was = self.net.training
        x = torch.zeros(2, self.in_chans, self.image_size, self.image_size, device=self.device)
        try:
            _, cams, logits, layers = self.net.eval()(x)
            total = cams.sum() + logits.sum() + sum(t.sum() for t in layers)
            grads = torch.autograd.grad(total, params, allow_unused=True)
        finally:
            self.net.train(was)
        return any(g is None for g in grads)

    @torch.no_grad()
    def _sync_buffers(self) -> None:
        """Average float buffers (BN statistics) over ranks, so every rank holds rank 0's
        checkpoint state."""
        from hyperinit import distributed as hdist

        if hdist.is_distributed():
            for b in self.net.buffers():
                if b.is_floating_point():
                    b.copy_(hdist.all_reduce_mean(b))

    def _mines(self) -> bool:
        return self.mining_steps > 1

    def _batches(
        self, ds: Dataset, batch_size: int, workers: int, seed: int, epoch: int
    ) -> Iterable[Any]:
        from hyperinit.c2l.data import seeded_loader

        return seeded_loader(
            ds,
            batch_size,
            num_workers=workers,
            seed=seed,
            epoch=epoch,
            drop_last=len(ds) >= 2 * batch_size,
        )

    def _loss(self, x: Tensor, y: Tensor, mining: bool) -> tuple[Tensor, dict[str, float]]:
        fmap, cams, logits, layers = self._call(x)
        n_all = x.shape[0]
        if not mining or not self._mines():
            loss = F.binary_cross_entropy_with_logits(logits, y)
            return loss, {"cls": float(loss.detach()), "kp": 0.0}
        n_am = n_all if self.kp is None else max(1, round(self.am_fraction * n_all))
        _, masks = mine(fmap[:n_am].detach(), self.net.classifier.weight.detach(),
                        self.mining_steps - 1, self.threshold)  # fmt: skip
        # eqs. 1-3 at every mining step t = 1..T (mask M_{t-1}); logits of an erased map
        am_terms = []
        for m in masks:
            erased = logits[:n_am] - (cams[:n_am] * (1 - m)).mean(dim=(2, 3))
            am_terms.append(F.binary_cross_entropy_with_logits(erased, y[:n_am]))
        cls_am = torch.stack(am_terms).mean()
        if n_am < n_all:
            cls_rest = F.binary_cross_entropy_with_logits(logits[n_am:], y[n_am:])
            cls = (n_am * cls_am + (n_all - n_am) * cls_rest) / n_all
        else:
            cls = cls_am
        kp = torch.zeros((), device=x.device)
        if self.kp == "features" and n_am < n_all and self.frozen is not None:
            from hyperinit.localize.kp import kp_loss

            with torch.no_grad():
                layers_a = self.frozen(x)[3]  # the whole batch: same BN statistics as N_B
            kp = kp_loss([a[n_am:] for a in layers_a], [b[n_am:] for b in layers])
        return cls + self.kp_weight * kp, {"cls": float(cls.detach()), "kp": float(kp.detach())}

    def _run_epoch(
        self, ds: Dataset, epoch: int, epochs: int, batch_size: int, workers: int, seed: int,
        steps: int, total: int, lr: float, mining: bool, show: bool,
    ) -> None:  # fmt: skip
        from tqdm.auto import tqdm

        from hyperinit import distributed as hdist

        rank = hdist.get_rank()
        torch.manual_seed(seed * 1_000_003 + epoch * 7_919 + rank)
        self.net.train()
        if self.frozen is not None:
            self.frozen.train()
        rows: list[dict[str, float]] = []
        phase = "mining" if mining and self._mines() else "classifier"
        bar = tqdm(total=steps, desc=f"{phase} epoch {epoch + 1}/{epochs}", disable=not show)
        for i, (x, y) in enumerate(self._batches(ds, batch_size, workers, seed, epoch)):
            if i >= steps:
                break
            rate = lr * 0.5 * (1 + math.cos(math.pi * self.step / max(total, 1)))
            for g in self._optimizer.param_groups:
                g["lr"] = rate
            x, y = x.to(self.device), y.to(self.device).float()
            loss, parts = self._loss(x, y, mining)
            if not torch.isfinite(loss):
                raise LocalizationError(
                    f"the loss became {float(loss)} at step {self.step}: lower lr (now {lr})."
                )
            self._optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._optimizer.step()
            self.step += 1
            vals = hdist.all_reduce_mean(
                torch.tensor([float(loss.detach()), parts["cls"], parts["kp"]])
            )
            row = {"loss": float(vals[0]), "cls": float(vals[1]), "kp": float(vals[2]),
                   "lr": rate}  # fmt: skip
            rows.append(row)
            self.history["steps"].append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}")
        bar.close()
        if not rows:
            raise LocalizationError("the data gave no batch in this epoch.")
        summary = {
            "epoch": epoch + 1,
            "loss": sum(r["loss"] for r in rows) / len(rows),
            "kp": sum(r["kp"] for r in rows) / len(rows),
            "mining": float(phase == "mining"),
        }
        self.history["epochs"].append(summary)
        if rank == 0:
            logger.info("epoch %d (%s): loss %.4f", epoch + 1, phase, summary["loss"])

    # ------------------------------------------------------------------ checkpoints

    def _save_checkpoint(self, path: Path, run: dict[str, Any]) -> None:
        from hyperinit.localize.checkpoint import optimizer_to_flat, save_state

        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        if self.frozen is not None:
            tensors.update({f"frozen.{k}": v for k, v in self.frozen.state_dict().items()})
        opt_t, opt_meta = optimizer_to_flat(self._optimizer)
        tensors.update(opt_t)
        tensors["rng.torch"] = torch.get_rng_state()
        meta = {
            "version": 1, "config": self.config(), "run": run, "epoch": self.epoch,
            "step": self.step, "history": self.history, "optimizer": opt_meta,
            "frozen": self.frozen is not None,
        }  # fmt: skip
        save_state(path, tensors, meta)
        logger.info("checkpoint: %s (epoch %d, step %d)", path, self.epoch, self.step)

    def _load_checkpoint(self, path: Path, run: dict[str, Any]) -> None:
        from hyperinit.localize.checkpoint import load_state, optimizer_from_flat

        tensors, meta = load_state(path)
        if meta.get("version") != 1:
            raise LocalizationError(f"{path} is not an AttentionMiner checkpoint (version 1).")
        ours = {**self.config(), **run}
        theirs = {**meta["config"], **meta["run"]}
        theirs["class_names"] = (
            ours["class_names"] if theirs.get("class_names") is None else (theirs["class_names"])
        )
        diff = {k: (theirs.get(k), v) for k, v in ours.items() if theirs.get(k) != v}
        if diff:
            raise LocalizationError(
                f"{path} was written with other settings (checkpoint, now): {diff}. Use the "
                "same settings to resume, or another checkpoint_dir to start afresh."
            )
        net = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        try:
            self.net.load_state_dict(net)
            if meta["frozen"]:
                self.frozen = frozen_copy(self.net)
                frozen = {k[7:]: v for k, v in tensors.items() if k.startswith("frozen.")}
                self.frozen.load_state_dict(frozen)
                self.frozen.to(self.device)
            else:
                self.frozen = None
            optimizer_from_flat(self._optimizer, tensors, meta["optimizer"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise LocalizationError(f"{path} does not fit this model: {e}") from e
        self.net.to(self.device)
        torch.set_rng_state(tensors["rng.torch"])
        self.epoch, self.step = int(meta["epoch"]), int(meta["step"])
        self.history = meta["history"]

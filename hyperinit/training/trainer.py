"""HyperTrainer: the training loop of the hypernetwork, the seed's bi-level self-supervised
problem (section 2, eq. 3).

Each step draws a batch of unlabelled images and a meta-batch of architectures from
:mod:`hyperinit.archspace` (:mod:`hyperinit.training.archs`); the hypernetwork predicts every
architecture's parameters, each predicted network runs functionally on the self-supervised task
(:mod:`hyperinit.training.step`, :mod:`hyperinit.training.objectives`) and the loss
back-propagates into the hypernetwork and the task head. Everything random is a function of
``(seed, rank, step)``, so a run resumed from a checkpoint (:mod:`hyperinit.training.checkpoint`)
continues exactly as if it had never stopped. Under ``torchrun`` the step runs as
DistributedDataParallel (NCCL on GPU, Gloo on CPU), each rank with its own architectures and
images.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from hyperinit.archspace import training_spec
from hyperinit.distributed import cleanup_distributed, init_distributed
from hyperinit.errors import TrainingError
from hyperinit.hypernet.model import HyperInitializer
from hyperinit.training.archs import ArchCache, TrainedArch, seed_of
from hyperinit.training.checkpoint import (
    LOG_NAME,
    STATE_NAME,
    Stateful,
    load_state,
    save_state,
    truncate_log,
    write_log,
)
from hyperinit.training.config import TrainConfig
from hyperinit.training.data import ImageBank, normalize, to_channels
from hyperinit.training.objectives import create_objective
from hyperinit.training.start import starting_hypernet
from hyperinit.training.step import MetaStep

__all__ = ["HyperTrainer", "train"]

log = logging.getLogger(__name__)


class HyperTrainer:
    """Runs (or resumes) a training run described by a :class:`TrainConfig`.

    Args:
        config: the run.
        bank: images to train on (default: decoded from ``config.data`` / the modality's
            bundled training images).
    """

    def __init__(self, config: TrainConfig, bank: ImageBank | None = None):
        self.config = config
        self.dist = init_distributed(device=config.device)
        self.device = self.dist.device
        self.rank, self.world = self.dist.rank, self.dist.world_size
        self._check_inner()
        self.out = Path(config.out)
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        self.bank = (
            bank
            if bank is not None
            else ImageBank(self._files(), config.load_size, progress=self.rank == 0)
        )
        self.hypernet = starting_hypernet(config)
        self.hypernet.to(self.device).train()
        torch.manual_seed(seed_of(config.seed, 17) % (1 << 31))
        self.objective = create_objective(
            config.objective, config.feature_dim, options=config.objective_options
        ).to(self.device)
        self.step_module = MetaStep(
            self.hypernet, self.objective, config.inner_steps, config.inner_lr
        )
        self.model: nn.Module = self.step_module
        if self.world > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.step_module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        params = [p for p in self.step_module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.cache = ArchCache(config.feature_dim)
        self.step = 0
        self.elapsed = 0.0
        self.history: list[dict[str, Any]] = []

    def _check_inner(self) -> None:
        cfg = self.config
        if not isinstance(cfg.inner_steps, int) or cfg.inner_steps < 0:
            raise TrainingError(f"inner_steps must be an integer >= 0, got {cfg.inner_steps!r}")
        if not cfg.inner_lr > 0:
            raise TrainingError(f"inner_lr must be > 0, got {cfg.inner_lr!r}")
        per_slice = cfg.batch_size // (cfg.inner_steps + 1)
        if cfg.inner_steps and per_slice < 8:
            raise TrainingError(
                f"batch_size {cfg.batch_size} split into {cfg.inner_steps + 1} slices (one per "
                f"inner step, plus one) leaves {per_slice} images per slice; the objectives need "
                f"8. Use batch_size >= {8 * (cfg.inner_steps + 1)} or fewer inner_steps."
            )

    # -- data and architectures ----------------------------------------------------------------
    def _files(self) -> list[Path]:
        cfg = self.config
        if cfg.data:
            from hyperinit.data.io import find_images

            files = find_images(cfg.data)
        else:
            from hyperinit.data import pretraining_files

            files = pretraining_files(cfg.modality)
        if cfg.max_images is not None and len(files) > cfg.max_images:
            files = random.Random(cfg.seed).sample(list(files), cfg.max_images)
        if not files:
            raise TrainingError(f"no training images for modality {cfg.modality!r} ({cfg.data})")
        return list(files)

    def architectures(self, step: int) -> list[TrainedArch]:
        """The meta-batch of this rank at ``step`` (a pure function of seed, rank, step)."""
        cfg = self.config
        archs = []
        for j in range(cfg.meta_batch):
            draw = seed_of(cfg.seed, step, self.rank, j)
            while True:
                spec = training_spec(draw % (1 << 40))
                chans = random.Random(draw).choice(cfg.in_chans)
                if self.cache.num_params(spec, chans, cfg.image_size) <= cfg.max_params:
                    break
                draw = seed_of(draw, 1)
            archs.append(self.cache.get(spec, chans, draw, cfg.image_size))
        return archs

    def lr_at(self, step: int) -> float:
        """Linear warmup then cosine decay to 5 % over ``config.steps``."""
        cfg = self.config
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))

    # -- one step ---------------------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, Any]:
        """Run step ``step`` (0-based) and return its log row."""
        cfg = self.config
        t0 = time.perf_counter()
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(step)
        gen = torch.Generator().manual_seed(seed_of(cfg.seed, step, self.rank, 99))
        images = self.bank.batch(cfg.batch_size, cfg.image_size, gen, tuple(cfg.crop_scale))
        images = images.to(self.device)
        archs = self.architectures(step)
        self.optimizer.zero_grad(set_to_none=True)
        losses, scores, n_images, metrics = [], [], 0, {}
        amp = cfg.amp and self.device.type == "cuda"
        for j, arch in enumerate(archs):
            x = normalize(to_channels(images, arch.in_chans))
            sync = j == len(archs) - 1 or not isinstance(
                self.model, nn.parallel.DistributedDataParallel
            )
            ctx = contextlib.nullcontext() if sync else self.model.no_sync()
            with ctx:
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=amp):
                    loss, score, m, n = self.model(arch, x, gen)
                (loss / len(archs)).backward()
            losses.append(loss.item())
            scores.append(score.item())
            n_images += n
            for k, v in m.items():
                metrics[k] = metrics.get(k, 0.0) + v / len(archs)
        params = [p for p in self.step_module.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        self.optimizer.step()
        dt = time.perf_counter() - t0
        return {
            "step": step + 1,
            "loss": sum(losses) / len(losses),
            "score": sum(scores) / len(scores),
            "lr": self.lr_at(step),
            "grad_norm": float(grad_norm),
            "step_s": dt,
            "archs_per_s": len(archs) * self.world / dt,
            "images_per_s": n_images * self.world / dt,
            "families": "|".join(a.spec.family for a in archs),
            **metrics,
        }

    # -- checkpoints ------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.out / STATE_NAME

    def _parts(self) -> dict[str, Stateful]:
        return {"hypernet": self.hypernet, "objective": self.objective, "optimizer": self.optimizer}

    def save_state(self) -> None:
        """Write the exact training state (rank 0; atomic replace)."""
        if self.rank == 0:
            save_state(self.state_path, self.step, self.elapsed, self.config, self._parts())

    def save_snapshot(self) -> Path:
        """Export the hypernetwork as it is now to ``out/snapshots/step_<k>/`` (rank 0)."""
        path = self.out / "snapshots" / f"step_{self.step:05d}"
        if self.rank == 0:
            self.hypernet.config.modality = self.config.modality
            self.hypernet.config.training = {**self.training_summary(), "finished": False}
            self.hypernet.save_pretrained(path)
        return path

    def load_state(self) -> bool:
        """Resume from ``out/train_state.pt`` if it exists; returns whether it did."""
        loaded = load_state(self.state_path, self.config, self._parts(), self.device)
        if loaded is None:
            return False
        self.step, self.elapsed = loaded
        log.info("resumed %s at step %d", self.out, self.step)
        return True

    def _write_log(self, rows: list[dict[str, Any]], append: bool) -> None:
        if self.rank == 0:
            write_log(self.out / LOG_NAME, rows, append)

    def _truncate_log(self) -> None:
        path = self.out / LOG_NAME
        if self.rank != 0 or not path.exists():
            return
        self.history = truncate_log(path, self.step)

    # -- the run ----------------------------------------------------------------------------------
    def fit(self, resume: bool = True, stop_after: int | None = None) -> HyperInitializer:
        """Train up to ``config.steps`` (resuming if a checkpoint exists) and return the
        hypernetwork. Saves the state every ``checkpoint_every`` steps and at the end;
        ``stop_after`` pauses (with a checkpoint) after that step, as a time limit does."""
        cfg = self.config
        if resume and self.load_state():
            self._truncate_log()
        start_time = time.perf_counter() - self.elapsed
        pending: list[dict[str, Any]] = []
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc=f"train {cfg.modality}",
            unit="step",
            disable=self.rank != 0,
            mininterval=2.0,
        )
        stopped = False
        while self.step < cfg.steps:
            row = self.train_step(self.step)
            self.step += 1
            self.elapsed = time.perf_counter() - start_time
            row["elapsed_s"] = self.elapsed
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                pending.append(row)
                self.history.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", score=f"{row['score']:.2f}")
            over = (cfg.time_limit_s is not None and self.elapsed >= cfg.time_limit_s) or (
                stop_after is not None and self.step >= stop_after and self.step < cfg.steps
            )
            if cfg.snapshot_every and self.step % cfg.snapshot_every == 0:
                self.save_snapshot()
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps or over:
                self._write_log(pending, append=True)  # log first: resume truncates it
                pending = []
                self.save_state()
            if over:
                log.info("paused at step %d (time limit); resume to continue", self.step)
                stopped = True
                break
        bar.close()
        if not stopped:
            self.hypernet.config.modality = cfg.modality
            self.hypernet.config.training = self.training_summary()
        return self.hypernet.eval()

    def training_summary(self) -> dict[str, Any]:
        """What the model card and config.json record about this run."""
        cfg = self.config
        rows = [r for r in self.history if "step_s" in r]
        step_s = sorted(float(r["step_s"]) for r in rows)
        median = step_s[len(step_s) // 2] if step_s else float("nan")
        return {
            "objective": cfg.objective,
            **({"objective_options": cfg.objective_options} if cfg.objective_options else {}),
            "steps": self.step,
            "meta_batch": cfg.meta_batch,
            "batch_size": cfg.batch_size,
            "image_size": cfg.image_size,
            "processes": self.world,
            "device": str(self.device),
            "wall_time_s": round(self.elapsed, 1),
            "images": len(self.bank),
            "data": cfg.data or f"bundled {cfg.modality} training images",
            "seed": cfg.seed,
            "median_step_s": round(median, 4),
            "inner_steps": cfg.inner_steps,
            "inner_lr": cfg.inner_lr if cfg.inner_steps else None,
            "archs_per_s": round(cfg.meta_batch * self.world / median, 3) if step_s else None,
        }

    def close(self) -> None:
        cleanup_distributed()


def train(
    config: TrainConfig, export: str | Path | None = None, model_card: str | None = None
) -> HyperInitializer:
    """Run (or resume) ``config`` and, on rank 0, export the hypernetwork to ``export``
    (default ``config.out/hypernet``) with ``save_pretrained``."""
    trainer = HyperTrainer(config)
    try:
        hypernet = trainer.fit()
        if trainer.rank == 0 and trainer.step >= config.steps:
            path = Path(export) if export else Path(config.out) / "hypernet"
            hypernet.save_pretrained(path, model_card=model_card or hypernet.model_card())
            log.info("saved the trained hypernetwork to %s", path)
        if trainer.world > 1:
            rank_dir = Path(config.out) / "ranks"
            rank_dir.mkdir(parents=True, exist_ok=True)
            from safetensors.torch import save_file

            state = {k: v.detach().cpu().contiguous() for k, v in hypernet.state_dict().items()}
            save_file(state, str(rank_dir / f"rank{trainer.rank}.safetensors"))
        return hypernet
    finally:
        trainer.close()

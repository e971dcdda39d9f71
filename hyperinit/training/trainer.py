"""Training the hypernetwork: the seed's bi-level self-supervised problem (section 2, eq. 3).

Each step draws a batch of unlabelled images and a meta-batch of architectures from
:mod:`hyperinit.archspace`; the hypernetwork predicts every architecture's parameters, each
predicted network runs functionally (``torch.func.functional_call``) on the self-supervised task
(:mod:`hyperinit.training.objectives`) and the loss back-propagates into the hypernetwork and the
task head. Everything random is a function of ``(seed, rank, step)``, so a run resumed from a
checkpoint continues exactly as if it had never stopped. Under ``torchrun`` the step runs as
DistributedDataParallel (NCCL on GPU, Gloo on CPU), each rank with its own architectures and
images.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import random
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from hyperinit.archspace import ArchSpec, Backbone, build, training_spec
from hyperinit.distributed import cleanup_distributed, init_distributed
from hyperinit.errors import TrainingError
from hyperinit.graph.archgraph import ArchGraph
from hyperinit.graph.trace import trace
from hyperinit.hypernet.model import HyperInitializer
from hyperinit.hypernet.roles import ParamRole, assign_roles
from hyperinit.training.data import ImageBank, normalize, to_channels
from hyperinit.training.objectives import Objective, ObjectiveOutput, create_objective

__all__ = ["HyperTrainer", "TrainConfig", "TrainedArch", "TrainingError", "train"]

log = logging.getLogger(__name__)

STATE_NAME = "train_state.pt"
LOG_NAME = "log.csv"


@dataclass
class TrainConfig:
    """Everything that defines a training run (stored in its checkpoint and model card).

    Attributes:
        modality: the modality the checkpoint is for (registry name).
        data: a folder of unlabelled images; None uses the bundled training images of
            ``modality`` (:func:`hyperinit.data.pretraining_files`, never test images).
        objective: registered objective name, or a sum such as ``"rotation+c2l"``.
        steps: optimisation steps; the cosine schedule spans them.
        meta_batch: architectures per step (per process).
        batch_size, image_size: images per step and their side in px (random resized crops
            of ``crop_scale`` of the area, from images decoded at ``load_size``).
        in_chans: input channel counts the architectures are drawn with.
        max_params: architectures with more parameters are redrawn (keeps steps cheap).
        checkpoint_every: steps between checkpoints (always one at the end).
        time_limit_s: stop (with a checkpoint) after this much wall time; resume continues.
        init: hypernetwork checkpoint to start from (None: the reference initialisation).
        structured_fraction: start with this share of each predicted weight's variance in the
            learned (structured) part instead of the checkpoint's; the rest is seeded noise.
        max_structured_share: train (and save) the hypernetwork with this cap on the
            structured share (``HyperInitConfig.max_structured_share``); None keeps the
            checkpoint's. Start with ``structured_fraction`` at or below the cap: a share held
            at the cap gets no gradient.
        inner_steps: the bi-level objective (the seed's eq. 3 with eq. 1 as the inner
            problem): take this many differentiable SGD steps of the objective from the
            predicted weights, each on its own slice of the batch, and train the hypernetwork
            on the mean of the loss before and after them. 0: the loss of the predicted
            weights alone. The inner steps make the hypernetwork see how its weights fine-tune
            (for normalised layers, their scale sets the effective learning rate).
        inner_lr: learning rate of the inner SGD steps (plain SGD; about ``lr / (1 -
            momentum)`` of the fine-tuning the checkpoint is for).
        scale_range: let the hypernetwork predict each weight's scale within ``[1/r, r]``
            of its role's fan-in scale (``HyperInitConfig.scale_range``; added to a checkpoint
            that lacks it, starting at 1). None keeps the checkpoint's setting.
    """

    modality: str = "xray"
    data: str | None = None
    objective: str = "rotation"
    steps: int = 500
    meta_batch: int = 2
    batch_size: int = 32
    image_size: int = 48
    load_size: int = 80
    crop_scale: tuple[float, float] = (0.35, 1.0)
    in_chans: tuple[int, ...] = (1, 3)
    max_params: int = 3_000_000
    feature_dim: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 20
    clip: float = 5.0
    checkpoint_every: int = 50
    log_every: int = 10
    seed: int = 0
    out: str = "runs/hyperinit"
    amp: bool = True
    device: str | None = None
    time_limit_s: float | None = None
    init: str | None = None
    structured_fraction: float | None = None
    max_structured_share: float | None = None
    inner_steps: int = 0
    inner_lr: float = 0.1
    scale_range: float | None = None
    max_images: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainedArch:
    """A built architecture with its cached graph and parameter roles."""

    spec: ArchSpec
    in_chans: int
    module: Backbone
    graph: ArchGraph
    roles: list[ParamRole]
    draw: int
    num_params: int = field(default=0)


def _seed_of(*parts: int) -> int:
    """A 62-bit seed mixed from integers (stable across runs and machines)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFF)) * 1099511628211) % (1 << 62)
    return h


class ArchCache:
    """Built architectures, graphs and roles, least recently used first out."""

    def __init__(self, feature_dim: int, size: int = 128):
        self.feature_dim, self.size = feature_dim, size
        self._items: OrderedDict[tuple[str, int], TrainedArch] = OrderedDict()
        self._num_params: dict[tuple[str, int], int] = {}

    def get(self, spec: ArchSpec, in_chans: int, draw: int, image_size: int) -> TrainedArch:
        key = (spec.key, in_chans)
        if key in self._items:
            self._items.move_to_end(key)
            item = self._items[key]
            return dataclasses.replace(item, draw=draw)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed_of(int(spec.key, 16), in_chans) % (1 << 31))
            module = build(spec, in_chans, self.feature_dim)
        module.requires_grad_(False)
        module.train()
        graph = trace(module, torch.zeros(2, in_chans, image_size, image_size))
        item = TrainedArch(
            spec,
            in_chans,
            module,
            graph,
            assign_roles(graph),
            draw,
            sum(p.numel() for p in module.parameters()),
        )
        self._items[key] = item
        self._num_params[key] = item.num_params
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return item

    def num_params(self, spec: ArchSpec, in_chans: int, image_size: int) -> int:
        key = (spec.key, in_chans)
        if key not in self._num_params:
            self.get(spec, in_chans, 0, image_size)
        return self._num_params[key]


def _bind(arch: TrainedArch, params: dict[str, Tensor]) -> Any:
    """``net(x) -> features``: ``arch`` run with ``params`` (the rest: its own tensors)."""

    def net(x: Tensor) -> Tensor:
        return functional_call(arch.module, params, (x,), strict=False)

    return net


def _move_to(arch: TrainedArch, device: torch.device) -> None:
    if next(arch.module.parameters()).device != device:
        arch.module.to(device)


def predicted_network(hypernet: HyperInitializer, arch: TrainedArch, seed: int) -> Any:
    """``net(x) -> features`` running ``arch`` with parameters predicted by ``hypernet``."""
    _move_to(arch, hypernet.device)
    return _bind(arch, hypernet.predict_params(arch.graph, roles=arch.roles, seed=seed))


def _hardsigmoid(x: Tensor, inplace: bool = False) -> Tensor:
    """``F.hardsigmoid`` by its definition, relu6(x + 3) / 6 (which has a double backward)."""
    return F.relu6(x + 3) / 6


@contextlib.contextmanager
def _twice_differentiable() -> Iterator[None]:
    """Run ops that lack a double backward (fused attention, hardsigmoid) by equivalent ones
    that have one, for the unrolled inner steps."""
    original = F.hardsigmoid
    F.hardsigmoid = _hardsigmoid
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        F.hardsigmoid = original


class _MetaStep(nn.Module):
    """Hypernetwork + objective: one architecture's loss (the module DDP wraps).

    With ``inner_steps`` the batch is cut into ``inner_steps + 1`` slices: the objective on the
    first scores the predicted weights, each further slice scores them after one more
    differentiable SGD step (on the previous slice's loss), and the loss is the mean of the
    first and the last; gradients flow through the steps into the hypernetwork.
    """

    def __init__(
        self,
        hypernet: HyperInitializer,
        objective: Objective,
        inner_steps: int = 0,
        inner_lr: float = 0.1,
    ):
        super().__init__()
        self.hypernet, self.objective = hypernet, objective
        self.inner_steps, self.inner_lr = inner_steps, inner_lr

    def forward(
        self, arch: TrainedArch, x: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, Tensor, dict[str, float], int]:
        _move_to(arch, self.hypernet.device)
        params = self.hypernet.predict_params(
            arch.graph, roles=arch.roles, seed=arch.draw % (1 << 31)
        )
        if not self.inner_steps:
            out: ObjectiveOutput = self.objective(_bind(arch, params), x, generator)
            return out.loss, out.score, out.metrics, out.images
        with _twice_differentiable():
            return self._unrolled(arch, params, x, generator)

    def _unrolled(
        self,
        arch: TrainedArch,
        params: dict[str, Tensor],
        x: Tensor,
        generator: torch.Generator,
    ) -> tuple[Tensor, Tensor, dict[str, float], int]:
        slices = x.tensor_split(self.inner_steps + 1)  # sizes differ by at most one
        first = out = self.objective(_bind(arch, params), slices[0], generator)
        images = first.images
        for part in slices[1:]:
            names = [n for n, t in params.items() if t.requires_grad]
            grads = torch.autograd.grad(
                out.loss, [params[n] for n in names], create_graph=True, allow_unused=True
            )
            params = dict(params)
            for n, g in zip(names, grads):
                if g is not None:
                    params[n] = params[n] - self.inner_lr * g
            out = self.objective(_bind(arch, params), part, generator)
            images += out.images
        metrics = dict(first.metrics)
        metrics["inner_loss"] = out.loss.item()
        metrics["inner_gain"] = first.loss.item() - out.loss.item()
        return (first.loss + out.loss) / 2, first.score, metrics, images


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
        if config.init:
            self.hypernet = HyperInitializer.from_pretrained(config.init)
        else:
            from hyperinit.hypernet.reference import make_reference

            self.hypernet = make_reference()
        if config.scale_range is not None:
            self._set_scale_range(config.scale_range)
        if config.structured_fraction is not None:
            self._set_structured_fraction(config.structured_fraction)
        if config.max_structured_share is not None:
            cfg = dataclasses.replace(
                self.hypernet.config, max_structured_share=config.max_structured_share
            )
            if problem := cfg.problem():
                raise TrainingError(problem)
            self.hypernet.config = cfg
        self.hypernet.to(self.device).train()
        torch.manual_seed(_seed_of(config.seed, 17) % (1 << 31))
        self.objective = create_objective(config.objective, config.feature_dim).to(self.device)
        self.step_module = _MetaStep(
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

    def _set_scale_range(self, scale_range: float) -> None:
        """Give the hypernetwork a learned per-weight scale (kept if it has one already)."""
        old = self.hypernet
        cfg = dataclasses.replace(old.config, scale_range=scale_range)
        if problem := cfg.problem():
            raise TrainingError(problem)
        new = HyperInitializer(cfg)
        missing, unexpected = new.load_state_dict(old.state_dict(), strict=False)
        if unexpected or any(not k.startswith("log_scale.") for k in missing):
            raise TrainingError(f"cannot add a scale head to {self.config.init}: {missing}")
        self.hypernet = new

    def _set_structured_fraction(self, fraction: float) -> None:
        if not 0 < fraction < 1:
            raise TrainingError(f"structured_fraction must be in (0, 1), got {fraction}")
        phi = math.acos(math.sqrt(fraction)) / (math.pi / 2)
        with torch.no_grad():
            self.hypernet.mix.weight.zero_()
            self.hypernet.mix.bias.fill_(math.log(phi / (1 - phi)))
        self.hypernet.config.structured_fraction = fraction

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
            draw = _seed_of(cfg.seed, step, self.rank, j)
            while True:
                spec = training_spec(draw % (1 << 40))
                chans = random.Random(draw).choice(cfg.in_chans)
                if self.cache.num_params(spec, chans, cfg.image_size) <= cfg.max_params:
                    break
                draw = _seed_of(draw, 1)
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
        gen = torch.Generator().manual_seed(_seed_of(cfg.seed, step, self.rank, 99))
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

    def save_state(self) -> None:
        """Write the exact training state (rank 0; atomic replace)."""
        if self.rank != 0:
            return
        state = {
            "step": self.step,
            "elapsed": self.elapsed,
            "config": json.dumps(self.config.to_dict()),
            "hypernet": self.hypernet.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }
        tmp = self.state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.state_path)

    def load_state(self) -> bool:
        """Resume from ``out/train_state.pt`` if it exists; returns whether it did."""
        if not self.state_path.is_file():
            return False
        state = torch.load(self.state_path, map_location=self.device, weights_only=True)
        saved = json.loads(state["config"])
        mine = self.config.to_dict()
        differ = [
            k
            for k in (
                "objective",
                "seed",
                "meta_batch",
                "batch_size",
                "image_size",
                "steps",
                "inner_steps",
                "inner_lr",
                "scale_range",
            )
            if json.dumps(saved.get(k)) != json.dumps(mine.get(k))
        ]
        if differ:
            raise TrainingError(
                f"{self.state_path} belongs to a run with other settings ({', '.join(differ)}); "
                "use another --out folder or the same settings to resume."
            )
        self.hypernet.load_state_dict(state["hypernet"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        log.info("resumed %s at step %d", self.out, self.step)
        return True

    def _write_log(self, rows: list[dict[str, Any]], append: bool) -> None:
        if self.rank != 0 or not rows:
            return
        path = self.out / LOG_NAME
        keys: list[str] = []
        for r in rows:
            keys += [k for k in r if k not in keys]
        new = not append or not path.exists()
        with open(path, "w" if new else "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerows(rows)

    def _truncate_log(self) -> None:
        path = self.out / LOG_NAME
        if self.rank != 0 or not path.exists():
            return
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= self.step]
        self.history = rows
        self._write_log(rows, append=False) if rows else path.unlink()

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

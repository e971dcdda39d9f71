"""``hyperinit train``: train (or resume) a hypernetwork, also under ``torchrun``."""

from __future__ import annotations

import argparse

import torch

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``hyperinit train`` on the CLI's subparsers."""
    p = sub.add_parser("train", help="train (or resume) a hypernetwork; works under torchrun")
    p.add_argument("--modality", default="xray", help="modality the checkpoint is for")
    p.add_argument("--data", default=None, help="folder of unlabelled images (default: bundled)")
    p.add_argument("--objective", default="rotation", help="rotation, c2l, rotation+c2l, ...")
    p.add_argument(
        "--teacher",
        default=None,
        help="C2L checkpoint folder (hyperinit c2l) for the distill objective",
    )
    p.add_argument(
        "--teacher-model", default=None, help="its architecture, if its config.json lacks it"
    )
    p.add_argument("--steps", type=int, default=500, help="optimisation steps")
    p.add_argument("--meta-batch", type=int, default=2, help="architectures per step")
    p.add_argument("--batch-size", type=int, default=32, help="images per step")
    p.add_argument("--image-size", type=int, default=48, help="training crop size in px")
    p.add_argument("--load-size", type=int, default=80, help="images are decoded at this px")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints")
    p.add_argument(
        "--snapshot-every",
        type=int,
        default=None,
        help="also export the hypernetwork every N steps (out/snapshots/step_N)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the run")
    p.add_argument("--out", default="runs/hyperinit", help="run folder (state, log.csv)")
    p.add_argument("--export", default=None, help="save the hypernetwork here (out/hypernet)")
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda if present)")
    p.add_argument("--time-limit", type=float, default=None, help="pause after this many s")
    p.add_argument("--max-images", type=int, default=None, help="use at most this many images")
    p.add_argument("--max-params", type=int, default=3_000_000, help="largest architecture")
    p.add_argument("--init", default=None, help="checkpoint to start from (default: reference)")
    p.add_argument(
        "--max-structured-share",
        type=float,
        default=None,
        help="cap each predicted weight's low-rank share of variance (0-1], kept in the checkpoint",
    )
    p.add_argument(
        "--inner-steps",
        type=int,
        default=0,
        help="bi-level training: differentiable SGD steps from the predicted weights (0: off)",
    )
    p.add_argument("--inner-lr", type=float, default=0.1, help="learning rate of the inner steps")
    p.add_argument(
        "--scale-range",
        type=float,
        default=None,
        help="also learn each weight's scale within [1/R, R] of its fan-in scale (kept in the "
        "checkpoint)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads per process")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``hyperinit train``; returns the exit status."""
    from hyperinit.training import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    options = {}
    if args.teacher:
        distill = {"teacher": args.teacher}
        if args.teacher_model:
            distill["teacher_model"] = args.teacher_model
        options["distill"] = distill
    config = TrainConfig(
        modality=args.modality,
        data=args.data,
        objective=args.objective,
        objective_options=options,
        steps=args.steps,
        meta_batch=args.meta_batch,
        batch_size=args.batch_size,
        image_size=args.image_size,
        load_size=args.load_size,
        lr=args.lr,
        checkpoint_every=args.checkpoint_every,
        snapshot_every=args.snapshot_every,
        seed=args.seed,
        out=args.out,
        device=args.device,
        time_limit_s=args.time_limit,
        max_images=args.max_images,
        max_params=args.max_params,
        init=args.init,
        max_structured_share=args.max_structured_share,
        inner_steps=args.inner_steps,
        inner_lr=args.inner_lr,
        scale_range=args.scale_range,
    )
    train(config, export=args.export)
    return 0

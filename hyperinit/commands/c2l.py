"""``hyperinit c2l``: C2L self-supervised pretraining of a backbone on a folder of images."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``hyperinit c2l`` on the CLI's subparsers."""
    p = sub.add_parser("c2l", help="C2L self-supervised pretraining on a folder of images")
    p.add_argument("--data", required=True, help="folder of unlabelled images (recursive)")
    p.add_argument("--model", required=True, help="timm:NAME or torchvision:NAME")
    p.add_argument("--in-chans", type=int, default=1, help="input channels (1 for grayscale)")
    p.add_argument("--image-size", type=int, default=224, help="training crop size in px")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=64, help="per process")
    p.add_argument("--lr", type=float, default=0.03)
    p.add_argument(
        "--queue-size",
        type=_queue_size,
        default="auto",
        help="queue length, or auto: the seed's share (~10%%) of an epoch's keys",
    )
    p.add_argument("--feature-dim", type=int, default=128)
    p.add_argument("--momentum", type=float, default=0.999, help="EMA factor of the teacher")
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--max-steps-per-epoch", type=int, default=None)
    p.add_argument("--num-workers", type=int, default=4, help="DataLoader workers")
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda if available)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    p.add_argument("--no-amp", action="store_true", help="no float16 autocast on GPU")
    p.add_argument("--out", required=True, help="folder for model.safetensors + config.json")
    p.set_defaults(func=run)
    return p


def _queue_size(text: str) -> int | str:
    """``--queue-size``: a positive int or ``auto``."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run ``hyperinit c2l``; returns the exit status."""
    from hyperinit.c2l import C2LPretrainer, strip_head
    from hyperinit.distributed import cleanup_distributed, is_main_process
    from hyperinit.models import create_model

    torch.manual_seed(args.seed)
    backbone = strip_head(create_model(args.model, in_chans=args.in_chans))
    trainer = C2LPretrainer(
        backbone,
        feature_dim=args.feature_dim,
        queue_size=args.queue_size,
        momentum=args.momentum,
        temperature=args.temperature,
        image_size=args.image_size,
        in_chans=args.in_chans,
    )
    out = Path(args.out)
    history = trainer.fit(
        args.data,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        max_steps_per_epoch=args.max_steps_per_epoch,
        num_workers=args.num_workers,
        checkpoint_dir=out / "checkpoints",
        resume=args.resume,
        seed=args.seed,
        device=args.device,
        amp=not args.no_amp,
    )
    if is_main_process():
        trainer.save_pretrained(out, model_spec=args.model)
        last = history.epochs[-1] if history.epochs else {}
        print(
            f"C2L: {trainer.step} steps, last epoch loss {last.get('loss', float('nan')):.4f}, "
            f"positive-pair accuracy {last.get('accuracy', float('nan')):.3f}"
        )
        print(f"  saved        : {out / 'model.safetensors'} (hyperinit.c2l.load_backbone)")
    cleanup_distributed()
    return 0

"""``hyperinit localize``: train (or load) an AttentionMiner, write boxes and overlays."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

import torch

from hyperinit.errors import LocalizationError

__all__ = ["add_localize_parser", "run_localize"]

logger = logging.getLogger(__name__)


def add_localize_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``localize`` subcommand on the CLI's subparsers."""
    p = sub.add_parser(
        "localize",
        help="weakly supervised localisation (attention mining): boxes and overlays",
        description="Train an AttentionMiner on image-level labels (or load one with "
        "--checkpoint), then write up to --per-class boxes per class and image to --out and "
        "heatmap overlays to --overlays. Works under torchrun (DDP).",
    )
    p.add_argument("--data", required=True, help="folder (images/ + Data_Entry*.csv) or CSV")
    p.add_argument("--model", default="timm:resnet50", help="timm:NAME or torchvision:NAME")
    p.add_argument("--in-chans", type=int, default=1)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--classes", default=None, help="comma-separated findings (default: the 8)")
    p.add_argument("--checkpoint", default=None, help="a saved miner folder: load, no training")
    p.add_argument("--save", default=None, help="folder for the trained miner (default: by --out)")
    p.add_argument("--out", required=True, help="boxes CSV to write")
    p.add_argument("--overlays", default=None, help="folder for overlay PNGs")
    p.add_argument("--max-overlays", type=int, default=50)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--mining-start", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--mining-steps", type=int, default=3)
    p.add_argument("--msa", choices=["bilinear", "deconv", "none"], default="bilinear")
    p.add_argument("--kp", choices=["features", "vanilla", "none"], default="features")
    p.add_argument("--per-class", type=int, default=3)
    p.add_argument("--checkpoint-dir", default=None, help="training checkpoints (resumable)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if one exists")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--num-workers", type=int, default=0)
    p.set_defaults(func=run_localize)
    return p


def _say(text: str) -> None:
    """The command's report on stdout (the library logs; the command tells its user)."""
    sys.stdout.write(text + "\n")


def _original_scale(path: Path, image_size: int) -> float:
    from PIL import Image

    with Image.open(path) as im:
        return max(im.size) / image_size


def run_localize(args: argparse.Namespace) -> int:
    """The ``localize`` command; returns the exit status."""
    from hyperinit.distributed import cleanup_distributed, is_main_process
    from hyperinit.localize.boxes import localization_scores
    from hyperinit.localize.data import BOX_FINDINGS, load_localization_data
    from hyperinit.localize.miner import AttentionMiner

    classes = [c.strip() for c in args.classes.split(",")] if args.classes else list(BOX_FINDINGS)
    out = Path(args.out)
    if args.checkpoint:
        miner = AttentionMiner.load(args.checkpoint)
        classes = miner.class_names or classes
        size, chans = miner.image_size, miner.in_chans
    else:
        size, chans = args.image_size, args.in_chans
    data = load_localization_data(args.data, image_size=size, in_chans=chans, classes=classes)
    if not args.checkpoint:
        torch.manual_seed(args.seed)
        miner = AttentionMiner(
            args.model, len(classes), msa=False if args.msa == "none" else args.msa,
            kp=None if args.kp == "none" else args.kp, mining_steps=args.mining_steps,
            class_names=classes, in_chans=chans, image_size=size,
        )  # fmt: skip
        ckpt = Path(args.checkpoint_dir) if args.checkpoint_dir else out.with_suffix("") / "ckpt"
        miner.fit(
            data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            mining_start=args.mining_start, checkpoint_dir=ckpt, resume=not args.no_resume,
            seed=args.seed, device=args.device, num_workers=args.num_workers,
        )  # fmt: skip
    if not is_main_process():
        cleanup_distributed()
        return 0
    if not args.checkpoint:
        saved = miner.save(args.save or out.with_suffix("") / "miner")
        _say(f"  miner        : {saved} (--checkpoint to reuse)")
    if data.in_chans != miner.in_chans:
        raise LocalizationError(f"the miner takes {miner.in_chans} channels; got {data.in_chans}")
    boxes = miner.boxes(data, per_class=args.per_class, progress=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "class", "x", "y", "w", "h", "score"])
        for f, found in zip(data.files, boxes):
            s = _original_scale(f, size)
            for c, x, y, bw, bh, score in found:
                w.writerow([f.name, c, *(f"{v * s:.1f}" for v in (x, y, bw, bh)), f"{score:.4f}"])
    _say(f"  boxes        : {out} ({sum(map(len, boxes))} boxes, original-image pixels)")
    if any(data.boxes):
        scores = localization_scores(boxes, data.boxes, classes=classes)
        scores_path = out.with_suffix(".scores.json")
        scores_path.write_text(json.dumps(scores.to_dict(), indent=1) + "\n")
        _say(scores.to_markdown())
        _say(f"  scores       : {scores_path}")
    if args.overlays:
        from hyperinit.localize.overlay import save_overlay

        folder = Path(args.overlays)
        shown = [i for i, b in enumerate(data.boxes) if b] or list(range(len(data)))
        shown = shown[: args.max_overlays]
        written = 0
        for i in shown:
            x = data.image(i)[None]
            maps = miner.heatmaps(x)[0]
            probs = miner.predict(x)[0]
            wanted = {b[0] for b in data.boxes[i]} or {classes[int(probs.argmax())]}
            for c in sorted(wanted):
                k = classes.index(c)
                pred = [b[1:5] for b in boxes[i] if b[0] == c]
                true = [b[1:5] for b in data.boxes[i] if b[0] == c]
                name = f"{data.files[i].stem}_{c}.png"
                save_overlay(folder / name, x[0], maps[k], pred, true,
                             f"{c} p={float(probs[k]):.2f}")  # fmt: skip
                written += 1
        _say(f"  overlays     : {written} PNGs in {folder}")
    cleanup_distributed()
    return 0

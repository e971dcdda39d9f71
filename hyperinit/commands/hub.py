"""``hyperinit download`` and ``hyperinit list``: fill the Hub cache with modality checkpoints and
print the checkpoint registry."""

from __future__ import annotations

import argparse
import json

__all__ = ["add_download_parser", "add_list_parser", "run_download", "run_list"]


def add_download_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``hyperinit download`` on the CLI's subparsers."""
    p = sub.add_parser("download", help="pre-fill the Hub cache with modality checkpoints")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--modality", help="xray, ct, ultrasound, dermoscopy, fundus, mixed")
    which.add_argument("--all", action="store_true", help="every modality in the registry")
    p.add_argument("--cache-dir", default=None, help="Hub cache (default: HF_HUB_CACHE)")
    p.set_defaults(func=run_download)
    return p


def add_list_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``hyperinit list`` on the CLI's subparsers."""
    p = sub.add_parser("list", help="print the checkpoint registry and where each loads from")
    p.add_argument("--cache-dir", default=None, help="Hub cache (default: HF_HUB_CACHE)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_list)
    return p


def run_download(args: argparse.Namespace) -> int:
    """Run ``hyperinit download``; returns the exit status."""
    from tqdm.auto import tqdm

    from hyperinit.hub import download_checkpoint
    from hyperinit.modalities import MODALITIES, resolve_modality

    names = list(MODALITIES) if args.all else [resolve_modality(args.modality)]
    for name in tqdm(names, desc="checkpoints", unit="ckpt", disable=len(names) == 1):
        folder = download_checkpoint(name, cache_dir=args.cache_dir)
        print(f"{name:<11} verified in {folder}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    """Run ``hyperinit list``; returns the exit status."""
    from hyperinit.hub import list_checkpoints

    rows = list_checkpoints(cache_dir=args.cache_dir)
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return 0
    print(f"{'name':<11} {'size':>8}  {'loads from':<10} {'repo@revision':<38} {'date':<10}  data")
    for r in rows:
        state = "" if r.trained else " [untrained]"
        print(
            f"{r.name:<11} {r.size_bytes / 1e6:>6.2f}MB  {r.source:<10} "
            f"{r.repo_id + '@' + r.revision:<38} {r.date:<10}  {r.training_data}{state}"
        )
    return 0

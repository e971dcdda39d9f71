"""The ``hyperinit`` command: a thin layer over the library."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import torch

__all__ = ["main"]


def _model_kwargs(text: str | None) -> dict | None:
    """``--model-kwargs``: a JSON object of constructor arguments."""
    from hyperinit.errors import HyperInitError

    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise HyperInitError(
            f"--model-kwargs is not valid JSON ({e.msg} at character {e.pos}): {text!r}. Write "
            'a JSON object with double quotes, e.g. \'{"spatial_dims": 3, "channels": [8, 16]}\'.'
        ) from e
    if not isinstance(value, dict):
        raise HyperInitError(
            f"--model-kwargs must be a JSON object of constructor arguments, got {text!r}."
        )
    return value


def _spatial_dims(model: torch.nn.Module) -> int:
    """Spatial dimensions of the model's first convolution (2 without one)."""
    conv = next((m for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)), None)
    return conv.weight.dim() - 2 if conv is not None else 2


def _cmd_init(args: argparse.Namespace) -> int:
    from safetensors.torch import save_model

    from hyperinit.deferred import deferred_init
    from hyperinit.initialize import initialize_deferred
    from hyperinit.models import create_model

    kwargs = _model_kwargs(args.model_kwargs)
    with deferred_init() as deferred:  # no default init for what the hypernetwork predicts
        model = create_model(
            args.model, in_chans=args.in_chans, num_classes=args.num_classes, model_kwargs=kwargs
        )
    example = None
    if args.input_size:
        dims = [args.input_size] * _spatial_dims(model)
        example = torch.randn(2, args.in_chans, *dims)
    report = initialize_deferred(
        model,
        args.modality,
        deferred,
        checkpoint=args.checkpoint,
        example_input=example,
        exclude=args.exclude or None,
        predict_head=args.predict_head,
        device=args.device,
        seed=args.seed,
    )
    print(report)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        save_model(model, str(out), metadata={"hyperinit_seed": str(report.seed)})
        print(f"  saved        : {out} (load with safetensors.torch.load_model)")
    if args.report:
        Path(args.report).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from hyperinit.hub import download_checkpoint
    from hyperinit.modalities import MODALITIES, resolve_modality

    names = list(MODALITIES) if args.all else [resolve_modality(args.modality)]
    for name in tqdm(names, desc="checkpoints", unit="ckpt", disable=len(names) == 1):
        folder = download_checkpoint(name, cache_dir=args.cache_dir)
        print(f"{name:<11} verified in {folder}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
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


def _cmd_c2l(args: argparse.Namespace) -> int:
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
        trainer.save_pretrained(out)
        last = history.epochs[-1] if history.epochs else {}
        print(
            f"C2L: {trainer.step} steps, last epoch loss {last.get('loss', float('nan')):.4f}, "
            f"positive-pair accuracy {last.get('accuracy', float('nan')):.3f}"
        )
        print(f"  saved        : {out / 'model.safetensors'} (hyperinit.c2l.load_backbone)")
    cleanup_distributed()
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from hyperinit.bench.report import write_report
    from hyperinit.bench.suites import estimate_seconds, get_suite, run_suite

    suite = "quick" if args.quick else args.suite
    results = Path(args.results or f"hyperinit-bench/{suite}")
    report = Path(args.report or results / "REPORT.md")
    shown = os.path.relpath(results) if results.resolve().is_relative_to(Path.cwd()) else results
    command = f"hyperinit bench {suite} --results {shown}" + (
        f" --c2l {args.c2l}" if args.c2l else ""
    )
    cells = get_suite(suite, c2l=args.c2l)
    if not args.report_only:
        if args.list:
            total = sum(estimate_seconds(c) for c in cells)
            for c in cells:
                print(f"{c.key():<80} {estimate_seconds(c) / 60:7.1f} min  {','.join(c.tags)}")
            print(
                f"{len(cells)} cells, about {total / 3600:.1f} h of cell time (1 thread each): "
                f"{total / 7200:.1f} h with two workers (--threads 1 --shard 0/2 and 1/2) on "
                "2 CPU cores"
            )
            return 0
        if args.threads:
            torch.set_num_threads(args.threads)
        i, n = (int(v) for v in args.shard.split("/"))
        run_suite(
            cells,
            results,
            shard=(i, n),
            tags=tuple(args.only or ()),
            inits=tuple(args.init or ()),
            max_cells=args.max_cells,
            device=args.device,
            data_root=args.data_root,
        )
    if _writes_report(args):
        dirs = [results, *map(Path, args.also or [])]
        path = write_report(dirs, report, command=command, planned=cells)
        print(f"report: {path}")
    return 0


def _writes_report(args: argparse.Namespace) -> bool:
    """Only shard 0 (or a --report-only run) writes the report."""
    return args.report_only or args.shard.split("/")[0] == "0"


def _cmd_train(args: argparse.Namespace) -> int:
    from hyperinit.training import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(
        modality=args.modality,
        data=args.data,
        objective=args.objective,
        steps=args.steps,
        meta_batch=args.meta_batch,
        batch_size=args.batch_size,
        image_size=args.image_size,
        load_size=args.load_size,
        lr=args.lr,
        checkpoint_every=args.checkpoint_every,
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hyperinit", description="Hypernetwork initialisation for medical imaging models."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "init", help="initialise a timm / torchvision / MONAI / smp model and save its weights"
    )
    p.add_argument(
        "--model",
        required=True,
        help="timm:NAME, torchvision:NAME, monai:NAME or smp:ARCH:ENCODER",
    )
    p.add_argument(
        "--model-kwargs",
        default=None,
        help="constructor arguments as a JSON object, e.g. '{\"spatial_dims\": 3}'",
    )
    p.add_argument("--in-chans", type=int, default=3, help="input channels (1 for grayscale)")
    p.add_argument("--num-classes", type=int, default=None, help="classes of the head")
    p.add_argument("--modality", default="xray", help="xray, ct, ultrasound, dermoscopy, ...")
    p.add_argument("--checkpoint", default=None, help="hypernetwork checkpoint directory")
    p.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="example input size in px (voxels per side for 3D models)",
    )
    p.add_argument("--exclude", action="append", help="parameter/module name or regex to keep")
    p.add_argument("--predict-head", action="store_true", help="also predict the head")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int, default=None, help="seed of the prediction")
    p.add_argument("--out", default=None, help="write the weights to this .safetensors file")
    p.add_argument("--report", default=None, help="write the report to this JSON file")
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser("download", help="pre-fill the Hub cache with modality checkpoints")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--modality", help="xray, ct, ultrasound, dermoscopy, fundus, mixed")
    which.add_argument("--all", action="store_true", help="every modality in the registry")
    p.add_argument("--cache-dir", default=None, help="Hub cache (default: HF_HUB_CACHE)")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("list", help="print the checkpoint registry and where each loads from")
    p.add_argument("--cache-dir", default=None, help="Hub cache (default: HF_HUB_CACHE)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_list)

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
    p.set_defaults(func=_cmd_c2l)

    p = sub.add_parser("bench", help="run the benchmark suite (resumable) and write REPORT.md")
    p.add_argument("suite", nargs="?", default="default", help="quick, default, full or gpu")
    p.add_argument("--quick", action="store_true", help="the tiny suite (a few minutes on CPU)")
    p.add_argument("--report-only", action="store_true", help="only (re)write the report")
    p.add_argument("--results", default=None, help="cell JSON folder (hyperinit-bench/SUITE)")
    p.add_argument("--also", action="append", help="more result folders for the report")
    p.add_argument("--report", default=None, help="report path (RESULTS/REPORT.md)")
    p.add_argument("--c2l", default=None, help="a C2L checkpoint: adds c2l:<path> cells")
    p.add_argument("--only", action="append", help="run cells with this tag (core, sweep...)")
    p.add_argument("--init", action="append", help="run cells with this init label")
    p.add_argument("--shard", default="0/1", help="I/N: run every N-th cell from the I-th")
    p.add_argument("--max-cells", type=int, default=None, help="stop after this many cells")
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 when shared)")
    p.add_argument("--device", default="cpu", help="cpu, cuda ...")
    p.add_argument("--data-root", default=None, help="data folder (HYPERINIT_DATA)")
    p.add_argument("--list", action="store_true", help="list the cells and time estimates")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("train", help="train (or resume) a hypernetwork; works under torchrun")
    p.add_argument("--modality", default="xray", help="modality the checkpoint is for")
    p.add_argument("--data", default=None, help="folder of unlabelled images (default: bundled)")
    p.add_argument("--objective", default="rotation", help="rotation, c2l, rotation+c2l, ...")
    p.add_argument("--steps", type=int, default=500, help="optimisation steps")
    p.add_argument("--meta-batch", type=int, default=2, help="architectures per step")
    p.add_argument("--batch-size", type=int, default=32, help="images per step")
    p.add_argument("--image-size", type=int, default=48, help="training crop size in px")
    p.add_argument("--load-size", type=int, default=80, help="images are decoded at this px")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate (AdamW)")
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints")
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
    p.set_defaults(func=_cmd_train)

    from hyperinit.localize.cli import add_localize_parser

    add_localize_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from hyperinit.errors import HyperInitError

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("hyperinit.initialize").setLevel(logging.WARNING)
    try:
        return args.func(args)
    except HyperInitError as e:
        print(f"hyperinit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

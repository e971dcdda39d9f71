"""``hyperinit init``: build a timm / torchvision / MONAI / smp model, initialise it with the
hypernetwork and save its weights and report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``hyperinit init`` on the CLI's subparsers."""
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
    p.set_defaults(func=run)
    return p


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


def run(args: argparse.Namespace) -> int:
    """Run ``hyperinit init``; returns the exit status."""
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

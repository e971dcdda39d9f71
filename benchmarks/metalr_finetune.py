"""Fine-tuning comparison: constant rate, layer-wise, bi-directional and MetaLR (ResNet-18).

No ImageNet weights are available offline, so the backbone is first pretrained (supervised, a few
epochs) on DermaMNIST (dermoscopy, 7 classes), a different modality from the targets, and then
fine-tuned on two targets from the data folder (:func:`hyperinit.data.data_root`):

- ``ultrasound_busi`` (3 classes): one seeded, stratified 60/20/20 train/val/test split;
- ``chest_xray_kermany`` (2 classes): a seeded, stratified subset of the official train split
  (train + val) and the whole official test split.

All methods train the same steps with SGD (momentum 0.9, batch 32) from the same pretrained
weights, backbone rate ``--lr`` and head rate 10x (the paper's convention). MetaLR additionally
uses the validation split for its meta steps. Each finished (dataset, method, seed) cell is
saved at once, so a stopped run resumes where it stopped.

    nohup python benchmarks/metalr_finetune.py > /tmp/metalr_finetune.log 2>&1 &

Writes benchmarks/results/metalr_finetune.{json,md} and metalr_finetune_lrs.png.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from tqdm import tqdm

from hyperinit.metalr import MetaLROptimizer, layer_groups
from hyperinit.metalr.schemes import all_layers, bidirectional, layerwise

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CACHE = RESULTS / "cache"  # git-ignored: pretrained weights, per-cell checkpoints
MEAN, STD = 0.5, 0.25


def data_root() -> Path:
    """The data folder (:func:`hyperinit.data.data_root`: ``$HYPERINIT_DATA`` or beside the
    checkout)."""
    from hyperinit.data import data_root as root

    return root()


def load_images(paths: list[Path], size: int) -> torch.Tensor:
    out = torch.empty(len(paths), 3, size, size, dtype=torch.uint8)
    for i, p in enumerate(tqdm(paths, desc=f"decode {paths[0].parent.parent.name}", leave=False)):
        with Image.open(p) as im:
            im = im.convert("RGB").resize((size, size), Image.BILINEAR)
            out[i] = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
    return out


def stratified(
    items: list[tuple[Path, int]],
    fractions: list[float],
    seed: int,
    counts: list[int] | None = None,
) -> list[list[tuple[Path, int]]]:
    """Split (path, label) items per class, seeded; by fractions or by total counts."""
    rng = random.Random(seed)
    by_class: dict[int, list] = {}
    for it in sorted(items, key=lambda t: str(t[0])):
        by_class.setdefault(it[1], []).append(it)
    parts: list[list] = [[] for _ in (counts or fractions)]
    for cls_items in by_class.values():
        rng.shuffle(cls_items)
        share = len(cls_items) / len(items)
        sizes = (
            [round(c * share) for c in counts]
            if counts
            else [round(f * len(cls_items)) for f in fractions]
        )
        start = 0
        for k, n in enumerate(sizes):
            parts[k].extend(cls_items[start : start + n])
            start += n
    return parts


def build_dataset(name: str, size: int, args: argparse.Namespace) -> dict:
    root = data_root() / name
    if name == "ultrasound_busi":
        classes = ["benign", "malignant", "normal"]
        items = [(p, c) for c, k in enumerate(classes) for p in sorted((root / k).glob("*.png"))]
        train, val, test = stratified(items, [0.6, 0.2, 0.2], seed=0)
    elif name == "chest_xray_kermany":
        classes = ["NORMAL", "PNEUMONIA"]
        tr = [(p, c) for c, k in enumerate(classes) for p in sorted((root / "train" / k).glob("*"))]
        test = [
            (p, c) for c, k in enumerate(classes) for p in sorted((root / "test" / k).glob("*"))
        ]
        train, val = stratified(tr, [], seed=0, counts=[args.cxr_train, args.cxr_val])
    else:
        raise ValueError(name)
    split = {}
    for part, its in (("train", train), ("val", val), ("test", test)):
        split[part] = (
            load_images([p for p, _ in its], size),
            torch.tensor([c for _, c in its]),
            [str(p.relative_to(root)) for p, _ in its],
        )
    return {"classes": classes, "split": split}


def to_float(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255.0 - MEAN) / STD


def batches(x, y, bs: int, gen: torch.Generator, augment: bool):
    perm = torch.randperm(len(y), generator=gen)
    for i in range(0, len(y) - bs + 1, bs):
        idx = perm[i : i + bs]
        xb = to_float(x[idx])
        if augment:
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb[flip] = xb[flip].flip(-1)
        yield xb, y[idx]


@torch.no_grad()
def evaluate(model, x, y, n_classes: int) -> dict:
    model.eval()
    preds = torch.cat([model(to_float(x[i : i + 256])).argmax(1) for i in range(0, len(y), 256)])
    model.train()
    recalls = [(preds[y == c] == c).float().mean().item() for c in range(n_classes)]
    return {"acc": (preds == y).float().mean().item(), "balanced_acc": float(np.mean(recalls))}


def pretrain(args: argparse.Namespace) -> dict:
    """Supervised pretraining on DermaMNIST train; cached."""
    path = CACHE / f"resnet18_dermamnist_{args.size}px_{args.pretrain_epochs}ep.pt"
    if path.exists():
        return torch.load(path)
    root = data_root() / "dermoscopy_dermamnist"
    meta = [
        line.split(",") for line in (root / "HAM10000_metadata.csv").read_text().splitlines()[1:]
    ]
    classes = sorted({m[1] for m in meta})
    train = [
        (root / "images" / f"{m[0]}.jpg", classes.index(m[1])) for m in meta if "_train_" in m[0]
    ]
    x = load_images([p for p, _ in train], args.size)
    y = torch.tensor([c for _, c in train])
    torch.manual_seed(1234)
    model = torchvision.models.resnet18(num_classes=len(classes))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(1234)
    steps = args.pretrain_epochs * (len(y) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=steps)
    bar = tqdm(total=steps, desc="pretrain dermamnist")
    for _ in range(args.pretrain_epochs):
        for xb, yb in batches(x, y, 64, gen, augment=True):
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def run_cell(ds: dict, method: str, seed: int, backbone: dict, args: argparse.Namespace) -> dict:
    torch.manual_seed(seed)
    n_classes = len(ds["classes"])
    model = torchvision.models.resnet18(num_classes=n_classes)
    model.load_state_dict(backbone, strict=False)
    model.train()
    if method == "layerwise":
        params = layerwise(model, args.layerwise_k)
    elif method == "bidirectional":
        params = bidirectional(model, args.bidir_m, args.bidir_n)
    else:
        params = all_layers(model)
    head = set(map(id, model.fc.parameters()))
    body = [p for p in params if id(p) not in head]
    base = torch.optim.SGD(
        [
            {"params": body, "lr": args.lr},
            {"params": list(model.fc.parameters()), "lr": args.lr * 10},
        ],
        momentum=0.9,
        weight_decay=1e-4,
    )
    xtr, ytr, _ = ds["split"]["train"]
    xva, yva, _ = ds["split"]["val"]
    if method == "constant_trainval":  # control: the baseline also trains on MetaLR's val split
        xtr, ytr = torch.cat([xtr, xva]), torch.cat([ytr, yva])
    gen = torch.Generator().manual_seed(seed)
    vgen = torch.Generator().manual_seed(seed + 1000)
    opt: torch.optim.Optimizer = base
    step_fn: Callable
    if method == "metalr":
        opt = MetaLROptimizer(
            base,
            model,
            meta_lr=args.meta_lr,
            lr_max=args.lr_max,
            init_lrs=args.lr,  # backbone; head 10x
            meta_every=args.meta_every,
            meta_update=args.meta_update,
        )
        val_iter = iter(())

        def next_val():
            nonlocal val_iter
            try:
                return next(val_iter)
            except StopIteration:  # cycle, reshuffled
                val_iter = batches(xva, yva, args.batch, vgen, augment=False)
                return next(val_iter)

        def step_fn(xb, yb):
            xv, yv = next_val()
            return opt.step(
                lambda: F.cross_entropy(model(xb), yb), lambda: F.cross_entropy(model(xv), yv)
            )
    else:

        def step_fn(xb, yb):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            return loss.detach()

    n_steps = args.epochs[ds["name"]] * (len(ytr) // args.batch)
    bar = tqdm(total=n_steps, desc=f"{ds['name']} {method} s{seed}", leave=False)
    t0 = time.perf_counter()
    losses = []
    for _ in range(args.epochs[ds["name"]]):
        for xb, yb in batches(xtr, ytr, args.batch, gen, augment=True):
            losses.append(float(step_fn(xb, yb)))
            bar.update()
    bar.close()
    xte, yte, _ = ds["split"]["test"]
    result = {
        "dataset": ds["name"],
        "method": method,
        "seed": seed,
        "steps": n_steps,
        "train_seconds": time.perf_counter() - t0,
        "final_train_loss": float(np.mean(losses[-10:])),
        "test": evaluate(model, xte, yte, n_classes),
        "val": evaluate(model, xva, yva, n_classes),
    }
    if method == "metalr":
        result["lr_history"] = opt.lr_history
        result["lr_history_steps"] = opt.lr_history_steps
        result["final_lrs"] = opt.lrs
        result["skipped_meta_steps"] = opt.skipped_meta_steps
    return result


def summarise(cells: list[dict], args: argparse.Namespace, splits: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table: dict = {}
    for c in cells:
        table.setdefault(c["dataset"], {}).setdefault(c["method"], []).append(c)
    summary = {}
    for ds, methods in table.items():
        for method, runs in methods.items():
            accs = [r["test"]["acc"] for r in runs]
            bals = [r["test"]["balanced_acc"] for r in runs]
            summary.setdefault(ds, {})[method] = {
                "n_seeds": len(runs),
                "test_acc_mean": statistics.mean(accs),
                "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "test_balanced_acc_mean": statistics.mean(bals),
                "test_balanced_acc_std": statistics.stdev(bals) if len(bals) > 1 else 0.0,
                "train_seconds_mean": statistics.mean(r["train_seconds"] for r in runs),
            }
    report = {"config": vars(args) | {"epochs": args.epochs}, "splits": splits, "summary": summary}
    report["cells"] = cells
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=1, default=str))

    with_rates = [ds for ds, methods in table.items() if methods.get("metalr")]
    fig, axes = plt.subplots(2, max(1, len(table)), figsize=(6 * max(1, len(table)), 7))
    axes = np.array(axes).reshape(2, -1)
    for k, (ds, methods) in enumerate(table.items()):
        runs = methods.get("metalr", [])
        if not runs:
            continue
        names = list(runs[0]["final_lrs"])
        for r in runs:
            axes[0, k].plot(
                range(1, len(names) + 1),
                list(r["final_lrs"].values()),
                "o-",
                label=f"seed {r['seed']} (end)",
            )
            axes[0, k].plot(
                range(1, len(names) + 1), [r["lr_history"][n][0] for n in names], "k:", alpha=0.4
            )
        axes[0, k].set_xticks(range(1, len(names) + 1))
        axes[0, k].set_xticklabels(names, rotation=45, ha="right", fontsize=7)
        axes[0, k].set_yscale("log")
        axes[0, k].set_title(f"{ds}: learned rate per layer (dotted: initial)")
        axes[0, k].legend(fontsize=7)
        r = runs[0]
        for n in names:
            axes[1, k].plot(r["lr_history_steps"], r["lr_history"][n], label=n)
        axes[1, k].set_yscale("log")
        axes[1, k].set_xlabel("step")
        axes[1, k].set_title(f"{ds}: rates over training (seed {r['seed']})")
        axes[1, k].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    if with_rates:
        fig.savefig(RESULTS / f"{args.name}_lrs.png", dpi=110)

    lines = [
        "# Fine-tuning comparison: constant rate, layer-wise, bi-directional, MetaLR",
        "",
        f"ResNet-18 pretrained {args.pretrain_epochs} epochs on DermaMNIST (7 classes) at "
        f"{args.size} px, then fine-tuned with SGD (momentum 0.9, wd 1e-4, batch {args.batch}), "
        f"backbone rate {args.lr}, head {args.lr * 10}; layer-wise freezes layers "
        f"1..{args.layerwise_k}, bi-directional freezes layers {args.bidir_m}..{args.bidir_n} "
        "(of 10: conv1, 8 blocks, fc); "
        f"MetaLR meta_lr={args.meta_lr}, lr_max={args.lr_max}, meta_every={args.meta_every}, "
        f"meta_update={args.meta_update}. "
        f"Epochs {args.epochs}. Seeds {args.seeds}. {args.threads} CPU thread(s).",
        "Test accuracy and balanced accuracy (mean ± std over seeds). Command: "
        f"`python benchmarks/metalr_finetune.py` (see `config` in {args.name}.json).",
        "",
        "| dataset | method | test acc | test balanced acc | train s/run |",
        "|---|---|---|---|---|",
    ]
    for ds, methods in summary.items():
        for m, s in methods.items():
            lines.append(
                f"| {ds} | {m} | {s['test_acc_mean']:.3f} ± {s['test_acc_std']:.3f} | "
                f"{s['test_balanced_acc_mean']:.3f} ± {s['test_balanced_acc_std']:.3f} | "
                f"{s['train_seconds_mean']:.0f} |"
            )
    lines += ["", "Splits (sizes per class):", ""]
    for ds, sp in splits.items():
        lines.append(f"- {ds}: {sp['sizes']}")
    if with_rates:
        lines += ["", f"![learned rates]({args.name}_lrs.png)"]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    global RESULTS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["ultrasound_busi", "chest_xray_kermany"])
    ap.add_argument(
        "--methods",
        nargs="+",
        default=["constant", "layerwise", "bidirectional", "metalr"],
        help="also: constant_trainval (constant rate trained on train + val)",
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--meta-lr", type=float, default=1e-4)
    ap.add_argument("--lr-max", type=float, default=0.1)
    ap.add_argument("--meta-every", type=int, default=1)
    ap.add_argument("--meta-update", default="additive", choices=["additive", "relative"])
    ap.add_argument("--layerwise-k", type=int, default=4)
    ap.add_argument("--bidir-m", type=int, default=2)
    ap.add_argument("--bidir-n", type=int, default=5)
    ap.add_argument("--busi-epochs", type=int, default=16)
    ap.add_argument("--cxr-epochs", type=int, default=13)
    ap.add_argument("--cxr-train", type=int, default=600)
    ap.add_argument("--cxr-val", type=int, default=200)
    ap.add_argument("--pretrain-epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--name", default="metalr_finetune", help="stem of the result files and cell checkpoint"
    )
    ap.add_argument(
        "--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)"
    )
    args = ap.parse_args()
    RESULTS = args.out
    args.epochs = {"ultrasound_busi": args.busi_epochs, "chest_xray_kermany": args.cxr_epochs}
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    cells_path = CACHE / f"{args.name}_cells.json"
    cells = json.loads(cells_path.read_text()) if cells_path.exists() else []
    done = {(c["dataset"], c["method"], c["seed"]) for c in cells}
    backbone = pretrain(args)
    assert len(layer_groups(torchvision.models.resnet18())) == 10
    splits = {}
    todo = [(d, m, s) for d in args.datasets for s in args.seeds for m in args.methods]
    outer = tqdm(total=len(todo), desc="cells", initial=sum(t in done for t in todo))
    for name in args.datasets:
        ds = build_dataset(name, args.size, args)
        ds["name"] = name
        splits[name] = {
            "sizes": {
                part: {ds["classes"][c]: int((y == c).sum()) for c in range(len(ds["classes"]))}
                for part, (_, y, _) in ds["split"].items()
            },
            "files": {part: files for part, (_, _, files) in ds["split"].items()},
        }
        for seed in args.seeds:
            for method in args.methods:
                if (name, method, seed) in done:
                    continue
                cells.append(run_cell(ds, method, seed, backbone, args))
                cells_path.write_text(json.dumps(cells))
                outer.update()
                c = cells[-1]
                outer.write(
                    f"{name} {method} seed {seed}: test acc {c['test']['acc']:.3f} "
                    f"bal {c['test']['balanced_acc']:.3f} ({c['train_seconds']:.0f}s)"
                )
        del ds
    outer.close()
    summarise(
        [c for c in cells if c["dataset"] in args.datasets and c["method"] in args.methods],
        args,
        splits,
    )


if __name__ == "__main__":
    main()

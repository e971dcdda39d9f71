"""Trainability: is a hyper-initialised ResNet-18 at least as trainable as default init?

ResNet-18 (timm, 1 input channel, 2 classes) trained for 3 epochs on a seeded, stratified 10 %
subset of the chest_xray_kermany training images (grayscale, 64 px), SGD with momentum, 3
seeds; for each seed both arms share the data order, augmentation and the head's default init.
Reports the training loss per epoch and the test AUC on the official test split.
Writes trainability.{json,md,png} beside this script; finished runs are cached (cache/, git-ignored)
and not rerun.

    python research/trainability/trainability.py                   # about 5 minutes on 2 cores
    python research/trainability/trainability.py --checkpoint DIR  # a trained hypernetwork
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import time
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

import hyperinit
from hyperinit.data import data_root

RESULTS = Path(__file__).resolve().parent
CACHE = RESULTS / "cache"
CLASSES = ("NORMAL", "PNEUMONIA")


def load_split(
    split: str, fraction: float, size: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of one split as a (N, 1, size, size) float tensor and labels; a stratified,
    seeded ``fraction`` of each class."""
    rng = random.Random(seed)
    xs, ys = [], []
    for label, cls in enumerate(CLASSES):
        files = sorted((data_root() / "chest_xray_kermany" / split / cls).glob("*.jpeg"))
        if fraction < 1:
            files = rng.sample(files, max(1, round(fraction * len(files))))
        for f in files:
            img = Image.open(f).convert("L").resize((size, size), Image.BILINEAR)
            xs.append(np.asarray(img, dtype=np.float32) / 255.0)
            ys.append(label)
    x = torch.from_numpy(np.stack(xs))[:, None]
    return x, torch.tensor(ys)


def auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties counted half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).float().mean()
    ties = (pos[:, None] == neg[None, :]).float().mean()
    return float(greater + 0.5 * ties)


def run(init: str, seed: int, data: dict, args: argparse.Namespace) -> dict:
    cache = CACHE / f"{init}_seed{seed}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    torch.manual_seed(seed)
    model = timm.create_model("resnet18", in_chans=1, num_classes=2)
    init_s = 0.0
    if init == "hyperinit":
        report = hyperinit.initialize(
            model,
            "xray",
            checkpoint=args.checkpoint,
            seed=seed,
            example_input=data["train"][0][:4],
        )
        init_s = report.timings["total"]
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
    x, y = data["train"]
    g = torch.Generator().manual_seed(seed)
    epochs = []
    t0 = time.perf_counter()
    for _ in range(args.epochs):
        model.train()
        order = torch.randperm(len(x), generator=g)
        losses = []
        for i in range(0, len(x) - args.batch_size + 1, args.batch_size):
            idx = order[i : i + args.batch_size]
            xb = x[idx]
            flip = torch.rand(len(xb), generator=g) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        epochs.append(statistics.fmean(losses))
    model.eval()
    xt, yt = data["test"]
    with torch.no_grad():
        scores = torch.cat(
            [model(xt[i : i + 256]).softmax(1)[:, 1] for i in range(0, len(xt), 256)]
        )
    row = {
        "init": init,
        "seed": seed,
        "train_loss_per_epoch": epochs,
        "final_train_loss": epochs[-1],
        "test_auc": auc(scores, yt),
        "train_seconds": time.perf_counter() - t0,
        "init_seconds": init_s,
    }
    CACHE.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(row))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.ERROR)
    train = load_split("train", args.fraction, args.size)
    test = load_split("test", 1.0, args.size)
    mean, std = train[0].mean(), train[0].std()
    data = {"train": ((train[0] - mean) / std, train[1]), "test": ((test[0] - mean) / std, test[1])}
    rows = []
    for seed in tqdm(args.seeds, desc="seeds"):
        for init in ("default", "hyperinit"):
            rows.append(run(init, seed, data, args))
    summary = {}
    for init in ("default", "hyperinit"):
        part = [r for r in rows if r["init"] == init]
        summary[init] = {
            "final_train_loss_mean": statistics.fmean(r["final_train_loss"] for r in part),
            "final_train_loss_std": statistics.pstdev(r["final_train_loss"] for r in part),
            "test_auc_mean": statistics.fmean(r["test_auc"] for r in part),
            "test_auc_std": statistics.pstdev(r["test_auc"] for r in part),
        }
    verdict = (
        summary["hyperinit"]["final_train_loss_mean"] <= summary["default"]["final_train_loss_mean"]
    )
    out = {
        "setup": {
            **{k: v for k, v in vars(args).items()},
            "train_images": len(train[1]),
            "test_images": len(test[1]),
            "model": "timm resnet18, in_chans=1, num_classes=2",
            "hypernetwork": args.checkpoint or "embedded reference (untrained)",
        },
        "summary": summary,
        "no_worse_than_default": verdict,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "trainability.json").write_text(json.dumps(out, indent=1) + "\n")
    s = summary
    lines = [
        "# Trainability: hyper-initialised vs default-initialised ResNet-18",
        "",
        "Command: `python research/trainability/trainability.py` "
        f"({args.epochs} epochs, {len(train[1])} "
        f"training images = {100 * args.fraction:.0f} % of chest_xray_kermany/train, stratified, "
        f"seed 0; {args.size} px grayscale; SGD lr {args.lr} momentum 0.9; batch "
        f"{args.batch_size}; seeds {args.seeds}; test = official split, {len(test[1])} images).",
        f"Hypernetwork: {out['setup']['hypernetwork']}.",
        "",
        "| init | final training loss (mean ± std) | test AUC (mean ± std) |",
        "|---|---|---|",
    ]
    for init in ("default", "hyperinit"):
        lines.append(
            f"| {init} | {s[init]['final_train_loss_mean']:.4f} ± "
            f"{s[init]['final_train_loss_std']:.4f} | {s[init]['test_auc_mean']:.4f} ± "
            f"{s[init]['test_auc_std']:.4f} |"
        )
    lines += [
        "",
        f"Training loss no worse than default init: **{'yes' if verdict else 'no'}**.",
        "",
        "Per seed (training loss by epoch):",
        "",
    ]
    for r in rows:
        per = ", ".join(f"{v:.4f}" for v in r["train_loss_per_epoch"])
        lines.append(f"- {r['init']} seed {r['seed']}: {per}; test AUC {r['test_auc']:.4f}")
    (RESULTS / "trainability.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for init, colour in (("default", "tab:gray"), ("hyperinit", "tab:blue")):
        for r in rows:
            if r["init"] == init:
                ax.plot(
                    range(1, args.epochs + 1),
                    r["train_loss_per_epoch"],
                    color=colour,
                    alpha=0.8,
                    label=init if r["seed"] == args.seeds[0] else None,
                )
    ax.set_xticks(range(1, args.epochs + 1))
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss")
    ax.set_title("ResNet-18, 10 % of chest X-ray train, 3 seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "trainability.png", dpi=120)
    print((RESULTS / "trainability.md").read_text())


if __name__ == "__main__":
    main()

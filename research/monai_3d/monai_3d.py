"""3D measurement: a small MONAI 3D classifier on short CT volumes, default init vs hyperinit.

The hypernetwork was trained on 2D networks only; for a ``Conv3d`` it predicts a 3D kernel from
the same graph features. This measures what that gives on one affordable 3D-shaped task.

Task (no real 3D data ships with the project or any installed package, so this is built):
COVID-CT (the bundled ``ct_covid`` dataset, its fixed split: test i%5==0) COVID vs non-COVID.
Each 2D slice becomes a pseudo-volume of DEPTH slices: slice k is the image zoomed in smoothly
(1 -> 0.8) and shifted along a random direction drawn per image, so neighbouring slices change
smoothly as in a CT stack, but the third axis is not real anatomy. A quarter of the train split
is labelled (stratified, the same images for every seed); the model is MONAI's 3D ``ResNet``
(basic blocks, widths 8-64), trained with Adam for EPOCHS epochs; the score is test AUC after
the last epoch. Paired seeds: the same seed gives both runs the same model construction, data
order and augmentation; "hyperinit" is ``initialize(model, "ct", seed)`` (classification head
kept at MONAI's init, as by default).

Resumable: one JSON per (init, seed) in cache/ beside this script (git-ignored).
Writes monai_3d.{json,md,png} beside this script.

    OMP_NUM_THREADS=1 python research/monai_3d/monai_3d.py    # 10 seeds (~8 min, 1 thread)
    OMP_NUM_THREADS=1 python research/monai_3d/monai_3d.py --summary-only
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import hyperinit
from hyperinit.bench.metrics import binary_auc
from hyperinit.bench.stats import paired_gain
from hyperinit.data import data_root, image_to_tensor, load_split, read_image

RESULTS = Path(__file__).resolve().parent
CACHE = RESULTS / "cache"
COMMAND = "OMP_NUM_THREADS=1 python research/monai_3d/monai_3d.py --seeds 10"
DEPTH, SIZE, LOAD = 16, 40, 56
FRACTION, EPOCHS, BATCH, LR = 0.25, 12, 16, 1e-3
MODEL = {
    "spatial_dims": 3,
    "block": "basic",
    "layers": [1, 1, 1, 1],
    "block_inplanes": [8, 16, 32, 64],
    "conv1_t_size": 3,
}
INITS = ("default", "hyperinit")


def pseudo_volume(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``(1, H, W)`` -> ``(1, DEPTH, SIZE, SIZE)``: a smooth zoom-and-shift sequence."""
    angle = float(torch.rand(1, generator=generator)) * 2 * math.pi
    k = torch.linspace(0, 1, DEPTH)
    scale = 1 - 0.2 * k
    tx, ty = 0.15 * k * math.cos(angle), 0.15 * k * math.sin(angle)
    theta = torch.zeros(DEPTH, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = scale, scale
    theta[:, 0, 2], theta[:, 1, 2] = tx, ty
    grid = F.affine_grid(theta, (DEPTH, 1, SIZE, SIZE), align_corners=False)
    slices = F.grid_sample(image.expand(DEPTH, 1, *image.shape[-2:]), grid, align_corners=False)
    return slices.permute(1, 0, 2, 3)  # (1, D, H, W)


def volumes(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-volumes and labels of a ct_covid split (cached as a tensor file)."""
    path = CACHE / f"volumes_{split}.pt"
    if path.exists():
        blob = torch.load(path)
        return blob["x"], blob["y"]
    data = load_split(
        "ct_covid", split, root=data_root(), fraction=FRACTION if split == "train" else 1.0, seed=0
    )
    g = torch.Generator().manual_seed(0)
    xs = [
        pseudo_volume(image_to_tensor(read_image(f, 1).resize((LOAD, LOAD))).float(), g)
        for f in data.files
    ]
    x, y = torch.stack(xs), torch.tensor(data.labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"x": x, "y": y}, path)
    return x, y


def run_cell(init: str, seed: int) -> dict:
    path = CACHE / f"{init}_{seed}.json"
    if path.exists():
        return json.loads(path.read_text())
    xtr, ytr = volumes("train")
    xte, yte = volumes("test")
    mean, std = xtr.mean(), xtr.std()
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    torch.manual_seed(seed)
    model = hyperinit.create_model("monai:ResNet", in_chans=1, num_classes=2, model_kwargs=MODEL)
    row: dict = {"init": init, "seed": seed}
    if init == "hyperinit":
        report = hyperinit.initialize(model, "ct", seed=seed, example_input=xtr[:2])
        row["coverage"] = report.coverage
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    t0 = time.perf_counter()
    losses = []
    for _ in range(EPOCHS):
        model.train()
        order = torch.randperm(len(xtr), generator=g)
        total = 0.0
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            xb = xtr[idx]
            flip = torch.rand(len(idx), generator=g) < 0.5
            xb = torch.where(flip[:, None, None, None, None], xb.flip(-1), xb)
            loss = F.cross_entropy(model(xb), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / len(xtr))
    model.eval()
    with torch.no_grad():
        probs = torch.cat([model(xte[i : i + 64]).softmax(1) for i in range(0, len(xte), 64)])
    row.update(
        score=binary_auc(probs[:, 1], yte),
        acc=float((probs.argmax(1) == yte).float().mean()),
        test_loss=float(F.nll_loss(probs.clamp_min(1e-8).log(), yte)),
        train_loss=losses,
        train_s=time.perf_counter() - t0,
        n_train=len(xtr),
        n_test=len(xte),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row) + "\n")
    return row


def summarise(rows: list[dict]) -> dict:
    """Means per init and the paired difference hyperinit - default (mean, s.e., wins)."""
    by = {(r["init"], r["seed"]): r for r in rows}
    seeds = sorted(s for (i, s) in by if i == "default" and ("hyperinit", s) in by)
    out: dict = {"command": COMMAND, "seeds": seeds}
    for metric in ("score", "acc", "test_loss"):
        keyed = [
            {
                "task": "ct3d",
                "arch": "monai:ResNet",
                "init": i,
                "seed": s,
                "score": by[(i, s)][metric],
            }
            for s in seeds
            for i in INITS
        ]
        mean, se, ahead = paired_gain(keyed, "ct3d", "monai:ResNet", "default", "hyperinit")
        out[metric] = {
            "default_mean": statistics.mean(by[("default", s)][metric] for s in seeds),
            "hyperinit_mean": statistics.mean(by[("hyperinit", s)][metric] for s in seeds),
            "paired_diff_mean": mean,
            "paired_diff_se": se,
            "hyperinit_ahead": ahead,
        }
    return out


def write(rows: list[dict]) -> None:
    s = summarise(rows)
    setup = {
        "task": f"ct_covid pseudo-volumes (1 x {DEPTH} x {SIZE} x {SIZE}), "
        f"{100 * FRACTION:.0f} % of train labelled",
        "model": {"spec": "monai:ResNet", **MODEL},
        "epochs": EPOCHS,
        "batch": BATCH,
        "lr": LR,
        "torch": torch.__version__,
    }
    (RESULTS / "monai_3d.json").write_text(
        json.dumps({**s, "setup": setup, "rows": rows}, indent=1) + "\n"
    )
    a, acc, nll = s["score"], s["acc"], s["test_loss"]
    r0 = rows[0]
    lines = [
        "# 3D: MONAI ResNet on CT pseudo-volumes, default init vs hyperinit",
        "",
        f"Command: `{COMMAND}` (one CPU thread; {len(s['seeds'])} paired seeds).",
        "",
        f"Task: COVID-CT slices ({r0['n_train']} labelled train images = {100 * FRACTION:.0f} % "
        f"of the train split, {r0['n_test']} test), each turned into a {DEPTH}x{SIZE}x{SIZE} "
        "pseudo-volume by a smooth zoom-and-shift sequence: 3D-shaped input whose third axis is "
        "not real anatomy (no real volumetric data is available offline). Model: "
        f"`monai:ResNet` {json.dumps(MODEL)}; Adam {LR}, {EPOCHS} epochs, batch {BATCH}. "
        "hyperinit: `initialize(model, 'ct', seed=seed)`, head at MONAI's init.",
        "",
        "| metric | default init | hyperinit (ct) | paired difference (mean ± s.e.) | "
        "hyperinit ahead |",
        "|---|---|---|---|---|",
    ]
    for name, m in (("test AUC", a), ("test accuracy", acc), ("test NLL", nll)):
        se = m["paired_diff_se"]
        lines.append(
            f"| {name} | {m['default_mean']:.3f} | {m['hyperinit_mean']:.3f} | "
            f"{m['paired_diff_mean']:+.3f} ± {se if se is None else f'{se:.3f}'} | "
            f"{m['hyperinit_ahead']}/{len(s['seeds'])} |"
        )
    lines += ["", "Per seed (test AUC):", "", "| seed | default | hyperinit |", "|---|---|---|"]
    by = {(r["init"], r["seed"]): r for r in rows}
    for seed in s["seeds"]:
        lines.append(
            f"| {seed} | {by[('default', seed)]['score']:.3f} | "
            f"{by[('hyperinit', seed)]['score']:.3f} |"
        )
    (RESULTS / "monai_3d.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    for seed in s["seeds"]:
        ax1.plot([0, 1], [by[("default", seed)]["score"], by[("hyperinit", seed)]["score"]], "o-")
        for init, style in (("default", "-"), ("hyperinit", "--")):
            ax2.plot(by[(init, seed)]["train_loss"], style, alpha=0.6)
    ax1.set_xticks([0, 1], ["default", "hyperinit"])
    ax1.set_ylabel("test AUC")
    ax1.set_title("paired seeds")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("train loss (solid: default, dashed: hyperinit)")
    fig.suptitle("MONAI 3D ResNet, CT pseudo-volumes")
    fig.tight_layout()
    fig.savefig(RESULTS / "monai_3d.png", dpi=120)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--summary-only", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    for seed in range(args.seeds):
        for init in INITS:
            if args.summary_only and not (CACHE / f"{init}_{seed}.json").exists():
                continue
            t = time.perf_counter()
            row = run_cell(init, seed)
            rows.append(row)
            print(
                f"seed {seed} {init:<9} auc {row['score']:.3f} ({time.perf_counter() - t:.0f} s)",
                flush=True,
            )
    if rows:
        write(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())

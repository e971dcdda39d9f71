"""Weakly supervised localisation on ChestX-ray14's 880 box images (the seed's Tables 1-3, Fig. 2).

Data-mining protocol, as the attention-mining seed evaluates it: the networks train on the
image-level labels of the 880 box images (8 box findings, from Data_Entry_2017_bbox_images.csv)
and the 984 boxes are used only to score the boxes harvested from the same images.

Each run: a classifier is trained for ``--base-epochs`` (plain multi-label CAM training), then
tuned for ``--tune-epochs`` more, either plainly (the CAM baseline, and the MSA variants at
t=1) or with attention mining; the frozen copy of KP is the classifier at the start of tuning.
Backbones: default init, ``hyperinit.initialize(..., modality="xray")``, and C2L-pretrained
(``C2LPretrainer`` on the same 880 images, labels unused).

Every finished cell is a JSON under results/localize/cells/ and is reused on a rerun; models
live in benchmarks/results/cache/localize/. ``--report-only`` rewrites the tables.

    python benchmarks/localize_benchmark.py            # about an hour at 1 thread
    python benchmarks/localize_benchmark.py --report-only
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset

import hyperinit
from hyperinit.bench.metrics import binary_auc
from hyperinit.localize import (
    BOX_FINDINGS,
    SEED_IOU_THRESHOLDS,
    AttentionMiner,
    heatmap_boxes,
    load_localization_data,
    localization_scores,
)
from hyperinit.models import create_model

RESULTS = Path(__file__).resolve().parent / "results" / "localize"
CACHE = Path(__file__).resolve().parent / "results" / "cache" / "localize"
log = logging.getLogger("localize_benchmark")

SHORT = {"Atelectasis": "AT", "Cardiomegaly": "CM", "Effusion": "PE", "Infiltration": "Infiltrat.",
         "Mass": "Mass", "Nodule": "Nodule", "Pneumonia": "PNA", "Pneumothorax": "PTx"}  # fmt: skip

# variant -> (msa, mining_steps, kp); "cam" is the CAM baseline, "full" is AM + KP + MSA
VARIANTS = {
    "cam": (False, 1, None),
    "msa_bilinear": ("bilinear", 1, None),
    "msa_deconv": ("deconv", 1, None),
    "t2": ("bilinear", 2, "features"),
    "full": ("bilinear", 3, "features"),
    "t3_nokp": ("bilinear", 3, None),
    "t3_vanilla": ("bilinear", 3, "vanilla"),
}


class CachedImages(Dataset):
    """The dataset's images decoded once into memory (880 x 256 px is 230 MB)."""

    def __init__(self, ds) -> None:
        self.x = torch.stack([ds.image(i) for i in range(len(ds))])
        self.labels = ds.labels
        self.classes = ds.classes
        self.boxes = ds.boxes
        self.files = ds.files

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.x[i], self.labels[i]


def make_backbone(args: argparse.Namespace, init: str, seed: int, data: CachedImages):
    torch.manual_seed(seed)
    model = create_model(args.model, in_chans=1, num_classes=len(BOX_FINDINGS))
    if init == "hyperinit":
        hyperinit.initialize(model, modality="xray", seed=seed)
    elif init == "c2l":
        from hyperinit.c2l import load_backbone

        load_backbone(model, c2l_weights(args, data), strict=True)
    return model


def c2l_weights(args: argparse.Namespace, data: CachedImages) -> Path:
    """One C2L pretraining of the backbone on the 880 images (labels unused), cached."""
    out = CACHE / f"c2l_{args.model.replace(':', '_')}_{args.size}_{args.c2l_epochs}ep"
    if (out / "model.safetensors").is_file():
        return out
    from hyperinit.c2l import C2LPretrainer, strip_head
    from hyperinit.data import ImageFolder

    torch.manual_seed(0)
    backbone = strip_head(create_model(args.model, in_chans=1))
    trainer = C2LPretrainer(backbone, queue_size="auto", image_size=args.size, in_chans=1)
    files = ImageFolder([str(f) for f in data.files], channels=1)
    t = time.perf_counter()
    trainer.fit(files, epochs=args.c2l_epochs, batch_size=32, checkpoint_dir=out / "ckpt",
                resume=True, seed=0, progress=False)  # fmt: skip
    trainer.save_pretrained(out)
    (out / "time.json").write_text(json.dumps({"seconds": time.perf_counter() - t}))
    return out


def base_model(args, init: str, msa: str | bool, seed: int, data: CachedImages) -> Path:
    """The classifier after the base epochs (shared by every variant of the same MSA)."""
    out = CACHE / f"base_{init}_{msa or 'none'}_s{seed}_{args.size}_{args.base_epochs}ep"
    if (out / "model.safetensors").is_file():
        return out
    miner = AttentionMiner(make_backbone(args, init, seed, data), len(BOX_FINDINGS), msa=msa,
                           mining_steps=1, kp=None, class_names=list(BOX_FINDINGS),
                           in_chans=1, image_size=args.size)  # fmt: skip
    t = time.perf_counter()
    miner.fit(data, epochs=args.base_epochs, batch_size=args.batch_size, lr=args.lr, seed=seed,
              checkpoint_dir=out / "ckpt", resume=True, progress=False)  # fmt: skip
    miner.save(out)
    (out / "time.json").write_text(json.dumps({"seconds": time.perf_counter() - t}))
    return out


def evaluate(miner: AttentionMiner, data: CachedImages) -> dict:
    """Boxes (3 per class and image) and class probabilities in one pass over the images."""
    boxes: list[list[tuple]] = []
    probs = []
    for i in range(0, len(data), 32):
        d = miner.heatmaps(data.x[i : i + 32], details=True)
        probs.append(d["probs"])
        for hm in d["heatmaps"]:
            boxes.append([(c, *b) for k, c in enumerate(BOX_FINDINGS)
                          for b in heatmap_boxes(hm[k], per_class=3)])  # fmt: skip
    iou = localization_scores(boxes, data.boxes, SEED_IOU_THRESHOLDS, classes=BOX_FINDINGS)
    iobb = localization_scores(boxes, data.boxes, SEED_IOU_THRESHOLDS, metric="iobb",
                               classes=BOX_FINDINGS)  # fmt: skip
    p = torch.cat(probs)
    aucs = {c: binary_auc(p[:, k], data.labels[:, k]) for k, c in enumerate(BOX_FINDINGS)}
    return {"iou": iou.to_dict(), "iobb": iobb.to_dict(), "auc": aucs}


def run_cell(args, init: str, variant: str, seed: int, data: CachedImages) -> dict:
    path = RESULTS / "cells" / f"{init}_{variant}_s{seed}.json"
    if path.is_file():
        return json.loads(path.read_text())
    msa, steps, kp = VARIANTS[variant]
    t0 = time.perf_counter()
    base = base_model(args, init, msa, seed, data)
    t1 = time.perf_counter()
    backbone = make_backbone(args, init, seed, data)  # architecture only; weights from base
    miner = AttentionMiner.load(base, backbone, mining_steps=steps, kp=kp)
    ckpt = CACHE / f"tune_{init}_{variant}_s{seed}_{args.size}"
    miner.fit(data, epochs=args.tune_epochs, batch_size=args.batch_size, lr=args.tune_lr,
              seed=seed, mining_start=0, checkpoint_dir=ckpt, resume=True,
              progress=False)  # fmt: skip
    if seed == 0:
        miner.save(CACHE / f"final_{init}_{variant}_s0_{args.size}")
    t2 = time.perf_counter()
    res = {"init": init, "variant": variant, "seed": seed, **evaluate(miner, data),
           "tune_seconds": t2 - t1, "base_seconds_this_call": t1 - t0,
           "eval_seconds": time.perf_counter() - t2}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=1) + "\n")
    log.info("%s %s s%d: %.0f s tune, %.0f s eval", init, variant, seed, t2 - t1,
             res["eval_seconds"])  # fmt: skip
    return res


def plan(args) -> list[tuple[str, str, int]]:
    """Table 2 at the first seed, Tables 1 and 3 at the first seed, Table 2 at the other
    seeds, then Tables 1 and 3 at the other seeds (so a time limit cuts ablation seeds first)."""
    extra = ("msa_bilinear", "msa_deconv", "t2", "t3_nokp", "t3_vanilla")

    def table2(s: int) -> list[tuple[str, str, int]]:
        return [(i, v, s) for i in args.inits for v in ("cam", "full")]

    def ablation(s: int) -> list[tuple[str, str, int]]:
        return [(args.ablation_init, v, s) for v in extra]

    first, rest = args.seeds[0], args.seeds[1:]
    cells = table2(first) + ablation(first)
    cells += [c for s in rest for c in table2(s)] + [c for s in rest for c in ablation(s)]
    return cells


# ------------------------------------------------------------------ tables


def _load_cells() -> dict[tuple[str, str, int], dict]:
    out = {}
    for p in sorted((RESULTS / "cells").glob("*.json")):
        r = json.loads(p.read_text())
        out[(r["init"], r["variant"], int(r["seed"]))] = r
    return out


def _mean_se(vals: list[float]) -> tuple[float, float]:
    vals = [v for v in vals if not math.isnan(v)]
    if not vals:
        return float("nan"), float("nan")
    m = statistics.fmean(vals)
    se = statistics.stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else float("nan")
    return m, se


def _fmt(m: float, se: float) -> str:
    return f"{m:.2f}" if math.isnan(se) else f"{m:.2f}±{se:.2f}"


def _acc(r: dict, c: str, t: float, metric: str = "iou") -> float:
    return float(r[metric]["acc"][c][str(t)])


def _afp(r: dict, c: str, t: float) -> float:
    return float(r["iou"]["afp"][c][str(t)])


def write_report(args, cells: dict, command: str) -> Path:
    inits = [i for i in args.inits if any(k[0] == i for k in cells)]
    lines = [
        "# Weakly supervised localisation on ChestX-ray14 (AttentionMiner)",
        "",
        f"Command: `{command}`",
        "",
        f"Data-mining protocol (the seed's section 3): {args.model} (1 channel) trained on the "
        f"image-level labels of the 880 `chestxray14_bbox` images at {args.size} px, scored on "
        "their 984 boxes (never used in training). Each run: "
        f"{args.base_epochs} epochs of plain multi-label training (batch {args.batch_size}, "
        f"AdamW lr {args.lr}, cosine), then {args.tune_epochs} epochs of tuning (lr "
        f"{args.tune_lr}): plain for the CAM baseline and the MSA rows at t=1, attention mining "
        "for the others (KP's frozen copy is the classifier at the start of tuning). Boxes: up to "
        "3 per class and image from the final heatmap at intensity thresholds 0.3/0.5/0.7, "
        "ranked by mean intensity; every box counts (no AFP cut-off as in the seed). "
        "Acc = share of true boxes hit at T(IoU); AFP = unmatched boxes per image of that class. "
        "The backbone is MobileNetV3-S rather than the seed's ResNet-50 because of the CPU: "
        "one training step costs 0.035 s per 256-px image for MobileNetV3-S and 0.2 s for "
        "ResNet-18 on one thread here, so the grid below would take about six times as long. "
        'hyperinit init: `hyperinit.initialize(model, modality="xray", seed=s)` with the '
        "xray checkpoint shipped in the package. The C2L backbone is one pretraining run (seed 0, "
        f"{args.c2l_epochs} epochs on the 880 images, labels unused) shared by the three seeds. "
        f"Seeds {', '.join(map(str, args.seeds))}; cells give mean ± standard error over the "
        "seeds that finished (n in each table).",
        "",
    ]
    # Table 2
    lines += ["## Table 2: CAM baseline vs AM + KP + MSA, Acc-AFP per finding", ""]
    goal_lines = []
    for init in inits:
        for variant, label in (("cam", "CAM baseline"), ("full", "AM+KP+MSA")):
            rs = [cells[k] for k in sorted(cells) if k[0] == init and k[1] == variant]
            if not rs:
                continue
            lines += [f"**{init} init, {label}** (n={len(rs)} seeds)", "",
                      "| T(IoU) | " + " | ".join(SHORT[c] for c in BOX_FINDINGS) + " |",
                      "|---" * 9 + "|"]  # fmt: skip
            for t in SEED_IOU_THRESHOLDS:
                cells_t = []
                for c in BOX_FINDINGS:
                    a = _mean_se([_acc(r, c, t) for r in rs])[0]
                    f = _mean_se([_afp(r, c, t) for r in rs])[0]
                    cells_t.append(f"{a:.2f}-{f:.2f}")
                lines.append(f"| {t:g} | " + " | ".join(cells_t) + " |")
            lines.append("")
        seeds = sorted({k[2] for k in cells if k[0] == init and k[1] == "cam"}
                       & {k[2] for k in cells if k[0] == init and k[1] == "full"})  # fmt: skip
        if seeds:
            diffs = []
            ahead = 0
            for c in BOX_FINDINGS:
                d = [_acc(cells[(init, "full", s)], c, 0.3) - _acc(cells[(init, "cam", s)], c, 0.3)
                     for s in seeds]  # fmt: skip
                m, se = _mean_se(d)
                diffs.append(_fmt(m, se))
                ahead += m > 0
            lines += [f"Paired difference (AM+KP+MSA − CAM) in Acc at T(IoU)=0.3, {init} init, "
                      f"seeds {seeds}:", "",
                      "| " + " | ".join(SHORT[c] for c in BOX_FINDINGS) + " | ahead |",
                      "|---" * 9 + "|",
                      "| " + " | ".join(diffs) + f" | {ahead}/8 |", ""]  # fmt: skip
            goal_lines.append(f"- {init} init: ahead on {ahead}/8 findings at IoU 0.3 "
                              f"({'met' if ahead >= 6 else 'missed'}).")  # fmt: skip
    lines += ["**Goal** (the full method ahead of the CAM baseline in Acc at T(IoU)=0.3 on at "
              "least 6 of 8 findings, mean over seeds):", "", *goal_lines, ""]  # fmt: skip
    # Table 1
    ab = args.ablation_init
    rows1 = [("none (CAM)", "cam"), ("bilinear", "msa_bilinear"), ("deconv.", "msa_deconv")]
    lines += [f"## Table 1: MSA variants, Acc at T(IoU)=0.3 ({ab} init, t=1, no AM)", "",
              "| MSA | n | " + " | ".join(SHORT[c] for c in BOX_FINDINGS) + " | mean AUC |",
              "|---" * 11 + "|"]  # fmt: skip
    for label, v in rows1:
        rs = [cells[k] for k in sorted(cells) if k[0] == ab and k[1] == v]
        if rs:
            accs = [_fmt(*_mean_se([_acc(r, c, 0.3) for r in rs])) for c in BOX_FINDINGS]
            auc = _mean_se([statistics.fmean(r["auc"].values()) for r in rs])
            lines.append(f"| {label} | {len(rs)} | " + " | ".join(accs) + f" | {_fmt(*auc)} |")
    lines.append("")
    # Table 3
    rows3 = [
        ("AM t=1", "msa_bilinear"),
        ("AM t=2", "t2"),
        ("AM t=3", "full"),
        ("w/o KP (t=3)", "t3_nokp"),
        ("KP-Vanilla (t=3)", "t3_vanilla"),
        ("KP (t=3)", "full"),
    ]
    lines += [f"## Table 3: mining steps and knowledge preservation, Acc ({ab} init, MSA bilinear)",
              "", "| T(IoU) | method | n | " + " | ".join(SHORT[c] for c in BOX_FINDINGS) + " |",
              "|---" * 11 + "|"]  # fmt: skip
    for t in (0.1, 0.3):
        for label, v in rows3:
            rs = [cells[k] for k in sorted(cells) if k[0] == ab and k[1] == v]
            if rs:
                accs = [_fmt(*_mean_se([_acc(r, c, t) for r in rs])) for c in BOX_FINDINGS]
                lines.append(f"| {t:g} | {label} | {len(rs)} | " + " | ".join(accs) + " |")
    lines.append("")
    # IoBB and classification
    lines += ["## IoBB and classification (T(IoBB)=0.3 Acc, mean AUC of the 8 branches)", "",
              "| init | variant | n | " + " | ".join(SHORT[c] for c in BOX_FINDINGS) + " | AUC |",
              "|---" * 12 + "|"]  # fmt: skip
    for init in inits:
        for v in VARIANTS:
            rs = [cells[k] for k in sorted(cells) if k[0] == init and k[1] == v]
            if rs:
                accs = [f"{_mean_se([_acc(r, c, 0.3, 'iobb') for r in rs])[0]:.2f}"
                        for c in BOX_FINDINGS]  # fmt: skip
                auc = _mean_se([statistics.fmean(r["auc"].values()) for r in rs])
                lines.append(f"| {init} | {v} | {len(rs)} | " + " | ".join(accs)
                             + f" | {_fmt(*auc)} |")  # fmt: skip
    missing = [k for k in plan(args) if k not in cells]
    lines += ["", "## Not run", ""]
    lines += (
        [
            f"- {len(missing)} planned cells did not finish in the time budget: "
            + ", ".join(f"{i}/{v}/s{s}" for i, v, s in missing)
        ]
        if missing
        else ["- none"]
    )
    if (RESULTS / "fig2_overlays.png").is_file():
        lines += ["", "## Fig. 2: heatmaps during attention mining", "",
                  "![overlays](fig2_overlays.png)", "",
                  "Rows: cases with a box (red: truth, green: the top box of that class). Columns: "
                  "CAM baseline heatmap and boxes; H_1, H_2, H_3 of the full method (erased "
                  "regions dark); its final heatmap (eq. 8) and boxes."]  # fmt: skip
    out = RESULTS / "localize_benchmark.md"
    out.write_text("\n".join(lines) + "\n")
    summary = {"command": command, "args": dict(vars(args)),
               "cells": {f"{i}/{v}/s{s}": r for (i, v, s), r in cells.items()}}  # fmt: skip
    (RESULTS / "localize_benchmark.json").write_text(json.dumps(summary, indent=1) + "\n")
    return out


def figure(args, data: CachedImages, init: str) -> None:
    """Fig. 2: a few box cases, CAM baseline vs the mining steps of the full method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hyperinit.localize import draw_overlay, heatmap_boxes

    paths = {v: CACHE / f"final_{init}_{v}_s0_{args.size}" for v in ("cam", "full")}
    if not all((p / "model.safetensors").is_file() for p in paths.values()):
        return
    miners = {
        v: AttentionMiner.load(p, make_backbone(args, init, 0, data)) for v, p in paths.items()
    }
    cases = []
    for cls in ("Atelectasis", "Cardiomegaly", "Nodule", "Pneumothorax"):
        for i, b in enumerate(data.boxes):
            if any(x[0] == cls for x in b) and i not in [c[0] for c in cases]:
                cases.append((i, cls))
                break
    fig, axes = plt.subplots(len(cases), 5, figsize=(12, 2.6 * len(cases)))
    for row, (i, cls) in enumerate(cases):
        k = BOX_FINDINGS.index(cls)
        x = data.x[i : i + 1]
        truth = [b[1:] for b in data.boxes[i] if b[0] == cls]
        cam = miners["cam"].heatmaps(x)[0, k]
        det = miners["full"].heatmaps(x, details=True)
        fin = det["heatmaps"][0, k]
        draw_overlay(axes[row, 0], x[0], cam, [b[:4] for b in heatmap_boxes(cam)[:1]], truth,
                     f"{cls}: CAM baseline")  # fmt: skip
        for t in range(3):
            up = torch.nn.functional.interpolate(det["steps"][:, t, k : k + 1], size=x.shape[-2:],
                                                 mode="bilinear")[0, 0]  # fmt: skip
            draw_overlay(axes[row, 1 + t], x[0], up, (), truth, f"H_{t + 1}")
        draw_overlay(axes[row, 4], x[0], fin, [b[:4] for b in heatmap_boxes(fin)[:1]], truth,
                     "AM+KP+MSA final (eq. 8)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(RESULTS / "fig2_overlays.png", dpi=80)
    plt.close(fig)
    # one overlay per finding (full method): heatmap, its 3 boxes (green), the truth (red)
    from hyperinit.localize import save_overlay

    for cls in BOX_FINDINGS:
        i = next(j for j, b in enumerate(data.boxes) if any(x[0] == cls for x in b))
        k = BOX_FINDINGS.index(cls)
        x = data.x[i : i + 1]
        hm = miners["full"].heatmaps(x)[0, k]
        save_overlay(RESULTS / "overlays" / f"{cls}_{data.files[i].stem}.png", x[0], hm,
                     [b[:4] for b in heatmap_boxes(hm)], [b[1:] for b in data.boxes[i]
                                                          if b[0] == cls],
                     f"{cls}, {init} init, AM+KP+MSA")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="timm:mobilenetv3_small_100")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--inits", nargs="+", default=["default", "hyperinit", "c2l"])
    ap.add_argument("--ablation-init", default="default")
    ap.add_argument("--base-epochs", type=int, default=2)
    ap.add_argument("--tune-epochs", type=int, default=2)
    ap.add_argument("--c2l-epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--tune-lr", type=float, default=5e-4)
    ap.add_argument("--deadline-min", type=float, default=0, help="start no cell after this")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--out", default=None, help="results folder (default results/localize)")
    args = ap.parse_args()
    global RESULTS, CACHE
    if args.out:
        RESULTS = Path(args.out)
        CACHE = RESULTS / "cache"
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("hyperinit.initialize").setLevel(logging.WARNING)
    command = "OMP_NUM_THREADS=1 python benchmarks/localize_benchmark.py " + " ".join(sys.argv[1:])
    made = (Path(args.out) if args.out else RESULTS) / "localize_benchmark.json"
    if args.report_only and made.is_file():  # keep the command that made the cells
        command = json.loads(made.read_text()).get("command", command)
    RESULTS.mkdir(parents=True, exist_ok=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    start = time.time()
    data = None
    if not args.report_only:
        data = CachedImages(load_localization_data(image_size=args.size))
        for init, variant, seed in plan(args):
            if args.deadline_min and time.time() - start > 60 * args.deadline_min:
                log.info("deadline reached; stopping before %s %s s%d", init, variant, seed)
                break
            run_cell(args, init, variant, seed, data)
            write_report(args, _load_cells(), command)
    if data is None:
        data = CachedImages(load_localization_data(image_size=args.size))
    figure(args, data, args.inits[0] if "hyperinit" not in args.inits else "hyperinit")
    print(write_report(args, _load_cells(), command))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())

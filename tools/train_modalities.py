"""Train the shipped modality checkpoints, one after another, resumably.

For each modality: train on its training images only (hyperinit.data.pretraining_files; never a
test image), score predicted held-out architectures on the self-supervised task with no training
(trained vs the untrained reference hypernetwork), export the hypernetwork with its model card to
``hyperinit/checkpoints/<modality>/`` and write ``tools/results/train_<modality>.json``;
finally ``train_summary.{json,md}`` (throughput, wall time, scores). Re-running resumes an
interrupted modality and skips finished ones.

    nohup python tools/train_modalities.py > runs/modalities.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import torch

from hyperinit.archspace import build, held_out_specs
from hyperinit.data import drive_split, load_split
from hyperinit.hypernet.reference import make_reference
from hyperinit.training import HyperTrainer, TrainConfig
from hyperinit.training.data import ImageBank
from hyperinit.training.evaluate import evaluate_objective

MODALITIES = ("xray", "ct", "ultrasound", "dermoscopy", "fundus", "mixed")
GRAY = {"xray", "ct", "ultrasound", "mixed"}
EVAL_DATA = {
    "xray": "chest_xray",
    "ct": "ct_covid",
    "ultrasound": "busi",
    "dermoscopy": "dermamnist",
    "mixed": "chest_xray",
}
DATA_TEXT = {
    "xray": "Kermany et al. 2018 paediatric chest X-rays, official train split (train + val "
    "subsets, 5,216 images), labels unused",
    "ct": "UCSD-AI4H COVID-CT slices, the fixed train + val split of hyperinit.data "
    "(80 % of 746 images), labels unused",
    "ultrasound": "BUSI breast ultrasound, the fixed train + val split of hyperinit.data "
    "(80 % of 780 images), labels unused",
    "dermoscopy": "DermaMNIST (HAM10000) official train split (7,007 images, 28 px), labels unused",
    "fundus": "DRIVE official training images (20), random crops of 3-30 % of the area",
    "mixed": "all five training sets above together",
}
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "tools" / "results"
CHECKPOINTS = ROOT / "hyperinit" / "checkpoints"


def _config(modality: str, args: argparse.Namespace) -> TrainConfig:
    fundus = modality == "fundus"
    return TrainConfig(
        modality=modality,
        objective=args.objective,
        steps=args.steps,
        meta_batch=2,
        batch_size=32,
        image_size=args.image_size,
        load_size=192 if fundus else 80,
        crop_scale=(0.03, 0.3) if fundus else (0.35, 1.0),
        max_params=1_500_000,
        lr=args.lr,
        warmup=args.warmup,
        init=str(Path(args.init_dir) / modality) if args.init_dir else None,
        structured_fraction=None if args.init_dir else args.structured_fraction,
        max_structured_share=args.max_structured_share,
        inner_steps=args.inner_steps,
        inner_lr=args.inner_lr,
        scale_range=args.scale_range,
        checkpoint_every=50,
        out=str(Path(args.runs) / modality),
        time_limit_s=args.time_limit,
        seed=0,
    )


def _continued_from(folder: Path) -> dict:
    """What the checkpoint a run continued from was (recorded in the new one's config.json)."""
    from hyperinit.hub import sha256_file
    from hyperinit.hypernet.config import HyperInitConfig

    return {
        "checkpoint": str(folder),
        "sha256": sha256_file(folder / "model.safetensors"),
        "training": HyperInitConfig.load(folder / "config.json").training,
    }


def _eval_bank(modality: str) -> tuple[ImageBank, str]:
    if modality == "fundus":
        return ImageBank(drive_split("test").images, 192, progress=False), "DRIVE test images"
    name = EVAL_DATA[modality]
    files = load_split(name, "test").files
    return ImageBank(files[:400], 80, progress=False), f"{name} test split (labels unused)"


def _eval_specs() -> list:
    specs = [s for s in held_out_specs(include_models=False)]
    small = [s for s in specs if sum(p.numel() for p in build(s, 1).parameters()) <= 3_000_000]
    named = [s for s in held_out_specs() if s.family == "real"]
    named = [s for s in named if s.config["model"] in ("torchvision:resnet18", "timm:regnetx_002")]
    return small[:8] + named


def _self_supervised(trainer: HyperTrainer, modality: str) -> dict:
    bank, what = _eval_bank(modality)
    specs = _eval_specs()
    chans = 1 if modality in GRAY else 3
    kw = dict(in_chans=chans, batches=2, batch_size=48, image_size=trainer.config.image_size)
    ref = make_reference()
    obj = trainer.config.objective
    trained = evaluate_objective(trainer.hypernet, trainer.objective, specs, bank, **kw)
    untrained = evaluate_objective(ref, obj, specs, bank, **kw)
    probe_t = evaluate_objective(trainer.hypernet, obj, specs, bank, probe_steps=20, **kw)
    probe_u = evaluate_objective(ref, obj, specs, bank, probe_steps=20, **kw)
    rows = []
    for a, b, c, d in zip(trained, untrained, probe_t, probe_u):
        rows.append(
            {
                "arch": a["arch"],
                "family": a["family"],
                "params": a["params"],
                "trained_score": a["score"],
                "reference_score": b["score"],
                "trained_loss": a["loss"],
                "reference_loss": b["loss"],
                "probe_trained_score": c["score"],
                "probe_reference_score": d["score"],
            }
        )

    def mean(key: str) -> float:
        return statistics.mean(r[key] for r in rows)

    return {
        "images": what,
        "in_chans": chans,
        "architectures": len(rows),
        "mean": {
            k: mean(k)
            for k in (
                "trained_score",
                "reference_score",
                "trained_loss",
                "reference_loss",
                "probe_trained_score",
                "probe_reference_score",
            )
        },
        "trained_ahead": sum(r["trained_score"] > r["reference_score"] for r in rows),
        "probe_trained_ahead": sum(
            r["probe_trained_score"] > r["probe_reference_score"] for r in rows
        ),
        "rows": rows,
    }


def _origin(summary: dict) -> str:
    """How the run started: from the reference, or continued from an earlier checkpoint."""
    prev = summary.get("continued_from")
    if not prev:
        return "started from the reference initialisation and trained"
    t = prev.get("training") or {}
    level = "bi-level" if t.get("inner_steps") else "one-level"
    return (
        f"continued from an earlier {summary.get('modality', '')} checkpoint (sha256 "
        f"{prev['sha256'][:8]}: {t.get('steps', '?')} steps of `{t.get('objective', '?')}`, "
        f"{t.get('wall_time_s', 0):.0f} s, {level}) and trained further"
    )


def _schedule(summary: dict) -> str:
    inner = summary.get("inner_steps") or 0
    if not inner:
        return "AdamW + cosine schedule"
    return (
        f"AdamW + cosine schedule, bi-level: the loss before and after {inner} differentiable "
        f"SGD step(s) at rate {summary['inner_lr']} from the predicted weights"
    )


def _total_wall(summary: dict) -> float:
    prev = (summary.get("continued_from") or {}).get("training") or {}
    return summary["wall_time_s"] + float(prev.get("wall_time_s", 0.0))


def model_card(modality: str, summary: dict, ssl: dict, scale_range: float | None = None) -> str:
    m = ssl["mean"]
    scale = (
        f", per-weight scale learned within [1/{scale_range:g}, {scale_range:g}] of fan-in"
        if scale_range
        else ""
    )
    return f"""---
library_name: hyperinit
tags: [hypernetwork, initialization, medical-imaging, {modality}]
---
# hyperinit hypernetwork: {modality}

- **What it is**: a `HyperInitializer` (d_model=64, K=2 GNN rounds, rank-16 codes{scale}) that
  predicts initial weights for any architecture; {_origin(summary)}
  with the self-supervised objective below on {modality} images.
- **Data**: {DATA_TEXT[modality]}. No test image was used.
- **Objective**: `{summary["objective"]}` (hyperinit.training), task heads trained alongside
  and not shipped. Architectures: random draws from `hyperinit.archspace` (8 families and real
  timm / torchvision models, at most 1.5M parameters), {summary["meta_batch"]} per step;
  held-out architectures never trained on.
- **Training**: {summary["steps"]} steps of {summary["batch_size"]} images at
  {summary["image_size"]} px, {_schedule(summary)}, {summary["processes"]} process(es) on
  {summary["device"]}, wall time {summary["wall_time_s"]:.0f} s (1 CPU thread, on a shared
  2-core machine), {summary["archs_per_s"]} architectures/s.
- **Results, self-supervised task, {ssl["architectures"]} held-out architectures, no training**
  ({ssl["images"]}): score {m["trained_score"]:.3f} with this checkpoint and its head vs
  {m["reference_score"]:.3f} for the untrained reference (fresh head); with a head fitted on
  frozen predicted features (20 steps): {m["probe_trained_score"]:.3f} vs
  {m["probe_reference_score"]:.3f}. Trained ahead on {ssl["trained_ahead"]} /
  {ssl["architectures"]} architectures ({ssl["probe_trained_ahead"]} / {ssl["architectures"]}
  with the fitted head).
- **Downstream**: see `tools/results/downstream_{modality}.md` in the hyperinit repository.
- **Caveat**: {_total_wall(summary) / 60:.0f} minutes of CPU training in all; the budget of the
  seed paper is 50 epochs on a GPU.
"""


def fix_cards(export_dir: Path = CHECKPOINTS) -> None:
    """Say in each model card how much of the schedule ran (README.md is not pinned)."""
    import re

    for modality in MODALITIES:
        res, card = RESULTS / f"train_{modality}.json", export_dir / modality / "README.md"
        if not (res.exists() and card.exists()):
            continue
        r = json.loads(res.read_text())
        t, cfg = r["training"], r["config"]
        note = f"{t['steps']} steps"
        if t["steps"] < cfg["steps"]:
            note += (
                f" (of a {cfg['steps']}-step cosine schedule, stopped at the "
                f"{cfg['time_limit_s']:.0f} s time limit)"
            )
        text = re.sub(
            r"- \*\*Training\*\*: \d+ steps( \(of a [^)]*\))?",
            f"- **Training**: {note}",
            card.read_text(),
        )
        card.write_text(text)


def register(export_dir: Path = CHECKPOINTS) -> dict:
    """Pin every exported modality checkpoint in hyperinit/modalities.json (``trained``)."""
    from hyperinit.hub import sha256_file

    pins = {}
    for modality in MODALITIES:
        folder = export_dir / modality
        if (folder / "model.safetensors").is_file() and (
            RESULTS / f"train_{modality}.json"
        ).exists():
            sha = {n: sha256_file(folder / n) for n in ("config.json", "model.safetensors")}
            date = json.loads((RESULTS / f"train_{modality}.json").read_text()).get("date", "")
            pins[modality] = (sha, date or time.strftime("%Y-%m-%d"))
    src = ROOT / "hyperinit" / "modalities.json"
    data = json.loads(src.read_text())
    data["trained"] = {m: {"sha256": sha, "date": date} for m, (sha, date) in pins.items()}
    src.write_text(json.dumps(data, indent=2) + "\n")
    return pins


def main() -> None:
    global RESULTS
    p = argparse.ArgumentParser()
    p.add_argument("--objective", default="rotation+c2l")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--image-size", type=int, default=48)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--structured-fraction", type=float, default=0.5)
    p.add_argument("--max-structured-share", type=float, default=None)
    p.add_argument("--warmup", type=int, default=20, help="warmup steps")
    p.add_argument(
        "--init-dir",
        default=None,
        help="continue from the checkpoints in INIT_DIR/<modality> (keeps their structured share)",
    )
    p.add_argument("--inner-steps", type=int, default=0, help="bi-level: inner SGD steps")
    p.add_argument("--inner-lr", type=float, default=0.1, help="bi-level: inner SGD rate")
    p.add_argument("--scale-range", type=float, default=None, help="learned weight scale range")
    p.add_argument("--time-limit", type=float, default=600.0, help="per modality, seconds")
    p.add_argument("--runs", default=str(ROOT / "runs" / "modalities"))
    p.add_argument("--export-dir", default=str(CHECKPOINTS))
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument(
        "--results", default=str(RESULTS), help="where train_<modality>.json and the summary go"
    )
    p.add_argument("--register", action="store_true", help="only pin exported checkpoints")
    args = p.parse_args()
    RESULTS = Path(args.results)
    if args.register:
        print(json.dumps(register(Path(args.export_dir)), indent=2))
        fix_cards(Path(args.export_dir))
        write_summary()
        return
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    for modality in args.only or MODALITIES:
        result_path = RESULTS / f"train_{modality}.json"
        if result_path.exists():
            logging.info("%s: done before (%s)", modality, result_path)
            continue
        t0 = time.perf_counter()
        trainer = HyperTrainer(_config(modality, args))
        hypernet = trainer.fit()
        summary = trainer.training_summary()
        summary["finished"] = trainer.step >= args.steps
        summary["modality"] = modality
        if args.init_dir:
            summary["continued_from"] = _continued_from(Path(args.init_dir) / modality)
        hypernet.config.modality = modality
        hypernet.config.training = summary
        ssl = _self_supervised(trainer, modality)
        export = Path(args.export_dir) / modality
        card = model_card(modality, summary, ssl, hypernet.config.scale_range)
        hypernet.save_pretrained(export, model_card=card)
        rows = trainer.history
        result = {
            "modality": modality,
            "config": trainer.config.to_dict(),
            "training": summary,
            "first_rows": rows[:3],
            "last_rows": rows[-3:],
            "self_supervised_held_out": ssl,
            "script_wall_s": time.perf_counter() - t0,
            "date": time.strftime("%Y-%m-%d"),
        }
        result_path.write_text(json.dumps(result, indent=2, default=str) + "\n")
        logging.info("%s: %s", modality, json.dumps(ssl["mean"]))
        trainer.close()
    write_summary()


def write_summary() -> None:
    rows = []
    for modality in MODALITIES:
        path = RESULTS / f"train_{modality}.json"
        if path.exists():
            rows.append(json.loads(path.read_text()))
    lines = [
        "# Hypernetwork training: throughput, wall time, self-supervised score",
        "",
        "`python tools/train_modalities.py` (1 CPU thread each, on a 2-core machine "
        "shared with other jobs, so times are upper bounds). Score: the objective's accuracy "
        "on test-split images, predicted held-out architectures, no training of those "
        "networks; trained = this checkpoint with its task head, reference = the untrained "
        "reference hypernetwork with a fresh head; probe = a fresh head fitted for 20 steps "
        "on frozen features. archs/s and images/s (image forwards through predicted networks: "
        "architectures x images x views) from the median step time. A checkpoint continued "
        "from an earlier one lists both runs' steps (first + second) and their summed wall "
        "time; archs/s and images/s are the second run's (bi-level steps cost more).",
        "",
        "| modality | objective | steps | wall s | archs/s | images/s | score trained | score "
        "reference | probe trained | probe reference | trained ahead |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t, m = r["training"], r["self_supervised_held_out"]["mean"]
        ssl = r["self_supervised_held_out"]
        last = r["last_rows"][-1]  # image forwards per step (archs x images x views)
        per_step = float(last["images_per_s"]) * float(last["step_s"])
        ips = per_step / t["median_step_s"]
        prev = (t.get("continued_from") or {}).get("training")
        steps = f"{prev['steps']} + {t['steps']}" if prev else str(t["steps"])
        if t.get("inner_steps"):
            steps += " bi-level"
        lines.append(
            f"| {r['modality']} | {t['objective']} | {steps} | {_total_wall(t):.0f} | "
            f"{t['archs_per_s']} | {ips:.0f} | {m['trained_score']:.3f} | "
            f"{m['reference_score']:.3f} | {m['probe_trained_score']:.3f} | "
            f"{m['probe_reference_score']:.3f} | {ssl['trained_ahead']}/{ssl['architectures']} |"
        )
    (RESULTS / "train_summary.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "train_summary.json").write_text(
        json.dumps([{k: r[k] for k in ("modality", "training")} for r in rows], indent=2) + "\n"
    )


if __name__ == "__main__":
    main()

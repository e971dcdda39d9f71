"""Does distilling a modality teacher into the hypernetwork make the learned part show?

The panel found the trained xray checkpoint level with the untrained reference run through the
same prediction settings: what the self-supervised objective (``rotation+c2l``) teaches the
hypernetwork does not reach fine-tuning. This replaces the objective by feature distillation
(``hyperinit.training.distill``, objective ``"distill"``): a ResNet-18 pretrained with C2L on the
unlabelled chest X-ray training images is the teacher, and every predicted network is trained
to match its features at three relative depths by linear CKA.

Both objectives train the hypernetwork from the reference, with the shipped prediction
settings, for the same wall time on one CPU core (the shipped xray checkpoint's 451 s), seed 0.
Each result is compared with default init, the untrained reference and the shipped xray
checkpoint on the panel's protocol (chest X-ray, 10 % of the labels, 5 epochs, 64 px; cells
keyed as ``benchmarks/panel.py``'s, so those inits are read from its committed cells), paired
by seed. The choice is made on the validation score (best epoch); test is reported beside it.

    hyperinit c2l --data ../shared/data/chest_xray_kermany/train --model timm:resnet18 \
        --in-chans 1 --image-size 64 --epochs 15 --batch-size 64 --queue-size 4096 \
        --momentum 0.99 --num-workers 0 --out runs/teachers/xray_resnet18 --resume
    OMP_NUM_THREADS=1 python research/distillation/distillation.py --train distill
    OMP_NUM_THREADS=1 python research/distillation/distillation.py --train rotation+c2l
    OMP_NUM_THREADS=1 python research/distillation/distillation.py --seeds 6

Training resumes after a kill (``runs/distillation/<objective>``), snapshots the hypernetwork
every 50 steps and exports the last state to ``checkpoints/<objective>/`` beside this file
(committed). Every snapshot is then scored by the downstream proxy
(``hyperinit.training.proxy``: a ridge probe of the frozen features of 8 held-out generated
architectures on the chest X-ray validation labels); when the best is not the last it is
exported too (``checkpoints/<objective>_probe/``), so "selected by the proxy" and "last" are
both compared. Finished cells are cached in ``cells/``. Writes ``distillation.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import timm
import torch

from hyperinit.bench.quick import checkpoint_dir
from hyperinit.bench.variants import collect, variant_table
from hyperinit.c2l import strip_head
from hyperinit.hypernet.model import HyperInitializer
from hyperinit.training import (
    HyperTrainer,
    ProbeData,
    TrainConfig,
    probe_score,
    select_snapshot,
)
from hyperinit.training.data import normalize
from hyperinit.training.distill import load_teacher
from hyperinit.training.proxy import ridge_probe_auc

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PANEL_CELLS = ROOT / "benchmarks" / "results" / "panel"  # its cells/ holds the cells
CACHE = ROOT / "runs" / "downstream_cache"
TEACHER = ROOT / "runs" / "teachers" / "xray_resnet18"
TASK = "chest_xray"
#: the shipped xray checkpoint's training wall time (its config.json), for equal CPU time
WALL_S = 451.2
ARCHS = ("ResNet-18", "RegNetX-200MF", "MobileNetV3-S", "MobileNetV3-L", "EfficientNet-B0")
ARCHS += ("DeiT-Tiny",)
OBJECTIVES = ("rotation+c2l", "distill")


def train(objective: str, teacher: Path) -> Path:
    """Train (or resume) the hypernetwork with ``objective``; returns its exported folder."""
    out = HERE / "checkpoints" / objective.replace("+", "_")
    if (out / "config.json").is_file():
        return out
    options = {"distill": {"teacher": str(teacher), "teacher_model": "timm:resnet18"}}
    config = TrainConfig(
        modality="xray",
        objective=objective,
        objective_options={k: v for k, v in options.items() if k in objective.split("+")},
        steps=500,
        time_limit_s=WALL_S,
        seed=0,
        init=str(checkpoint_dir("reference")),  # the shipped prediction settings
        snapshot_every=50,
        out=str(ROOT / "runs" / "distillation" / objective),
    )
    trainer = HyperTrainer(config)
    hypernet = trainer.fit()
    last = trainer.save_snapshot()  # the final state is a snapshot too
    finished = trainer.step >= config.steps
    hypernet.config.training = {**trainer.training_summary(), "finished": finished}
    hypernet.config.modality = "xray"
    hypernet.save_pretrained(out, model_card=hypernet.model_card())
    logging.info("%s: %d steps in %.0f s -> %s", objective, trainer.step, trainer.elapsed, out)
    write_scores(out.name, trainer.history)
    best, rows = select_snapshot(trainer.out, probe_data())
    (HERE / "checkpoints" / f"probe_{out.name}.json").write_text(json.dumps(rows, indent=1) + "\n")
    if best != last:
        chosen = HyperInitializer.from_pretrained(str(best))
        chosen.save_pretrained(out.with_name(out.name + "_probe"), model_card=chosen.model_card())
    return out


def write_scores(name: str, history: list[dict]) -> None:
    """The mean logged objective score over the first and the second half of a run's logged
    steps (each step draws other architectures, so single rows are noisy), beside its
    checkpoint."""
    scores = [float(r["score"]) for r in history]
    half = len(scores) // 2
    summary = {
        "logged_steps": len(scores),
        "first_half": sum(scores[:half]) / half,
        "second_half": sum(scores[half:]) / (len(scores) - half),
    }
    (HERE / "checkpoints" / f"scores_{name}.json").write_text(json.dumps(summary, indent=1) + "\n")


def probe_data() -> ProbeData:
    """The probe's labelled images: chest X-ray validation images (never test images)."""
    return ProbeData.from_task(TASK, size=48, limit=523, cache_dir=CACHE)


def inits(seed: int = 0, arch: str = "") -> dict[str, tuple[str, None, Path]]:
    """Name -> (hyperinit: init, no name, cells folder) of every init compared."""
    out = {
        "default": ("default", None, PANEL_CELLS),
        "reference": (f"hyperinit:{checkpoint_dir('reference')}", None, PANEL_CELLS),
        "shipped xray (rotation+c2l)": (f"hyperinit:{checkpoint_dir('xray')}", None, PANEL_CELLS),
    }
    for objective in OBJECTIVES:
        for suffix, label in (("", "last"), ("_probe", "probe-selected")):
            folder = HERE / "checkpoints" / (objective.replace("+", "_") + suffix)
            if folder.is_dir():
                out[f"{objective} ({label})"] = (f"hyperinit:{folder}", None, HERE / "cells")
    return out


def training_rows() -> list[str]:
    lines = [
        "| objective | steps | wall s | median step s | mean logged score: first half → second |"
    ]
    lines.append("|---|---|---|---|---|")
    for objective in OBJECTIVES:
        name = objective.replace("+", "_")
        cfg = HERE / "checkpoints" / name / "config.json"
        if not cfg.is_file():
            continue
        t = json.loads(cfg.read_text())["training"]
        sc = json.loads((HERE / "checkpoints" / f"scores_{name}.json").read_text())
        lines.append(
            f"| {objective} | {t['steps']} | {t['wall_time_s']} | {t['median_step_s']} "
            f"| {sc['first_half']:.3f} → {sc['second_half']:.3f} ({sc['logged_steps']} rows) |"
        )
    return lines


def teacher_rows(teacher: Path) -> list[str]:
    """The teacher's ridge-probe AUC on the probe's images, beside random-init ResNet-18s."""
    data = probe_data()
    x = normalize(data.x)

    def probe(net: torch.nn.Module) -> float:
        with torch.no_grad():
            feats = torch.cat([net.eval()(b) for b in x.split(64)])
        return ridge_probe_auc(feats, data.y, seed=0)

    lines = ["| features | probe AUC |", "|---|---|"]
    if (teacher / "config.json").is_file():
        net, _ = load_teacher(teacher, "timm:resnet18")
        lines.append(f"| C2L teacher ({teacher.name}) | {probe(net):.4f} |")
    for seed in range(3):
        torch.manual_seed(seed)
        net = strip_head(timm.create_model("resnet18", in_chans=1))
        lines.append(f"| random-init ResNet-18, seed {seed} | {probe(net):.4f} |")
    return lines


def proxy_rows() -> list[str]:
    """The probe AUC of every snapshot, and of the reference and shipped checkpoints."""
    data = probe_data()
    lines = ["| hypernetwork | step | probe AUC |", "|---|---|---|"]
    for name in ("reference", "xray"):
        hypernet = HyperInitializer.from_pretrained(str(checkpoint_dir(name)))
        score = probe_score(hypernet.eval(), data)["score"]
        lines.append(f"| {name} (shipped) | — | {score:.4f} |")
    for f in sorted((HERE / "checkpoints").glob("probe_*.json")):
        for r in json.loads(f.read_text()):
            lines.append(f"| {f.stem.removeprefix('probe_')} | {r['step']} | {r['score']:.4f} |")
    return lines


def write(rows: dict, seeds: int, teacher: Path) -> None:
    lines = [
        "# Distilling a C2L teacher into the hypernetwork (chest X-ray, 10 % labels)",
        "",
        "Commands: the module docstring. AUC; paired differences over "
        f"{seeds} seeds, mean ± standard error (seeds ahead). Validation = best epoch's "
        "validation AUC (the design criterion); test = the test AUC at that epoch.",
        "",
        "## Training (one CPU core, same wall-time budget)",
        "",
        *training_rows(),
        "",
        "## The teacher's features (ridge probe, chest X-ray validation labels)",
        "",
        *teacher_rows(teacher),
        "",
        "## Downstream proxy (chest X-ray validation labels; ridge probe, 8 held-out archs)",
        "",
        *proxy_rows(),
        "",
        "## Downstream",
        "",
        *variant_table(rows, "default", "reference"),
    ]
    control = "rotation+c2l (last)"
    if rows and control in next(iter(rows.values())):
        lines += ["", "## Against the control (same start, same wall time)", ""]
        lines += variant_table(rows, control, "shipped xray (rotation+c2l)")
    (HERE / "distillation.md").write_text("\n".join(lines) + "\n")
    (HERE / "distillation.json").write_text(json.dumps(rows, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", choices=OBJECTIVES, help="train this candidate, then stop")
    parser.add_argument("--teacher", type=Path, default=TEACHER, help="the C2L teacher folder")
    parser.add_argument("--seeds", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.train:
        train(args.train, args.teacher)
        return
    write(
        collect(args.seeds, ARCHS, TASK, inits, CACHE, log=logging.info), args.seeds, args.teacher
    )


if __name__ == "__main__":
    main()

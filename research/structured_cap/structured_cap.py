"""Does capping the structured share of the predicted weights help downstream?

Each predicted weight is ``cos(phi) * structured + sin(phi) * noise``; the trained checkpoints
put about half of the variance in the rank-16 structured part, which lowers the weights'
effective rank (``train_long.md``). ``HyperInitConfig.max_structured_share`` caps that share at
prediction. For every cap and modality this makes a copy of the shipped checkpoint with the cap
in its ``config.json`` (``runs/structured_cap/cap<c>/<modality>``) and fine-tunes ResNet-18 and
the two held-out architectures of ``tools/downstream_check.py`` from default init, the shipped
checkpoint and the capped copy, paired by seed (``hyperinit.bench.quick.compare_checkpoints``;
cells cached).

A cap is judged on the **validation** split only: the mean gain of its best-epoch validation
score over the uncapped checkpoint's, over the classification tasks and the three
architectures (with its standard error; the test gain is reported beside it). DRIVE has no
validation split (the runner validates on test), so fundus is reported but not used to judge.
Writes ``structured_cap.{json,md,png}`` beside this script.

    python research/structured_cap/structured_cap.py --caps 0.25 0.1 --seeds 6
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

from hyperinit.bench.quick import (
    ARCHS,
    TASK,
    capped_checkpoint,
    checkpoint_dir,
    compare_checkpoints,
)
from hyperinit.bench.stats import SPIKE, mean_se
from hyperinit.bench.tasks import get_task

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent
WORK = ROOT / "runs" / "structured_cap"
CELLS = ROOT / "runs" / "downstream"
DATA_CACHE = ROOT / "runs" / "downstream_cache"


def run(modalities: list[str], caps: list[float], seeds: int, cells: Path) -> dict:
    out: dict = {"caps": caps, "seeds": seeds, "archs": list(ARCHS), "modalities": {}}
    for m in modalities:
        shipped = checkpoint_dir(m)
        per_cap = {}
        for cap in caps:
            logging.info("%s: cap %g", m, cap)
            capped = capped_checkpoint(m, cap, WORK)
            per_cap[f"{cap:g}"] = compare_checkpoints(m, shipped, capped, seeds, cells, DATA_CACHE)
        task = get_task(TASK[m])
        out["modalities"][m] = {
            "task": task.name,
            "metric": task.primary,
            "has_val_split": task.kind != "segmentation",
            "runs": per_cap,
        }
    return out


def _select(result: dict) -> dict:
    """Validation gain of each cap over the uncapped checkpoint (classification tasks; mean and
    standard error over task x architecture pairs), and the test gain over all pairs."""
    val: dict[str, list[float]] = {f"{c:g}": [] for c in result["caps"]}
    test: dict[str, list[float]] = {f"{c:g}": [] for c in result["caps"]}
    for info in result["modalities"].values():
        for cap, r in info["runs"].items():
            test[cap] += [row["b_minus_a"] for row in r["rows"]]
            if info["has_val_split"]:
                val[cap] += [row["val"]["B"] - row["val"]["A"] for row in r["rows"]]
    val_gain = {c: mean_se(v) for c, v in val.items() if v}
    best = max(val_gain, key=lambda c: val_gain[c][0]) if val_gain else None
    return {
        "val_gain_over_uncapped": val_gain,
        "test_gain_over_uncapped": {c: mean_se(v) for c, v in test.items() if v},
        "n_pairs": {c: len(v) for c, v in val.items()},
        "best_on_val": best if best is not None and val_gain[best][0] > 0 else None,
    }


def write(result: dict) -> None:
    result["selection"] = _select(result)
    (RESULTS / "structured_cap.json").write_text(json.dumps(result, indent=2) + "\n")
    caps = [f"{c:g}" for c in result["caps"]]
    sel = result["selection"]
    lines = [
        "# Capping the structured share of predicted weights",
        "",
        f"10 % of the labels, 5 epochs, {result['seeds']} seeds paired by seed, test metric "
        "(epoch with the best validation score); uncapped = the shipped checkpoint, cap c = the "
        "same weights with `max_structured_share = c`. "
        f"`python research/structured_cap/structured_cap.py --caps {' '.join(caps)} "
        f"--seeds {result['seeds']}`.",
        "",
        "Judged on the validation split only (classification tasks; DRIVE validates on its "
        "test images, so it is not used). Gain over uncapped, mean ± standard error over "
        "task × architecture pairs: "
        + "; ".join(
            f"cap {c}: validation {g:+.4f} ± {se:.4f} (n={sel['n_pairs'][c]}), test "
            f"{sel['test_gain_over_uncapped'][c][0]:+.4f} ± "
            f"{sel['test_gain_over_uncapped'][c][1]:.4f}"
            for c, (g, se) in sel["val_gain_over_uncapped"].items()
        )
        + ". Best on validation: "
        + (f"cap {sel['best_on_val']}" if sel["best_on_val"] else "no cap")
        + ".",
        "",
        "| modality | task | architecture | default | uncapped | "
        + " | ".join(f"cap {c}" for c in caps)
        + " | "
        + " | ".join(f"cap {c} − uncapped (better in)" for c in caps)
        + " |",
        "|---|---|---|---|---|" + "---|" * (2 * len(caps)),
    ]
    for m, info in result["modalities"].items():
        first = info["runs"][caps[0]]
        for i, arch in enumerate(ARCHS):
            base = first["rows"][i]
            cells = [f"{base[k]['mean']:.3f}" for k in ("default", "A")]
            cells += [f"{info['runs'][c]['rows'][i]['B']['mean']:.3f}" for c in caps]
            cells += [
                f"{info['runs'][c]['rows'][i]['b_minus_a']:+.3f} "
                f"({info['runs'][c]['rows'][i]['b_better']}/{result['seeds']})"
                for c in caps
            ]
            lines.append(f"| {m} | {info['task']} | {arch.split(':')[1]} | " + " | ".join(cells))
    lines += ["", "Ahead of default init (test mean), by architecture:", ""]
    for label, key in [("uncapped", None)] + [(f"cap {c}", c) for c in caps]:
        counts = []
        for i, arch in enumerate(ARCHS):
            ahead = 0
            for info in result["modalities"].values():
                row = info["runs"][caps[0] if key is None else key]["rows"][i]
                score = row["A"]["mean"] if key is None else row["B"]["mean"]
                ahead += score > row["default"]["mean"]
            counts.append(f"{arch.split(':')[1]} {ahead}/{len(result['modalities'])}")
        lines.append(f"- {label}: " + ", ".join(counts))
    lines += [
        "",
        f"Fine-tuning runs with a loss spike (an epoch's training loss over {SPIKE}x the "
        "previous epoch's), all modalities:",
        "",
    ]
    for i, arch in enumerate(ARCHS):
        parts = []
        infos = list(result["modalities"].values())
        runs = len(infos) * result["seeds"]
        for label, cap, side in [("default", caps[0], "default"), ("uncapped", caps[0], "A")] + [
            (f"cap {c}", c, "B") for c in caps
        ]:
            n = sum(info["runs"][cap]["rows"][i]["loss_spikes"][side] for info in infos)
            parts.append(f"{label} {n}/{runs}")
        lines.append(f"- {arch.split(':')[1]}: " + ", ".join(parts))
    (RESULTS / "structured_cap.md").write_text("\n".join(lines) + "\n")
    _plot(result)


def _plot(result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    caps = [f"{c:g}" for c in result["caps"]]
    mods = list(result["modalities"])
    fig, axes = plt.subplots(1, len(ARCHS), figsize=(4 * len(ARCHS), 3.4), sharey=True)
    for i, (ax, arch) in enumerate(zip(axes, ARCHS)):
        labels = ["uncapped"] + [f"cap {c}" for c in caps]
        width = 0.8 / len(labels)
        for j, label in enumerate(labels):
            ys = []
            for m in mods:
                runs = result["modalities"][m]["runs"]
                row = runs[caps[0] if j == 0 else caps[j - 1]]["rows"][i]
                score = row["A"]["mean"] if j == 0 else row["B"]["mean"]
                ys.append(score - row["default"]["mean"])
            xs = [k + (j - (len(labels) - 1) / 2) * width for k in range(len(mods))]
            ax.bar(xs, ys, width, color=f"C{j}", label=label)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(range(len(mods)), mods, rotation=30, fontsize=8)
        ax.set_title(arch.split(":")[1], fontsize=9)
    axes[0].set_ylabel("test score − default init")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / "structured_cap.png", dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--modalities", nargs="*", default=list(TASK))
    p.add_argument("--caps", nargs="+", type=float, default=[0.25])
    p.add_argument("--seeds", type=int, default=6)
    p.add_argument("--cells", type=Path, default=CELLS, help="cell cache (default runs/downstream)")
    p.add_argument("--no-write", action="store_true", help="run cells only (parallel workers)")
    args = p.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    result = run(args.modalities, args.caps, args.seeds, args.cells)
    if not args.no_write:
        write(result)


if __name__ == "__main__":
    main()

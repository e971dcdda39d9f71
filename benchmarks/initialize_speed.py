"""How long hyperinit takes, against building the same model with default init.

For each model, in the same process and interleaved run by run: (a) ``timm.create_model`` with
its default initialisation (the baseline); (b) ``hyperinit.create_model("timm:NAME",
modality="xray")``, which builds the model without paying for default init, traces it,
predicts its parameters and gives only the kept ones (the head) their default init; (c) the
plain ``hyperinit.initialize()`` on an already built model, with its trace / predict / assign
breakdown from the report. Medians of N runs after one warm-up. Writes
benchmarks/results/initialize_speed.{json,md,png}.

    python benchmarks/initialize_speed.py            # 2 threads, 7 repeats
    python benchmarks/initialize_speed.py --repeats 5 --threads 1

Run it on a quiet machine: torch's OpenMP threads spin when another process holds a core, which
slows small operations by up to 100x.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import time
from pathlib import Path

import timm
import torch

import hyperinit
from hyperinit.initialize import load_hypernetwork

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = [
    "resnet18",
    "resnet50",
    "densenet121",
    "regnety_016",
    "efficientnet_b0",
    "convnext_tiny",
    "vit_base_patch16_224",
    "swin_tiny_patch4_window7_224",
]


def measure(name: str, repeats: int) -> dict:
    load_hypernetwork("xray")  # loaded once per process, as in real use
    runs: dict[str, list[float]] = {
        k: []
        for k in ("default", "create", "create_build", "trace", "predict", "assign", "initialize")
    }
    for i in range(repeats + 1):  # the first run warms caches and is discarded
        t0 = time.perf_counter()
        model = timm.create_model(name, num_classes=2)
        t1 = time.perf_counter()
        _, fast = hyperinit.create_model(
            f"timm:{name}", num_classes=2, modality="xray", seed=i, return_report=True
        )
        t2 = time.perf_counter()
        report = hyperinit.initialize(model, seed=i)
        t3 = time.perf_counter()
        if i == 0:
            continue
        runs["default"].append(t1 - t0)
        runs["create"].append(t2 - t1)
        runs["create_build"].append(t2 - t1 - fast.timings["total"])
        runs["initialize"].append(t3 - t2)
        for key in ("trace", "predict", "assign"):
            runs[key].append(report.timings[key])
    med = statistics.median
    row = {
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "nodes": report.graph["nodes"],
        "default_init_s": med(runs["default"]),
        "create_model_s": med(runs["create"]),
        "create_build_s": med(runs["create_build"]),
        "trace_s": med(runs["trace"]),
        "predict_s": med(runs["predict"]),
        "assign_s": med(runs["assign"]),
        "initialize_total_s": med(runs["initialize"]),
        "runs": runs,
    }
    row["trace_plus_predict_s"] = row["trace_s"] + row["predict_s"]
    # per run, then the median: both sides of each ratio come from the same moment
    row["ratio_vs_default_init"] = med(c / d for c, d in zip(runs["create"], runs["default"]))
    return row


def write(rows: list[dict], args: argparse.Namespace) -> None:
    meta = {
        "threads": args.threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "cpu": platform.processor() or platform.machine(),
        "hypernetwork": "embedded xray checkpoint (speed does not depend on training)",
    }
    (RESULTS / "initialize_speed.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n"
    )
    lines = [
        "# initialize() speed",
        "",
        f"Command: `python benchmarks/initialize_speed.py --threads {args.threads} --repeats "
        f"{args.repeats}`; medians of {args.repeats} runs after one warm-up, CPU, "
        f"{args.threads} threads, torch {torch.__version__}, timm {timm.__version__}.",
        "Baseline: `timm.create_model(name)` with its default initialisation, interleaved run "
        "by run with `hyperinit.create_model('timm:name', modality='xray')` (build without "
        "default init, trace, predict, default init of the kept head only); the ratio is the "
        "median of the per-run ratios. The last four columns are the plain `initialize()` on "
        "an already built model.",
        "",
        "| model | params | nodes | timm default init (s) | hyperinit.create_model (s) "
        "| of which build (s) | ratio | initialize(): trace (s) | predict (s) | assign (s) "
        "| total (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.1f}M | {r['nodes']} | "
            f"{r['default_init_s']:.3f} | {r['create_model_s']:.3f} | "
            f"{r['create_build_s']:.3f} | {r['ratio_vs_default_init']:.2f}x | "
            f"{r['trace_s']:.3f} | {r['predict_s']:.3f} | {r['assign_s']:.4f} | "
            f"{r['initialize_total_s']:.3f} |"
        )
    slower = [r["model"] for r in rows if r["ratio_vs_default_init"] >= 1.0]
    lines += [
        "",
        "Goal: `hyperinit.create_model` faster than timm's default init for every model: "
        + ("met." if not slower else f"missed for {', '.join(slower)}."),
    ]
    r50 = next((r for r in rows if r["model"] == "resnet50"), None)
    if r50:
        verdict = "met" if r50["initialize_total_s"] < 0.15 else "missed"
        lines.append(
            f"Goal: `initialize()` of ResNet-50 under 0.15 s: {r50['initialize_total_s']:.3f} s "
            f"({verdict})."
        )
    (RESULTS / "initialize_speed.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = list(range(len(rows)))
    ax.bar(
        [i - 0.2 for i in x], [r["default_init_s"] for r in rows], 0.4, label="timm, default init"
    )
    bottom = [0.0] * len(rows)
    parts = [("create_build_s", "hyperinit: build"), ("trace_s", "trace"), ("predict_s", "predict")]
    for key, label in parts:
        values = [r[key] for r in rows]
        ax.bar([i + 0.2 for i in x], values, 0.4, bottom=bottom, label=label)
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xticks(x, [r["model"].split("_patch")[0] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("seconds (median)")
    ax.set_title(f"hyperinit.create_model vs timm default init, CPU, {args.threads} threads")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "initialize_speed.png", dpi=120)


def main() -> None:
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)"
    )
    args = parser.parse_args()
    RESULTS = args.out
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.ERROR)
    rows = []
    for name in args.models:
        rows.append(measure(name, args.repeats))
        logging.getLogger(__name__).error("%s done", name)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write(rows, args)
    print((RESULTS / "initialize_speed.md").read_text())


if __name__ == "__main__":
    main()

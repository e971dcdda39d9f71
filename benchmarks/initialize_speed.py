"""How long hyperinit.initialize takes, against building the same model with default init.

For each model: the median of N runs of (a) constructing it with timm's default
initialisation (the baseline), (b) tracing it, (c) predicting its parameters (GNN + decoder),
(d) writing them in, all in the same process and run. Writes
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
from hyperinit.initialize import _assign, _trace_all_branches

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
    hn, _ = hyperinit.load_hypernetwork("xray")
    create, trace, predict, assign, total = [], [], [], [], []
    for i in range(repeats + 1):  # the first run warms caches and is discarded
        t0 = time.perf_counter()
        model = timm.create_model(name, num_classes=2)
        t1 = time.perf_counter()
        graph = _trace_all_branches(model, None, hn.config.s_max)
        t2 = time.perf_counter()
        with torch.no_grad():
            preds = hn.predict_params(graph, seed=i)
        t3 = time.perf_counter()
        _assign(model, preds)
        t4 = time.perf_counter()
        # the public call end to end (includes head selection and the report)
        t5 = time.perf_counter()
        report = hyperinit.initialize(model, seed=i)
        t6 = time.perf_counter()
        if i == 0:
            continue
        create.append(t1 - t0)
        trace.append(t2 - t1)
        predict.append(t3 - t2)
        assign.append(t4 - t3)
        total.append(t6 - t5)
    med = statistics.median
    row = {
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "nodes": report.graph["nodes"],
        "default_init_s": med(create),
        "trace_s": med(trace),
        "predict_s": med(predict),
        "assign_s": med(assign),
        "initialize_total_s": med(total),
        "runs": {"create": create, "trace": trace, "predict": predict, "initialize": total},
    }
    row["trace_plus_predict_s"] = row["trace_s"] + row["predict_s"]
    row["ratio_vs_default_init"] = row["trace_plus_predict_s"] / row["default_init_s"]
    return row


def write(rows: list[dict], args: argparse.Namespace) -> None:
    meta = {
        "threads": args.threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "cpu": platform.processor() or platform.machine(),
        "hypernetwork": "embedded reference (untrained; speed does not depend on training)",
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
        "Baseline: constructing the same timm model (its default initialisation), same run.",
        "",
        "| model | params | nodes | default init (s) | trace (s) | predict (s) | assign (s) "
        "| trace+predict (s) | ratio vs default | initialize() total (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.1f}M | {r['nodes']} | "
            f"{r['default_init_s']:.3f} | {r['trace_s']:.3f} | {r['predict_s']:.3f} | "
            f"{r['assign_s']:.4f} | {r['trace_plus_predict_s']:.3f} | "
            f"{r['ratio_vs_default_init']:.2f}x | {r['initialize_total_s']:.3f} |"
        )
    r50 = next((r for r in rows if r["model"] == "resnet50"), None)
    if r50:
        verdict = "met" if r50["trace_plus_predict_s"] <= 0.15 else "missed"
        lines += [
            "",
            f"Goal: ResNet-50 trace + predict within 0.15 s on 2 cores: "
            f"{r50['trace_plus_predict_s']:.3f} s ({verdict}).",
            "For scale (DESIGN.md, same machine kind, not rerun here): GHN-2 about 0.6 s, "
            "GHN-3-T about 1.2 s for ResNet-50.",
        ]
    (RESULTS / "initialize_speed.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["default_init_s"] for r in rows], 0.4, label="default init")
    ax.bar([i + 0.2 for i in x], [r["trace_s"] for r in rows], 0.4, label="hyperinit trace")
    ax.bar(
        [i + 0.2 for i in x],
        [r["predict_s"] for r in rows],
        0.4,
        bottom=[r["trace_s"] for r in rows],
        label="hyperinit predict",
    )
    ax.set_xticks(list(x), [r["model"].split("_patch")[0] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("seconds (median)")
    ax.set_title(f"initialize() vs default init, CPU, {args.threads} threads")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "initialize_speed.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="*", default=MODELS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.ERROR)
    rows = []
    for name in args.models:
        rows.append(measure(name, args.repeats))
        logging.getLogger(__name__).error("%s done", name)
    RESULTS.mkdir(exist_ok=True)
    write(rows, args)
    print((RESULTS / "initialize_speed.md").read_text())


if __name__ == "__main__":
    main()

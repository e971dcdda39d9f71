"""Acceptance sweep: trace + initialize every torchvision classification model and >= 300 timm
models spanning all timm families, then check coverage, finiteness and activation scale.

For each model (train mode, batch statistics, four real chest X-rays from the data folder at a
small size where the model allows it):
  * at least 95 % of the non-head parameter elements predicted, all finite;
  * a forward pass after initialisation is finite, and no parameterised layer pushes the
    activation std out of [0.05, 20] x the input's (hyperinit.diagnostics.band_violations,
    compared with PyTorch's/timm's default init of the same model on the same input).

Resumable: each finished model is appended to benchmarks/results/cache/model_sweep.jsonl and
never rerun. Writes benchmarks/results/model_sweep.{json,md,png}.

    python benchmarks/model_sweep.py                 # everything (about 40 min, one process)
    python benchmarks/model_sweep.py --limit 80      # the torchvision models only
    python benchmarks/model_sweep.py --summary-only  # rebuild the report from the cache

samvit_base_patch16 (1024 px input, global attention) needs several minutes per forward pass on
one thread; the committed run stopped it after 150 s and records it as a failure.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import sys
import time
import traceback
from pathlib import Path

import timm
import torch
import torchvision
from tqdm import tqdm

import hyperinit
from hyperinit.data import data_root
from hyperinit.diagnostics import activation_stats, band_violations
from hyperinit.graph import default_example_input

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = RESULTS / "cache" / "model_sweep.jsonl"
PER_FAMILY = 4
MAX_PARAMS = 120e6
TORCHVISION_224 = {"vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14", "maxvit_t"}


def timm_selection(per_family: int = PER_FAMILY) -> list[tuple[str, str, int]]:
    """The smallest models (by parameter count, built on the meta device) of every timm
    module, up to ``per_family`` each and at most MAX_PARAMS parameters."""
    chosen = []
    for module in timm.list_modules():
        sized = []
        for name in timm.list_models(module=module):
            try:
                with torch.device("meta"):
                    m = timm.create_model(name, num_classes=2)
                n = sum(p.numel() for p in m.parameters())
            except Exception:
                n = math.inf
            sized.append((n, name))
        sized.sort()
        for n, name in sized[:per_family]:
            if n <= MAX_PARAMS:
                chosen.append((module, name, n))
    return chosen


_IMAGES: dict[tuple[int, ...], torch.Tensor] = {}


def real_images(shape: tuple[int, ...], n: int = 4) -> torch.Tensor:
    """``n`` real chest X-rays (2 normal, 2 pneumonia) resized to ``shape`` = (C, H, W),
    grayscale repeated over the channels, standardised to mean 0 and std 1."""
    if shape not in _IMAGES:
        from PIL import Image

        c, h, w = shape
        root = data_root() / "chest_xray_kermany" / "train"
        files = sorted((root / "NORMAL").glob("*.jpeg"))[: n // 2]
        files += sorted((root / "PNEUMONIA").glob("*.jpeg"))[: n - n // 2]
        imgs = [
            torch.tensor(
                list(Image.open(f).convert("L").resize((w, h)).getdata()), dtype=torch.float32
            ).view(1, h, w)
            for f in files
        ]
        x = torch.stack(imgs).repeat(1, c, 1, 1)
        _IMAGES[shape] = (x - x.mean()) / x.std()
    return _IMAGES[shape].clone()


def _example(source: str, name: str, model: torch.nn.Module) -> torch.Tensor:
    if source == "torchvision":
        size = 224 if name in TORCHVISION_224 else 299 if name == "inception_v3" else 64
        return real_images((3, size, size))
    shape = tuple(default_example_input(model).shape[1:])
    return real_images(shape) if len(shape) == 3 else torch.randn(4, *shape)


#: ``checkpoint`` of cached rows written before the sweep recorded it: they were all measured
#: with the untrained reference hypernetwork, before trained checkpoints shipped.
OLD_ROWS = "reference (untrained)"


def checkpoint() -> str:
    """sha256 prefix of the hypernetwork ``initialize()`` uses by default (the xray one)."""
    from hyperinit.bench.inits import hypernet_version

    return hypernet_version("hyperinit:xray", "xray")


def check(source: str, name: str) -> dict:
    torch.manual_seed(0)
    row: dict = {
        "source": source,
        "name": name,
        "checkpoint": checkpoint(),
        "threads": torch.get_num_threads(),
    }
    t0 = time.perf_counter()
    model = hyperinit.create_model(f"{source}:{name}", num_classes=2).train()
    row["create_s"] = time.perf_counter() - t0
    row["params"] = sum(p.numel() for p in model.parameters())
    x = _example(source, name, model)
    row["input"] = list(x.shape)
    default = activation_stats(model, x)
    report = hyperinit.initialize(model, seed=0, example_input=x)
    row.update(
        coverage=report.coverage,
        init_s=report.timings["total"],
        timings=report.timings,
        nodes=report.graph["nodes"],
        traced_as=report.graph["traced_as"],
        kept={r: sum(1 for v in report.kept.values() if v == r) for r in set(report.kept.values())},
    )
    row["finite_params"] = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    head = {n.rsplit(".", 1)[0] for n, why in report.kept.items() if why == "head"}
    ours = activation_stats(model, x, skip=head)
    with torch.no_grad():
        out = model(x)
    outs = [t for t in torch.utils._pytree.tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
    row["finite_forward"] = all(bool(torch.isfinite(t).all()) for t in outs)
    row["violations"] = band_violations(ours, default)
    row["layers"] = len(ours)
    row["ok"] = bool(
        row["coverage"] >= 0.95
        and row["finite_params"]
        and row["finite_forward"]
        and not row["violations"]
    )
    if not row["ok"]:
        reasons = []
        if row["coverage"] < 0.95:
            reasons.append(f"coverage {row['coverage']:.3f}")
        if not row["finite_params"] or not row["finite_forward"]:
            reasons.append("non-finite")
        if row["violations"]:
            first = next(iter(row["violations"].items()))
            reasons.append(
                f"{len(row['violations'])} layers out of band, e.g. {first[0]}: {first[1]}"
            )
        row["reason"] = "; ".join(reasons)
    return row


def cached() -> dict[tuple[str, str], dict]:
    """The latest cached row per model, preferring rows measured with today's checkpoint."""
    current = checkpoint()
    rows: dict[tuple[str, str], dict] = {}
    if CACHE.exists():
        for line in CACHE.read_text().splitlines():
            r = json.loads(line)
            r.setdefault("checkpoint", OLD_ROWS)
            key = (r["source"], r["name"])
            if key not in rows or rows[key]["checkpoint"] != current:
                rows[key] = r
    return rows


def run(limit: int | None) -> list[dict]:
    """Check every model not yet checked with the current checkpoint (older rows are redone)."""
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    current = checkpoint()
    done = {k: r for k, r in cached().items() if r["checkpoint"] == current}
    todo = [
        ("torchvision", n, "torchvision")
        for n in torchvision.models.list_models(module=torchvision.models)
    ]
    todo += [("timm", name, module) for module, name, _ in timm_selection()]
    if limit:
        todo = todo[:limit]
    rows = []
    for source, name, family in tqdm(todo, desc="models", unit="model"):
        if (source, name) in done:
            rows.append(done[(source, name)])
            continue
        try:
            row = check(source, name)
        except Exception as e:
            row = {
                "source": source,
                "name": name,
                "ok": False,
                "reason": f"{type(e).__name__}: {str(e)[:300]}",
                "traceback": traceback.format_exc(limit=3)[-1500:],
            }
        row["family"] = family
        row["checkpoint"] = current
        rows.append(row)
        with CACHE.open("a") as f:
            f.write(json.dumps(row) + "\n")
        gc.collect()
    return rows


def summarise(rows: list[dict]) -> None:
    tv = [r for r in rows if r["source"] == "torchvision"]
    tm = [r for r in rows if r["source"] == "timm"]
    summary = {
        "torchvision": {"models": len(tv), "ok": sum(r["ok"] for r in tv)},
        "timm": {
            "models": len(tm),
            "ok": sum(r["ok"] for r in tm),
            "families": len({r["family"] for r in tm}),
        },
        "criteria": "coverage >= 0.95 of non-head elements, finite params and forward, no layer "
        "pushing the activation std out of [0.05, 20] x input (band_violations)",
        "torch": torch.__version__,
        "timm_version": timm.__version__,
        "torchvision_version": torchvision.__version__,
        "rows": rows,
    }
    (RESULTS / "model_sweep.json").write_text(json.dumps(summary, indent=1) + "\n")
    threads = " or ".join(str(t) for t in sorted({r.get("threads", 1) for r in rows}))
    lines = [
        "# Model sweep: trace + initialize",
        "",
        "Command: `python benchmarks/model_sweep.py` (train mode, seed 0, 4 real chest X-rays "
        f"as input, {threads} CPU thread(s) per model; torch "
        f"{torch.__version__}, torchvision {torchvision.__version__}, timm {timm.__version__}).",
        "",
        f"Criteria: {summary['criteria']}.",
        "",
        "Hypernetwork: the one `initialize()` uses by default (modality xray), named by its "
        f"sha256 prefix; today's is {checkpoint()}. Rows measured with another are from an "
        "earlier run and are redone by the next `python benchmarks/model_sweep.py`.",
        "",
        "| suite | hypernetwork | models | pass | rate |",
        "|---|---|---|---|---|",
    ]
    for key, part in (("torchvision classification", tv), ("timm (all families)", tm)):
        for ckpt in sorted({r["checkpoint"] for r in part}):
            sel = [r for r in part if r["checkpoint"] == ckpt]
            ok = sum(r["ok"] for r in sel)
            rate = 100 * ok / max(len(sel), 1)
            lines.append(f"| {key} | {ckpt} | {len(sel)} | {ok} | {rate:.1f} % |")
    lines += ["", "## Failures", "", "| model | reason |", "|---|---|"]
    lines[-2:] = ["| model | hypernetwork | reason |", "|---|---|---|"]
    for r in rows:
        if not r["ok"]:
            lines.append(
                f"| {r['source']}:{r['name']} | {r['checkpoint']} | {r.get('reason', '')} |"
            )
    cov = [r["coverage"] for r in rows if "coverage" in r]
    if cov:
        lines += ["", f"Median coverage {sorted(cov)[len(cov) // 2]:.4f}; minimum {min(cov):.4f}."]
    (RESULTS / "model_sweep.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.5))
        for ok, colour, label in ((True, "tab:blue", "pass"), (False, "tab:red", "fail")):
            pts = [(r["params"], r["init_s"]) for r in rows if r.get("ok") == ok and "init_s" in r]
            if pts:
                ax.scatter(*zip(*pts), s=12, c=colour, label=label, alpha=0.7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel("initialize() seconds (trace + predict + assign, 1 thread)")
        ax.set_title("hyperinit.initialize over torchvision + timm")
        ax.legend()
        fig.tight_layout()
        fig.savefig(RESULTS / "model_sweep.png", dpi=120)
    except ImportError:
        pass


def main() -> None:
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--summary-only", action="store_true", help="rebuild the report from the cache"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)"
    )
    args = parser.parse_args()
    RESULTS = args.out
    RESULTS.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.ERROR)
    if not args.summary_only:
        run(args.limit)
    summarise(list(cached().values()))  # models not (yet) redone keep their older rows
    print((RESULTS / "model_sweep.md").read_text())
    sys.exit(0)


if __name__ == "__main__":
    main()

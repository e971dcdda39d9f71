"""Where does a predicted init differ from the architecture's own default init, layer by layer?

For each architecture of the panel of issue #18 (ResNet-18, ResNet-50, RegNetX-200MF,
MobileNetV3-S/-L, EfficientNet-B0, DeiT-Tiny at 64 px), default init and the shipped xray
checkpoint are compared with :func:`hyperinit.init_diagnostics.compare_inits` on 32 real chest
X-rays at 64 px: weight RMS, whether a norm follows, relative gradient at step 0, effective rank,
near-duplicate filters, output scale at step 0 in train and eval mode, norm weights. Then both
are fine-tuned for one epoch on 10 % of the chest X-ray training labels (the downstream check's
recipe: SGD 0.01, momentum 0.9, weight decay 1e-4, batch 32, 64 px) and each layer's relative
movement ``||w1 - w0|| / ||w0||`` is recorded. Writes ``diagnose.{json,md}`` and one PNG per
architecture beside this script; each architecture is cached in ``cache/`` so a killed run
resumes.

    OMP_NUM_THREADS=1 python research/init_diagnostic/diagnose.py
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

import hyperinit
from hyperinit.data import load_split
from hyperinit.init_diagnostics import compare_inits

HERE = Path(__file__).resolve().parent
PANEL = {
    "ResNet-18": ("resnet18", {}),
    "ResNet-50": ("resnet50", {}),
    "RegNetX-200MF": ("regnetx_002", {}),
    "MobileNetV3-S": ("mobilenetv3_small_100", {}),
    "MobileNetV3-L": ("mobilenetv3_large_100", {}),
    "EfficientNet-B0": ("efficientnet_b0", {}),
    "DeiT-Tiny": ("deit_tiny_patch16_224", {"img_size": 64}),
}
log = logging.getLogger("diagnose")


def _data(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_split("chest_xray", "train", fraction=0.1, seed=0, channels=1)
    xs, ys = zip(*(data[i] for i in range(len(data))))
    x = F.interpolate(torch.stack(xs).float(), size=(size, size), mode="bilinear")
    return (x - x.mean()) / x.std(), torch.tensor(ys)


def _build(name: str, kwargs: dict, init: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = timm.create_model(name, in_chans=1, num_classes=2, **kwargs)
    if init == "xray":
        hyperinit.initialize(model, modality="xray", seed=seed)
    return model


def _movement(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    start = {n: p.detach().clone() for n, p in model.named_parameters() if p.dim() > 1}
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    model.train()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    for i in range(0, len(x), 32):
        idx = order[i : i + 32]
        opt.zero_grad()
        F.cross_entropy(model(x[idx]), y[idx]).backward()
        opt.step()
    params = dict(model.named_parameters())
    return {
        n.rsplit(".", 1)[0]: float((params[n].detach() - w0).norm() / w0.norm().clamp_min(1e-12))
        for n, w0 in start.items()
        if n.endswith("weight")
    }


def diagnose(label: str, x: torch.Tensor, y: torch.Tensor) -> dict:
    name, kwargs = PANEL[label]
    default, predicted = _build(name, kwargs, "default", 0), _build(name, kwargs, "xray", 0)
    batch, labels = x[:32], y[:32]
    layers, norms = compare_inits(default, predicted, batch, lambda o: F.cross_entropy(o, labels))
    t0 = time.perf_counter()
    moved = {"default": _movement(default, x, y), "xray": _movement(predicted, x, y)}
    log.info(
        "%s: %d layers, one epoch each in %.0f s", label, len(layers), time.perf_counter() - t0
    )
    rows = []
    for layer in layers:
        row = layer.to_dict()
        row["moved"] = {k: v.get(layer.name, float("nan")) for k, v in moved.items()}
        rows.append(row)
    return {"arch": label, "timm": name, "layers": rows, "norms": [n.__dict__ for n in norms]}


def summary(result: dict) -> dict:
    """The per-architecture numbers the markdown table shows."""
    med = statistics.median
    layers = result["layers"]
    normed = [r for r in layers if r["norm_after"]]
    free = [r for r in layers if not r["norm_after"]]

    def ratio(rows: list[dict], key: str) -> float:
        vals = [r["b"][key] / r["a"][key] for r in rows if r["a"][key] > 0]
        return med(vals) if vals else float("nan")

    def blown(side: str) -> int:
        return sum(1 for r in layers if not 0.05 <= r[side]["out_std_eval"] <= 20)

    zero_a = sum(1 for n in result["norms"] if n["zero_weight_share"][0] > 0.99)
    return {
        "layers": len(layers),
        "no_norm_after": len(free),
        "rms_ratio_normed": ratio(normed, "rms"),
        "rms_ratio_free": ratio(free, "rms"),
        "grad_ratio_normed": ratio(normed, "relative_grad"),
        "rank_ratio": ratio(layers, "effective_rank"),
        "dup_share_xray": med(r["b"]["duplicate_share"] for r in layers),
        "eval_out_of_band": (blown("a"), blown("b")),
        "last_eval_std": (layers[-2]["a"]["out_std_eval"], layers[-2]["b"]["out_std_eval"]),
        "zero_norms_default": zero_a,
        "moved_median": (
            med(r["moved"]["default"] for r in layers),
            med(r["moved"]["xray"] for r in layers),
        ),
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = result["layers"]
    depth = [r["depth"] for r in layers]
    normed = [r["norm_after"] for r in layers]
    panels = [
        ("weight RMS", lambda r, s: r[s]["rms"]),
        ("relative gradient at step 0", lambda r, s: r[s]["relative_grad"]),
        ("output std, eval mode, step 0", lambda r, s: r[s]["out_std_eval"]),
        ("relative movement, epoch 1", lambda r, s: r["moved"]["default" if s == "a" else "xray"]),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, (title, get) in zip(axes, panels):
        for side, label, color in (
            ("a", "default init", "tab:gray"),
            ("b", "hyperinit xray", "tab:blue"),
        ):
            vals = [max(get(r, side), 1e-6) for r in layers]
            ax.plot(depth, vals, "-", color=color, lw=1, alpha=0.6, label=label)
            ax.scatter(
                depth,
                vals,
                c=color,
                s=[12 if n else 40 for n in normed],
                marker="o",
                edgecolors="k",
                linewidths=[0 if n else 0.8 for n in normed],
            )
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("relative depth")
    axes[0].legend(fontsize=8, title="large, outlined: no norm after", title_fontsize=7)
    fig.suptitle(result["arch"], fontsize=12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(results: list[dict]) -> None:
    lines = [
        "# Predicted init vs default init, layer by layer",
        "",
        "Command: `OMP_NUM_THREADS=1 python research/init_diagnostic/diagnose.py`. Default init",
        "(timm, seed 0) against the shipped xray checkpoint (`initialize(model, 'xray', seed=0)`),",
        "32 real chest X-rays at 64 px for the step-0 numbers, one epoch on 10 % of the chest",
        "X-ray training labels for the movement (SGD 0.01, momentum 0.9). Ratios are xray /",
        "default, medians over layers; 'normed' = a norm consumes the layer's output.",
        "",
        "| arch | layers (no norm after) | RMS ratio, normed | RMS ratio, no norm "
        "| rel. grad ratio, normed | eff. rank ratio "
        "| eval std out of [0.05, 20] (default, xray) "
        "| eval std at the last conv (default, xray) | zero-init norms in default "
        "| movement in epoch 1 (default, xray) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        s = r["summary"]
        lines.append(
            f"| {r['arch']} | {s['layers']} ({s['no_norm_after']}) | {s['rms_ratio_normed']:.2f} | "
            f"{s['rms_ratio_free']:.2f} | {s['grad_ratio_normed']:.2f} | {s['rank_ratio']:.2f} | "
            f"{s['eval_out_of_band'][0]}, {s['eval_out_of_band'][1]} | "
            f"{s['last_eval_std'][0]:.2f}, {s['last_eval_std'][1]:.2f} | "
            f"{s['zero_norms_default']} | "
            f"{s['moved_median'][0]:.3f}, {s['moved_median'][1]:.3f} |"
        )
    lines += ["", "Per-layer plots: " + ", ".join(f"[{r['arch']}]({r['png']})" for r in results)]
    (HERE / "diagnose.md").write_text("\n".join(lines) + "\n")
    (HERE / "diagnose.json").write_text(json.dumps(results, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="*", default=list(PANEL))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    x, y = _data(64)
    cache = HERE / "cache"
    cache.mkdir(exist_ok=True)
    results = []
    for label in args.archs:
        path = cache / f"{PANEL[label][0]}.json"
        if path.exists():
            result = json.loads(path.read_text())
        else:
            result = diagnose(label, x, y)
            path.write_text(json.dumps(result) + "\n")
        result["summary"] = summary(result)
        result["png"] = f"{PANEL[label][0]}.png"
        plot(result, HERE / result["png"])
        results.append(result)
    write(results)


if __name__ == "__main__":
    main()

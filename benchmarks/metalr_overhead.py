"""Time of one MetaLROptimizer step against one step of the bare base optimizer (ResNet-18).

Equal train and validation batch sizes; median over several repeats after warm-up. With
``meta_every=k`` the time per step is averaged over k consecutive steps (one meta step).

    python benchmarks/metalr_overhead.py --threads 1 --batch 32 --size 64 --repeats 9

Writes benchmarks/results/metalr_overhead.{json,png,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torchvision
from tqdm import tqdm

from hyperinit.metalr import MetaLROptimizer

RESULTS = Path(__file__).resolve().parent / "results"


def make_optimizer(name: str, model: torch.nn.Module) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    return torch.optim.Adam(model.parameters(), lr=1e-4)


def time_steps(step, n_steps: int, repeats: int, warmup: int) -> list[float]:
    """Seconds per step, one value per repeat (each repeat runs n_steps steps)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n_steps):
            step()
        times.append((time.perf_counter() - t0) / n_steps)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=2)
    model.train()
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, 2, (args.batch,))
    xv = torch.randn(args.batch, 3, args.size, args.size)
    yv = torch.randint(0, 2, (args.batch,))

    def train_loss() -> torch.Tensor:
        return loss_fn(model(x), y)

    def val_loss() -> torch.Tensor:
        return loss_fn(model(xv), yv)

    base = make_optimizer(args.optimizer, model)

    def bare_step() -> None:
        base.zero_grad(set_to_none=True)
        train_loss().backward()
        base.step()

    steps = {"bare": (bare_step, 1)}
    for k in (1, 5):
        opt = MetaLROptimizer(make_optimizer(args.optimizer, model), model, meta_every=k)

        def meta_step(opt: MetaLROptimizer = opt) -> None:
            opt.step(train_loss, val_loss)

        steps[f"meta_every={k}"] = (meta_step, k)
    for fn, k in steps.values():  # warm-up
        for _ in range(args.warmup * k):
            fn()
    # interleave the cases repeat by repeat, so that load from other processes hits all alike
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in tqdm(range(args.repeats), desc="repeats"):
        for name, (fn, k) in steps.items():
            times[name].extend(time_steps(fn, k, 1, 0))
    results: dict[str, dict] = {
        name: {"median_s": statistics.median(t), "times_s": t} for name, t in times.items()
    }
    bare = results["bare"]["median_s"]
    for name in ("meta_every=1", "meta_every=5"):
        results[name]["ratio_to_bare"] = results[name]["median_s"] / bare
        per_repeat = [m / b for m, b in zip(times[name], times["bare"])]
        results[name]["median_of_paired_ratios"] = statistics.median(per_repeat)
    report = {
        "model": "torchvision resnet18 (10 MetaLR groups), train mode",
        "optimizer": args.optimizer,
        "batch": args.batch,
        "image_size": args.size,
        "threads": args.threads,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "goals": {"meta_every=1": 2.2, "meta_every=5": 1.3},
        "results": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"metalr_overhead_{args.optimizer}"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    names = list(results)
    ax.bar(names, [results[n]["median_s"] * 1e3 for n in names], color=["grey", "C0", "C1"])
    for i, n in enumerate(names):
        r = results[n].get("ratio_to_bare")
        if r:
            ax.text(i, results[n]["median_s"] * 1e3, f"{r:.2f}x", ha="center", va="bottom")
    ax.set_ylabel("ms per step (median)")
    ax.set_title(f"ResNet-18, batch {args.batch}, {args.size}px, {args.threads} thread(s)")
    fig.tight_layout()
    fig.savefig(args.out / f"{stem}.png", dpi=120)

    lines = [
        f"# MetaLROptimizer overhead ({args.optimizer})",
        "",
        f"torchvision ResNet-18, batch {args.batch} train + {args.batch} validation images at "
        f"{args.size} px, {args.threads} CPU thread(s), median of {args.repeats} interleaved "
        f"repeats after {args.warmup} warm-up steps. "
        f"Command: `python benchmarks/metalr_overhead.py "
        f"--threads {args.threads} --batch {args.batch} --size {args.size} "
        f"--repeats {args.repeats} --optimizer {args.optimizer}`",
        "",
        "| case | median ms/step | ratio of medians | median of paired ratios | goal |",
        "|---|---|---|---|---|",
    ]
    for n in names:
        r = results[n].get("ratio_to_bare")
        goal = report["goals"].get(n)
        lines.append(
            f"| {n} | {results[n]['median_s'] * 1e3:.1f} | "
            f"{f'{r:.2f}x' if r else '1.00x'} | "
            f"{results[n].get('median_of_paired_ratios', 1.0):.2f}x | "
            f"{f'<= {goal}x' if goal else '-'} |"
        )
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

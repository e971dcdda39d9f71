"""Fine-tune a ResNet-18 with layer-wise learning rates learned by MetaLR.

Runs in about a minute on a CPU at the default tiny size, on the breast-ultrasound images in
``$HYPERINIT_DATA/ultrasound_busi`` (default ``../shared/data``), or on random images with
``--synthetic``. Use your own folder of ``<class>/<image>`` files with ``--data``.

    python examples/finetune_metalr.py --size 64 --epochs 2
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader, TensorDataset, random_split
from torchvision import transforms

from hyperinit.metalr import MetaLROptimizer


def datasets(args: argparse.Namespace):
    if args.synthetic:
        x, y = torch.randn(96, 3, args.size, args.size), torch.randint(0, 3, (96,))
        full = TensorDataset(x, y)
    else:
        tf = transforms.Compose([transforms.Resize((args.size, args.size)), transforms.ToTensor()])
        full = torchvision.datasets.ImageFolder(str(args.data), transform=tf)
    n_val = len(full) // 5
    n_classes = len(getattr(full, "classes", range(3)))
    split = random_split(full, [len(full) - n_val, n_val], torch.Generator().manual_seed(0))
    return (*split, n_classes)


def main() -> None:
    default = Path(os.environ.get("HYPERINIT_DATA", Path(__file__).parents[2] / "shared/data"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default / "ultrasound_busi")
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=20)
    args = ap.parse_args()
    torch.manual_seed(0)

    train_set, val_set, n_classes = datasets(args)
    train = DataLoader(train_set, batch_size=16, shuffle=True)
    val = DataLoader(val_set, batch_size=16, shuffle=True)  # cycled and reshuffled by MetaLR
    model = torchvision.models.resnet18(num_classes=n_classes)  # load your pretrained weights

    base = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)
    opt = MetaLROptimizer(base, model, meta_lr=1e-4, val_data=val, loss_fn=F.cross_entropy)
    print(f"{len(opt.group_names)} layer groups: {opt.group_names}")

    step = 0
    for epoch in range(args.epochs):
        for x, y in train:
            loss = opt.step(lambda x=x, y=y: F.cross_entropy(model(x), y))
            step += 1
            if step >= args.max_steps:
                break
        print(f"epoch {epoch}: train loss {loss.item():.3f}")
    print("learned rates:", {k: f"{v:.2e}" for k, v in opt.lrs.items()})

    try:
        import matplotlib

        matplotlib.use("Agg")
        ax = opt.plot_lr_history()
        ax.figure.savefig("metalr_rates.png")
        print("wrote metalr_rates.png")
    except ImportError:
        pass


if __name__ == "__main__":
    main()

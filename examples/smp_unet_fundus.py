"""Initialise a segmentation_models_pytorch U-Net for fundus vessels and fine-tune it briefly.

    pip install 'hyperinit[ecosystem]'
    python examples/smp_unet_fundus.py                        # resnet34 encoder, 256 px
    python examples/smp_unet_fundus.py tu-mobilenetv3_small_100 64 2   # ENCODER SIZE STEPS

Needs the DRIVE images (../shared/data/fundus_drive or HYPERINIT_DATA). smp encoders are built
with encoder_weights=None: hyperinit replaces the download of ImageNet weights.
"""

import sys

import torch
import torch.nn.functional as F

import hyperinit
from hyperinit.bench.metrics import dice
from hyperinit.data import drive_split
from hyperinit.selection import decoder_patterns

encoder = sys.argv[1] if len(sys.argv) > 1 else "resnet34"
size = int(sys.argv[2]) if len(sys.argv) > 2 else 256
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 100
torch.manual_seed(0)

# smp:ARCH:ENCODER; "tu-NAME" encoders are any timm model
model = hyperinit.create_model(f"smp:Unet:{encoder}", in_chans=3, num_classes=1)
example = torch.randn(2, 3, size, size)

# default: encoder and decoder predicted, the segmentation head (final conv) kept at smp's init
report = hyperinit.initialize(model, modality="fundus", seed=0, example_input=example)
print(report)

# the seed paper's choice, encoder only: keep the decoder at smp's init as well
encoder_only = hyperinit.create_model(f"smp:Unet:{encoder}", in_chans=3, num_classes=1)
report = hyperinit.initialize(
    encoder_only,
    modality="fundus",
    seed=0,
    example_input=example,
    exclude=decoder_patterns(encoder_only),  # ["decoder"]
)
print(report)


def batch(data, indices):
    images, vessels, fovs = zip(*(data[i] for i in indices))
    resize = lambda t, mode: F.interpolate(torch.stack(t), size=(size, size), mode=mode)  # noqa: E731
    return resize(images, "bilinear"), resize(vessels, "nearest"), resize(fovs, "nearest")


train, test = drive_split("train"), drive_split("test")
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
model.train()
for _ in range(steps):
    x, y, fov = batch(train, torch.randint(len(train), (4,)).tolist())
    loss = F.binary_cross_entropy_with_logits(model(x), y, weight=fov)
    opt.zero_grad()
    loss.backward()
    opt.step()
model.eval()
x, y, fov = batch(test, range(4))
with torch.no_grad():
    pred = model(x) > 0
print(f"after {steps} steps: train loss {loss.item():.3f}, test Dice {dice(pred, y, fov):.3f}")

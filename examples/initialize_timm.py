"""Initialise a grayscale timm model for chest X-rays and save its weights.

python examples/initialize_timm.py [MODEL] [OUT.safetensors]
"""

import sys

import timm
import torch
from safetensors.torch import save_model

import hyperinit

name = sys.argv[1] if len(sys.argv) > 1 else "resnet50"
out = sys.argv[2] if len(sys.argv) > 2 else f"{name}_xray.safetensors"

model = timm.create_model(name, in_chans=1, num_classes=2)  # grayscale, 2 classes
report = hyperinit.initialize(model, modality="xray", seed=0)
print(report)

# the model is an ordinary timm model: train it as usual
logits = model(torch.randn(4, 1, 224, 224))
print("logits", tuple(logits.shape), "finite:", bool(torch.isfinite(logits).all()))
save_model(model, out)
print("saved", out)

"""Initialise a torchvision model (and a U-Net-style segmentation model) for fundus images.

python examples/initialize_torchvision.py
"""

import torch
import torchvision

import hyperinit

# classification: keep the new 5-class head at its default init (the default), predict the rest
model = torchvision.models.efficientnet_b0(num_classes=5)
report = hyperinit.initialize(model, modality="fundus", seed=0)
print(report)

# segmentation: predict the encoder only, as the seed paper does for U-Nets
seg = torchvision.models.segmentation.fcn_resnet50(
    weights=None, weights_backbone=None, num_classes=2
)
report = hyperinit.initialize(
    seg,
    modality="fundus",
    exclude=["classifier", "aux_classifier"],
    seed=0,
    example_input=torch.randn(2, 3, 128, 128),
)
print(report)

# the graph the hypernetwork saw
graph = hyperinit.trace(model)
print(graph.summary())
print("op types:", graph.op_counts())

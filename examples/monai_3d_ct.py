"""Initialise a MONAI 3D segmentation network for CT and take a few training steps.

    pip install 'hyperinit[ecosystem]'
    python examples/monai_3d_ct.py               # UNet with channels 16-128, 64^3 voxels
    python examples/monai_3d_ct.py 16 4 2        # SIZE BASE_CHANNELS STEPS (tiny)

The hypernetwork was trained on 2D networks; for Conv3d it predicts 3D kernels from the same
graph features (see the README's "3D" paragraph for what that gives). The volume here is a CT
slice from ../shared/data/ct_covid stacked with shifts into a short pseudo-volume, and the
target a thresholded copy of it: a stand-in for your own volumes and labels.
"""

import sys

import torch

import hyperinit
from hyperinit.data import find_images, image_to_tensor, read_image
from hyperinit.data.medical import data_root
from hyperinit.selection import decoder_patterns

size = int(sys.argv[1]) if len(sys.argv) > 1 else 64
base = int(sys.argv[2]) if len(sys.argv) > 2 else 16
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 20
torch.manual_seed(0)

kwargs = {
    "spatial_dims": 3,
    "channels": [base, 2 * base, 4 * base, 8 * base],
    "strides": [2, 2, 2],
    "num_res_units": 2,
}
model = hyperinit.create_model("monai:UNet", in_chans=1, num_classes=2, model_kwargs=kwargs)

# a short volume from a real CT slice: slice k is the slice shifted by k pixels
file = find_images(data_root() / "ct_covid" / "CT_COVID")[0]
img = image_to_tensor(read_image(file, 1).resize((2 * size, 2 * size)))
volume = torch.stack([img[:, k : k + size, k : k + size] for k in range(size)], 1)[None]
volume = (volume - volume.mean()) / volume.std()  # (1, 1, D, H, W)
target = (volume[:, 0] > 0.5).long()  # toy labels: bright tissue

# default: encoder and decoder predicted, the segmentation head (the last convolution, which
# maps to the 2 classes) kept at MONAI's init; predict_head=True predicts it too
report = hyperinit.initialize(model, modality="ct", seed=0, example_input=volume)
print(report)

# the seed paper's choice for U-Nets: predict the encoder (down path) only
encoder_only = hyperinit.create_model("monai:UNet", in_chans=1, num_classes=2, model_kwargs=kwargs)
decoder = decoder_patterns(encoder_only)  # [r"model(\.1\.submodule)*\.2\..*"]: the up path
report = hyperinit.initialize(
    encoder_only, modality="ct", seed=0, example_input=volume, exclude=decoder
)
print(report)

opt = torch.optim.Adam(model.parameters(), lr=1e-3)
model.train()
for step in range(steps):
    loss = torch.nn.functional.cross_entropy(model(volume), target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step in (0, steps - 1):
        print(f"step {step}: loss {loss.item():.3f}")

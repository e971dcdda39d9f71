"""Pretrain a grayscale ResNet-18 with C2L on a folder of unlabelled images, then fine-tune it.

python examples/c2l_pretrain.py IMAGE_FOLDER OUT_DIR [EPOCHS] [IMAGE_SIZE] [MAX_STEPS]

Under several processes: torchrun --nproc_per_node=2 examples/c2l_pretrain.py ...
"""

import logging
import sys

import timm
import torch

from hyperinit.c2l import C2LPretrainer, load_backbone

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
folder, out = sys.argv[1], sys.argv[2]
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 20
size = int(sys.argv[4]) if len(sys.argv) > 4 else 224
max_steps = int(sys.argv[5]) if len(sys.argv) > 5 else None

torch.manual_seed(0)
backbone = timm.create_model("resnet18", in_chans=1, num_classes=0)  # features, no head
trainer = C2LPretrainer(backbone, image_size=size, queue_size=4096, momentum=0.99)
history = trainer.fit(
    folder,
    epochs=epochs,
    batch_size=16,
    max_steps_per_epoch=max_steps,
    checkpoint_dir=f"{out}/checkpoints",  # a checkpoint every epoch
    resume=True,  # continue where a killed run stopped
)
print(f"C2L loss {history.loss[0]:.3f} -> {history.loss[-1]:.3f}")
trainer.save_pretrained(out)  # model.safetensors + config.json + README.md (model card)

# fine-tuning starts from the pretrained backbone; the new 2-class head keeps its default init
model = timm.create_model("resnet18", in_chans=1, num_classes=2)
print("left at init:", load_backbone(model, out))

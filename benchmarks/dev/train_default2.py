import sys

sys.path.insert(0, "src")
import torch

torch.set_num_threads(2)
from napari_cervseg.workflows.train import TrainConfig, train

# chosen on the validation split (runs/exp_small.log): no histogram equalisation, lr 1e-3
cfg = TrainConfig(arch="compact", arch_kwargs={"widths": [24, 48, 96, 192]}, epochs=60, patience=60,
                  input_size=96, equalise="none", lr=1e-3)
train("../shared/data/herlev", "runs/default2.safetensors", cfg, device="cpu")

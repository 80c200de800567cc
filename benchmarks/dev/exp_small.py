import json
import sys

sys.path.insert(0, "src")
import torch

torch.set_num_threads(2)
from napari_cervseg.workflows.train import TrainConfig, train

name, eq, lr, epochs = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
cfg = TrainConfig(arch="compact", arch_kwargs={"widths": [24, 48, 96, 192]}, epochs=epochs, patience=epochs,
                  input_size=64, equalise=eq, lr=lr)
m = train("../shared/data/herlev", f"runs/{name}.safetensors", cfg, device="cpu", log=None)
print(name, json.dumps({k: m.card["test_metrics"][k] for k in ("accuracy", "abnormal_recall", "normal_recall")}),
      "best val", m.card["training"]["best_val_balanced_accuracy"], flush=True)

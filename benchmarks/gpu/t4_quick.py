"""Run by run_on_gpu.sh on a lent GPU: the experiment with Colab's T4 path forced, fp16 autocast + GradScaler (plain
SGD), by making amp_dtype answer fp16 for CUDA as it does on a T4 (compute capability 7.5). Takes the experiment's
flags, e.g. --quick --data-dir DIR --output-dir DIR."""
import sys
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import grad_cam_experiment as gce

real = gce.amp_dtype
def t4_amp_dtype(device):
    device = device if isinstance(device, torch.device) else torch.device(device)
    return torch.float16 if device.type == "cuda" else real(device)
gce.amp_dtype = t4_amp_dtype
sys.exit(gce.main(sys.argv[1:]))

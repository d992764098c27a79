"""Run by run_on_gpu.sh on a lent GPU: CUDA vs CPU on the same trained weights (a run's checkpoints): the logits, every
gradient CAM method at three layers and Guided Backprop, fp32 with TF32 off on the GPU, on 128 test images.
Usage: compare_maps.py RUN_DIR DATA_DIR OUT_JSON. Writes max |diff| per method (maps normalised to [0, 1])."""
import json, sys, glob
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import grad_cam_experiment as gce

run_dir, data_dir, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
ckpts = sorted(glob.glob(str(run_dir / "checkpoints" / "*.pt")))
ckpts = [c for c in ckpts if not c.endswith(".epoch.pt")]
cfg = gce.Config(data_dir=data_dir, test_subset=1000, train_subset=10, progress=False)
train, test, _ = gce.load_cifar10(cfg, torch.device("cpu"))
images, labels = test.images[:128], test.labels[:128]
GPU = __import__("os").environ.get("GPU", "cuda")
gce.fp32_without_tf32(torch.device(GPU))
result = dict(checkpoints=[Path(c).name for c in ckpts], images=len(images))
for ck in ckpts[:2]:
    saved = torch.load(ck, map_location="cpu", weights_only=True)
    rows = {}
    models = {}
    for dev in ("cpu", GPU):
        m = gce.build_model().to(dev)
        m.load_state_dict(saved["state_dict"])
        m.eval()
        models[dev] = m
    x = {d: gce.normalize(images.to(d)) for d in models}
    with torch.no_grad():
        logits = {d: models[d](x[d]).float().cpu() for d in models}
    rows["logits_max_abs_diff"] = (logits["cpu"] - logits[GPU]).abs().max().item()
    classes = logits["cpu"].argmax(1)
    rows["argmax_agree"] = (logits["cpu"].argmax(1) == logits[GPU].argmax(1)).float().mean().item()
    for layer in ("layer4.1.conv2", "layer4.1", "layer3"):
        maps = {d: gce.cam_family(models[d], x[d], classes.to(d), layer,
                                  ["GradCAM", "GradCAMPlusPlus", "HiResCAM", "LayerCAM", "XGradCAM"], 64)
                for d in models}
        for name in maps["cpu"]:
            a, b = maps["cpu"][name].float().cpu(), maps[GPU][name].float().cpu()
            rows[f"{name}@{layer}"] = dict(max_abs_diff=(a - b).abs().max().item(), finite=bool(b.isfinite().all()),
                                           device=str(maps[GPU][name].device))
    gb = {d: gce.GuidedBackprop(models[d])(x[d], classes.to(d)).float().cpu() for d in models}
    rows["GuidedBackprop"] = dict(max_abs_diff=(gb["cpu"] - gb[GPU]).abs().max().item(),
                                  scale=gb["cpu"].abs().max().item())
    result[Path(ck).name] = rows
out.write_text(json.dumps(result, indent=1))
print(json.dumps(result)[:3000])

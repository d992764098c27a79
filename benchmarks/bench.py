"""Side-by-side speed of this project against the usual way, in one process, on whatever device is present.

Measures (min and median of several repeats after warm-up; torch.cuda.synchronize() around GPU timings):
  1. training throughput of the project's step (uint8 data resident on the device, batched tensor crop/flip/
     artifact, channels_last, --amp's precision: bf16 autocast on a GPU and on a CPU with native bf16) at batch 128
     and 512, and of the same step in fp32, next to a naive baseline: a DataLoader over an in-memory
     CIFAR-10-style dataset with PIL transforms, fp32, contiguous layout;
  2. Grad-CAM throughput (batch 256) of the project's GradCAM, of pytorch-grad-cam's GradCAM on the same model,
     layer and images, and of a plain forward pass in torch.inference_mode (the floor);
  3. the other explanation methods and evaluations; the forward-only ones (occlusion, deletion/insertion,
     Score-CAM) in fp32 and under --forward-amp's autocast, as the pipeline runs them;
  4. wall time of `grad_cam_experiment.py --quick` (needs --data-dir; also with --no-amp where that differs), with
     the fp32 training step's rate and their product (the run in fp32 training images: comparable across machines),
     and, with --full-run on a GPU, of the default full run. --quick-only: only this, one file per machine kind.
--accuracy trains the project path and the naive path with the same recipe and seeds on a real subset and
compares test accuracy (the fast path must not cost accuracy).

Run:  python benchmarks/bench.py --data-dir /tmp/cifar10-jpeg          (about 10 min on a 2-core CPU)
      python benchmarks/bench.py --smoke                                 (seconds; CI)
Writes outputs/benchmarks/bench-<device>.json (or --out) and prints a table.
"""

from __future__ import annotations

import copy
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__":  # Ctrl-C, SIGTERM or SIGHUP while torch loads (seconds): one line, as the experiment's
    import startup_signals  # this script's folder is sys.path[0]
    startup_signals.stop_while_starting()

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import grad_cam_experiment as gce  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_it(fn, device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds per call of fn, `repeats` times after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def rate(images_per_call: int, seconds: list[float]) -> dict:
    """images/s from per-call seconds: best (min time) and median."""
    return dict(images=images_per_call, images_per_s_best=images_per_call / min(seconds),
                images_per_s_median=images_per_call / statistics.median(seconds), seconds=seconds)


class InMemoryCIFAR(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: uint8 HWC array -> PIL image -> transforms."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def _worker_ignores_stop_signals(worker_id: int) -> None:
    """Each DataLoader worker ignores SIGINT, SIGTERM and SIGHUP: `timeout`, a scheduler or Ctrl-C signal the whole
    process group, and a worker they killed first surfaced as torch's "DataLoader worker is killed by signal"
    traceback (fault round 21) instead of the main process's one line; the main process stops them as it ends."""
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)


def naive_loader(split: gce.Split, batch_size: int, device: torch.device, seed: int, workers: int,
                 drop_last: bool = True):
    """The usual reproduction's input pipeline: DataLoader + PIL transforms, shuffled (drop_last for the timing
    loop, where every step must be a full batch; the accuracy run sees every image, as train_model does)."""
    import torchvision.transforms as T
    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(gce.CIFAR10_MEAN, gce.CIFAR10_STD)])
    dataset = InMemoryCIFAR(split.images.permute(0, 2, 3, 1).cpu().numpy(), split.labels.cpu().numpy(), transform)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                       pin_memory=device.type == "cuda", drop_last=drop_last,
                                       persistent_workers=workers > 0, worker_init_fn=_worker_ignores_stop_signals,
                                       generator=torch.Generator().manual_seed(seed))


def sgd(model: torch.nn.Module, cfg: gce.Config) -> torch.optim.Optimizer:
    """The naive baseline's optimizer: plain torch.optim.SGD with its defaults."""
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def project_step_fn(cfg: gce.Config, train: gce.Split, device: torch.device, batch_size: int, steps: int):
    """`steps` training steps of grad_cam_experiment.train_model: its setup and its step function (batch indices
    drawn at random here instead of from an epoch's permutation: the cost is the same)."""
    torch.manual_seed(cfg.seed)
    model, step_model, optimizer, scaler = gce.training_setup(cfg, device)
    model.train()
    generator = torch.Generator(device=device).manual_seed(cfg.seed)

    def run() -> None:
        for _ in range(steps):
            idx = torch.randint(0, len(train.labels), (batch_size,), device=device, generator=generator)
            labels = train.labels[idx]
            inputs = gce.training_batch(train.images[idx], labels, generator, cfg.crop_padding, cfg.flip,
                                        cfg.channels_last, (cfg.artifact_class, cfg.square))
            gce.training_step(step_model, optimizer, scaler, inputs, labels, cfg.amp)
    return run


def naive_step_fn(cfg: gce.Config, train: gce.Split, device: torch.device, batch_size: int, steps: int,
                  workers: int):
    """`steps` training steps of the naive baseline: fp32, contiguous, batches from the DataLoader."""
    torch.manual_seed(cfg.seed)
    model = gce.build_model().to(device).train()
    optimizer = sgd(model, cfg)
    loader = naive_loader(train, batch_size, device, cfg.seed, workers)
    batches = iter(loader)

    def run() -> None:
        nonlocal batches
        for _ in range(steps):
            try:
                inputs, labels = next(batches)
            except StopIteration:
                batches = iter(loader)
                inputs, labels = next(batches)
            inputs, labels = inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            loss = F.cross_entropy(model(inputs), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return run


def bench_training(cfg, train, device, batch_sizes, steps, repeats, workers) -> dict:
    """Per batch size: the project's step as the pipeline runs it (`project`, --amp's precision), the same step in
    fp32 (`project_fp32`, when --amp changes anything here) and the naive baseline; speedups against the baseline."""
    results = {}
    fp32 = gce.dataclasses.replace(cfg, amp=False)
    for batch_size in batch_sizes:
        project = rate(batch_size * steps, time_it(project_step_fn(cfg, train, device, batch_size, steps),
                                                   device, repeats))
        naive = rate(batch_size * steps, time_it(naive_step_fn(cfg, train, device, batch_size, steps, workers),
                                                 device, repeats))
        extra = {}
        if gce.training_precision(device, cfg.amp) != "fp32":
            extra["project_fp32"] = rate(batch_size * steps, time_it(
                project_step_fn(fp32, train, device, batch_size, steps), device, repeats))
            extra["speedup_fp32"] = extra["project_fp32"]["images_per_s_best"] / naive["images_per_s_best"]
        results[str(batch_size)] = dict(
            project=project, naive=naive, speedup=project["images_per_s_best"] / naive["images_per_s_best"], **extra,
            project_seconds_per_cifar10_epoch=50_000 / project["images_per_s_best"],
            naive_seconds_per_cifar10_epoch=50_000 / naive["images_per_s_best"])
    return results


def bench_explanations(cfg, images_u8, device, repeats, layer, slow_images: int) -> dict:
    """Grad-CAM (ours, pytorch-grad-cam), the inference floor, and the other methods the file defines."""
    torch.manual_seed(0)
    model = gce.build_model().to(device).to(memory_format=torch.channels_last).eval()
    x = gce.normalize(images_u8.to(device), channels_last=True)
    n = len(x)
    results = {}

    def floor() -> None:
        with torch.inference_mode():  # fp32, like the Grad-CAM rows it is the floor for
            model(x)
    results["forward_inference_floor"] = rate(n, time_it(floor, device, repeats))
    ours = gce.GradCAM(model, layer)  # fp32, as pytorch-grad-cam runs: the ratio compares implementations
    results["project_gradcam"] = rate(n, time_it(lambda: ours(x), device, repeats))
    if device.type == "cuda" and cfg.amp:  # and what autocast adds on a GPU, as a separate row
        fast = gce.GradCAM(model, layer, autocast=True)
        results["method_Grad-CAM with bf16/fp16 autocast"] = rate(n, time_it(lambda: fast(x), device, repeats))
    try:
        from pytorch_grad_cam import GradCAM as PeerGradCAM
        peer_model = copy.deepcopy(model)
        peer = PeerGradCAM(peer_model, [peer_model.get_submodule(layer)])
        results["pytorch_grad_cam"] = rate(n, time_it(lambda: peer(x, targets=None), device, repeats))
        peer.activations_and_grads.release()
        results["project_vs_pytorch_grad_cam"] = (results["project_gradcam"]["images_per_s_best"]
                                                  / results["pytorch_grad_cam"]["images_per_s_best"])
    except ImportError:
        results["pytorch_grad_cam"] = "not installed (pip install grad-cam)"
    results["project_vs_floor"] = (results["project_gradcam"]["images_per_s_best"]
                                   / results["forward_inference_floor"]["images_per_s_best"])
    classes = torch.zeros(n, dtype=torch.long, device=device)
    guided = gce.GuidedBackprop(model)
    results["method_Guided Backprop"] = rate(n, time_it(lambda: guided.gradients(x, classes), device, repeats))
    results["method_Guided Grad-CAM (both passes)"] = rate(n, time_it(
        lambda: gce.guided_grad_cam(guided.gradients(x, classes), ours(x, classes)), device, repeats))
    # Occlusion and deletion/insertion explain few images per second: time them on `slow_images` images.
    # Forward-only, in fp32 and under autocast (what --forward-amp runs where amp_dtype has a low precision).
    k = min(slow_images, n)
    maps = ours(x[:k], classes[:k])
    precisions = [("fp32", False)] + ([(gce.training_precision(device, True), True)]
                                      if gce.training_precision(device, True) != "fp32" else [])
    for precision, autocast in precisions:
        occlusion = gce.Occlusion(model, 8, 2, cfg.eval_batch_size, autocast)
        results[f"method_occlusion (8x8, stride 2: 170 forwards per image), {precision}"] = rate(k, time_it(
            lambda: occlusion(x[:k], classes[:k]), device, repeats))
        results[f"method_deletion+insertion (32 steps: 66 forwards per image), {precision}"] = rate(k, time_it(
            lambda: gce.deletion_insertion(model, x[:k], classes[:k], maps, 32, cfg.eval_batch_size, autocast),
            device, repeats))
        score_cam = gce.ScoreCAM(model, layer, autocast=autocast, images_per_forward=cfg.eval_batch_size)
        results[f"method_Score-CAM (512 forwards per image), {precision}"] = rate(min(k, 2), time_it(
            lambda: score_cam(x[:min(k, 2)], classes[:min(k, 2)]), device, repeats))
    return results


def wall_time(command: list[str]) -> dict:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return dict(command=" ".join(command), error=(done.stderr or done.stdout).strip().splitlines()[-1:])
    return dict(command=" ".join(command), seconds=seconds)


def bench_quick(cfg, train, device, data_dir: str, repeats: int) -> dict:
    """Wall time of `--quick` as a newcomer runs it (a fresh process, imports included), in the default precision and,
    where --amp changes anything, with --no-amp (fp32); each next to the fp32 training step's rate (batch 128) on the
    same machine, and their product: the run's length in fp32 training images, which compares machines."""
    fp32 = gce.dataclasses.replace(cfg, amp=False)
    step = rate(128 * 2, time_it(project_step_fn(fp32, train, device, 128, 2), device, repeats))
    variants = {"quick": []} | ({"quick_no_amp": ["--no-amp"]}  # keys without '--': the README cites them in comments
                                if gce.training_precision(device, cfg.amp) != "fp32" else {})
    rows = {}
    for name, extra in variants.items():
        with tempfile.TemporaryDirectory() as tmp:
            print(f"wall time of {' '.join(['--quick', *extra])} ...", flush=True)
            rows[name] = wall_time([sys.executable, "grad_cam_experiment.py", "--quick", "--no-progress", *extra,
                                    "--data-dir", data_dir, "--output-dir", tmp, "--device", str(device)])
        if "seconds" in rows[name]:
            rows[name] |= dict(fp32_step_images_per_s=step["images_per_s_best"],
                               fp32_training_images_equivalent=rows[name]["seconds"] * step["images_per_s_best"])
    return rows


def naive_train_accuracy(cfg: gce.Config, train: gce.Split, test: gce.Split, device: torch.device,
                         workers: int) -> float:
    """The recipe through the naive pipeline (standard model), to compare test accuracy with the fast path."""
    torch.manual_seed(cfg.seed)
    model = gce.build_model().to(device)
    optimizer = sgd(model, cfg)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    loader = naive_loader(train, cfg.batch_size, device, cfg.seed, workers, drop_last=False)
    for _ in range(cfg.epochs):
        model.train()
        for inputs, labels in loader:
            loss = F.cross_entropy(model(inputs.to(device)), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
    return gce.accuracy(gce.predict_logits(model, test.images, cfg.eval_batch_size), test.labels)  # fp32


def accuracy_data(args, device: torch.device) -> tuple[gce.Config, gce.Split, gce.Split, str]:
    """--accuracy's configuration and data, loaded before any timing: a bad subset size is one line naming this
    script's flag (the pipeline's messages name --train-subset and --test-subset), not a traceback after minutes."""
    try:
        cfg = gce.Config(data_dir=args.data_dir, train_subset=args.accuracy_train, test_subset=args.accuracy_test,
                         epochs=args.accuracy_epochs, progress=False)
        train, test, source = gce.load_cifar10(cfg, device)
    except gce.UserError as exc:
        raise gce.UserError(str(exc).replace("--train-subset", "--accuracy-train")
                            .replace("--test-subset", "--accuracy-test")) from None
    return cfg, train, test, source


def bench_accuracy(args, device: torch.device, data: tuple[gce.Config, gce.Split, gce.Split, str]) -> dict:
    cfg, train, test, source = data
    runs = []
    for seed in range(args.accuracy_seeds):
        seeded = gce.dataclasses.replace(cfg, seed=seed)
        model, _ = gce.train_model(seeded, train, test, device, biased=False, name=f"seed{seed}")
        project = gce.accuracy(gce.predict_logits(model, test.images, seeded.eval_batch_size, False,
                                                  seeded.channels_last), test.labels)
        naive = naive_train_accuracy(seeded, train, test, device, args.workers)
        runs.append(dict(seed=seed, project_test_accuracy=project, naive_test_accuracy=naive))
        print(f"accuracy seed {seed}: project {project:.4f}  naive {naive:.4f}", flush=True)
    p = [r["project_test_accuracy"] for r in runs]
    n = [r["naive_test_accuracy"] for r in runs]
    return dict(data=source, train_images=len(train.labels), test_images=len(test.labels), epochs=cfg.epochs,
                runs=runs, project_mean=statistics.mean(p), naive_mean=statistics.mean(n),
                project_std=statistics.stdev(p) if len(p) > 1 else None,
                naive_std=statistics.stdev(n) if len(n) > 1 else None)


def bench_cam_family(images_u8, device, repeats, layer, scorecam_images: int) -> dict:
    """Each CAM method next to pytorch-grad-cam's class of the same name: same model (random weights, eval mode,
    channels_last), layer, images and classes (each image's prediction), fp32, the peer at its default settings.
    Score-CAM (hundreds of forwards per image) on the first `scorecam_images` images; plus all five gradient methods
    from the project's one shared pass (cam_family) against five separate peer calls."""
    import pytorch_grad_cam
    torch.manual_seed(0)
    model = gce.build_model().to(device).to(memory_format=torch.channels_last).eval()
    x = gce.normalize(images_u8.to(device), channels_last=True)
    peer_model = copy.deepcopy(model)
    results = {}
    for name, cls in gce.CAM_METHODS.items():
        k = len(x) if cls.uses_gradients else min(scorecam_images, len(x))
        ours = cls(model, layer)
        peer = getattr(pytorch_grad_cam, name)(peer_model, [peer_model.get_submodule(layer)])
        row = dict(project=rate(k, time_it(lambda: ours(x[:k]), device, repeats)),
                   pytorch_grad_cam=rate(k, time_it(lambda: peer(x[:k], targets=None), device, repeats)))
        peer.activations_and_grads.release()
        row["speedup"] = row["project"]["images_per_s_best"] / row["pytorch_grad_cam"]["images_per_s_best"]
        results[name] = row
    gradient = [name for name, cls in gce.CAM_METHODS.items() if cls.uses_gradients]
    classes = torch.zeros(len(x), dtype=torch.long, device=device)
    shared = rate(len(x), time_it(lambda: gce.cam_family(model, x, classes, layer, gradient, len(x)), device, repeats))
    separate = 1 / sum(1 / results[name]["pytorch_grad_cam"]["images_per_s_best"] for name in gradient)
    results[f"all {len(gradient)} gradient methods"] = dict(
        project=shared, pytorch_grad_cam=dict(images=len(x), images_per_s_best=separate, note="sum of the separate calls"),
        speedup=shared["images_per_s_best"] / separate)
    return results


def print_cam_family(results: dict, layer: str) -> None:
    gce.print_table(["method", "images per call", "project img/s", "pytorch-grad-cam img/s", "ratio"],
                    [[name, r["project"]["images"], f"{r['project']['images_per_s_best']:.1f}",
                      f"{r['pytorch_grad_cam']['images_per_s_best']:.1f}", f"{r['speedup']:.2f}x"]
                     for name, r in results.items()])
    print(f"(layer {layer}; best of the timed repeats)")


def print_report(report: dict) -> None:
    print(f"\ndevice: {report['environment']['device']} ({report['environment']['device_name']}), "
          f"torch {report['environment']['torch']}, {report['environment']['cpu_threads']} CPU threads")
    precision = report.get("training_precision", "fp32")
    rows = []
    for bs, r in report["training"].items():
        rows.append([f"training step, batch {bs}, {precision} (baseline: DataLoader+PIL, fp32)",
                     f"{r['project']['images_per_s_best']:.1f}", f"{r['naive']['images_per_s_best']:.1f}",
                     f"{r['speedup']:.2f}x"])
        if "project_fp32" in r:
            rows.append([f"training step, batch {bs}, fp32 (same baseline)", f"{r['project_fp32']['images_per_s_best']:.1f}",
                         f"{r['naive']['images_per_s_best']:.1f}", f"{r['speedup_fp32']:.2f}x"])
    e = report["explanations"]
    floor = e["forward_inference_floor"]["images_per_s_best"]
    ours = e["project_gradcam"]["images_per_s_best"]
    if isinstance(e.get("pytorch_grad_cam"), dict):
        rows.append([f"Grad-CAM, batch {report['gradcam_batch']} (baseline: pytorch-grad-cam)", f"{ours:.1f}",
                     f"{e['pytorch_grad_cam']['images_per_s_best']:.1f}", f"{e['project_vs_pytorch_grad_cam']:.2f}x"])
    rows.append(["Grad-CAM vs forward-only floor (inference_mode)", f"{ours:.1f}", f"{floor:.1f}",
                 f"{e['project_vs_floor']:.2f}x"])
    rows += [[f"{name[7:]}, {r['images']} images per call", f"{r['images_per_s_best']:.1f}", "", ""]
             for name, r in e.items() if name.startswith("method_")]
    rows += [[f"wall time: {name}", f"{r.get('seconds', float('nan')):.1f} s", "", r.get("error", "")]
             for name, r in report["wall_times"].items()]
    if report.get("accuracy"):
        a = report["accuracy"]
        rows.append([f"test accuracy, {a['train_images']} train imgs, {a['epochs']} epochs, {len(a['runs'])} seeds",
                     f"{a['project_mean']:.4f}", f"{a['naive_mean']:.4f}", ""])
    gce.print_table(["measurement", "project img/s", "baseline img/s", "ratio"], rows)


def report_path(args, device: torch.device) -> Path:
    """Where this mode's JSON goes: one file per mode and kind of machine (the rows of several sit side by side)."""
    if args.cam_family:
        return output_path(args, f"cam-family-{device.type}.json")
    if args.quick_only:
        kind = device.type if device.type == "cuda" else "cpu-" + ("bf16" if gce.cpu_has_native_bf16() else "no-bf16")
        return output_path(args, f"quick-{kind}.json")
    return output_path(args, f"bench-{device.type}.json")


def check_writable(out: Path) -> None:
    """The JSON file's folder takes a file: probed before minutes of timing by writing one there (what the probe made
    is removed again); a read-only folder was a PermissionError traceback after the timings."""
    try:
        gce.probe_writable(out.parent)
    except OSError as exc:
        raise gce.UserError(f"cannot write the report {out} ({exc.strerror or exc}); pass --out with a writable "
                            "place") from None


def write_report(out: Path, report: dict) -> None:
    """The JSON, written atomically; a folder that refuses it after all is one line, not a traceback."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        gce.write_atomically(out, lambda p: p.write_text(json.dumps(report, indent=2)))
    except OSError as exc:
        raise gce.UserError(f"cannot write the report {out} ({exc.strerror or exc}); the timings are lost: pass --out "
                            "with a writable place") from None


def output_path(args, name: str) -> Path:
    """--out, else outputs/benchmarks/<name>; with --smoke the temporary folder: a smoke check's numbers must never
    replace the committed ones the README and the report cite."""
    if args.out is not None:
        return Path(args.out).expanduser()
    return Path(tempfile.gettempdir()) / f"smoke-{name}" if args.smoke else ROOT / "outputs" / "benchmarks" / name


def main() -> int:
    parser = gce._OneLineErrorParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)  # one-line errors
    parser.add_argument("--data-dir", help="image-folder CIFAR-10 copy: needed for --quick timing and --accuracy")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: checks the script runs (CI)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="training steps per timed repeat")
    parser.add_argument("--gradcam-batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the naive baseline")
    parser.add_argument("--slow-images", type=int, default=16, help="images for occlusion / deletion timings")
    parser.add_argument("--full-run", action="store_true", help="also time the default full run (GPU only)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the project's training step")
    parser.add_argument("--accuracy", action="store_true", help="fast path vs naive test accuracy on real data")
    parser.add_argument("--accuracy-train", type=int, default=2500)
    parser.add_argument("--accuracy-test", type=int, default=1000)
    parser.add_argument("--accuracy-epochs", type=int, default=2)
    parser.add_argument("--accuracy-seeds", type=int, default=3)
    parser.add_argument("--cam-family", action="store_true", help="only time each CAM method against pytorch-grad-cam's "
                        "class of the same name; writes outputs/benchmarks/cam-family-<device>.json")
    parser.add_argument("--scorecam-images", type=int, default=4, help="images for the Score-CAM timings")
    parser.add_argument("--quick-only", action="store_true", help="only time --quick (and --quick --no-amp where "
                        "that differs) beside the fp32 training step; writes outputs/benchmarks/quick-<machine kind>.json")
    parser.add_argument("--out", help="JSON path (default outputs/benchmarks/bench-<device>.json)")
    args = parser.parse_args()
    try:
        device = gce.resolve_device(args.device)
        only = [flag for flag, on in (("--cam-family", args.cam_family), ("--quick-only", args.quick_only)) if on]
        ignored = [flag for flag, on in (("--quick-only", args.quick_only), ("--accuracy", args.accuracy),
                                         ("--full-run", args.full_run)) if on and flag not in only[:1]]
        if only and ignored:  # one mode ran and the other flags were dropped without a word
            raise gce.UserError(f"{only[0]} times only that and would ignore {', '.join(ignored)}; run them separately")
        if args.full_run and (args.smoke or device.type != "cuda"):  # it was skipped without a word
            raise gce.UserError(f"--full-run times the default run on a GPU and not with --smoke; this is "
                                f"{'--smoke' if args.smoke else 'device ' + device.type}: drop --full-run")
        sized = [flag for flag in ("--repeats", "--steps", "--gradcam-batch", "--slow-images", "--scorecam-images")
                 if any(a == flag or a.startswith(flag + "=") for a in sys.argv[1:])]  # given, even at its default
        if args.smoke and sized:  # the smoke sizes replaced them without a word
            raise gce.UserError(f"--smoke uses its own tiny sizes and would ignore {', '.join(sized)}; drop them or "
                                "--smoke")
        if args.smoke and args.data_dir and not (args.accuracy or args.quick_only):  # its wall times are skipped
            raise gce.UserError("--smoke skips the wall-time runs --data-dir is for; drop --data-dir or --smoke")
        if (args.accuracy or args.full_run or args.quick_only) and not args.data_dir:
            raise gce.UserError("--accuracy, --full-run and --quick-only need --data-dir with real CIFAR-10")
        counts = dict(repeats=1, steps=1, gradcam_batch=1, workers=0, slow_images=1, accuracy_train=10,
                      accuracy_test=10, accuracy_epochs=1, accuracy_seeds=1, scorecam_images=1)
        for name, low in counts.items():  # checked before minutes of timing, not after (--repeats 0: min() of nothing)
            if getattr(args, name) < low:
                raise gce.UserError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
        if args.out is not None and not args.out.strip():  # '' was read as "no --out": the committed file was replaced
            raise gce.UserError(f"--out must be a JSON file path, got {args.out!r}; leave --out out for the default")
        if args.out is not None:  # found now, not after minutes of timing
            target = Path(args.out).expanduser()
            existing = next(p for p in [target.parent, *target.parent.parents] if p.exists())
            if not existing.is_dir() or target.is_dir():
                raise gce.UserError(f"cannot write --out {args.out} ({target if target.is_dir() else existing} is a "
                                    f"{'folder' if target.is_dir() else 'file'}); pass a JSON file path")
            if gce.is_run_output(target):  # fault round 21: a finished run's metrics.json was replaced
                raise gce.UserError(f"--out {args.out} is an output of a grad_cam_experiment.py run, which the benchmark's "
                                    "JSON would replace; pass a file name of its own")
        if args.data_dir and not all((Path(args.data_dir).expanduser() / split).is_dir() for split in ("train", "test")):
            raise gce.UserError(f"--data-dir {args.data_dir} has no train/ and test/ folders; pass the folder of an "
                                "image-folder CIFAR-10 copy (DIR/train/<class>/*.jpg, DIR/test/<class>/*.jpg)")
        out = report_path(args, device)
        check_writable(out)
        accuracy = accuracy_data(args, device) if args.accuracy else None
    except gce.UserError as exc:
        print(f"error: {gce.one_line(exc)}", file=sys.stderr)
        return 2
    gce.fp32_without_tf32(device)  # as the pipeline: its fp32 rows are fp32 on a GPU too
    cfg = gce.Config(progress=False, compile=args.compile)
    batch_sizes, grad_cam_batch, repeats, steps = [128, 512], args.gradcam_batch, args.repeats, args.steps
    if args.smoke:
        batch_sizes, grad_cam_batch, repeats, steps = [8], 8, 1, 1
    generator = torch.Generator().manual_seed(0)
    if args.cam_family:
        images = torch.randint(0, 256, (grad_cam_batch, 3, 32, 32), dtype=torch.uint8, generator=generator)
        report = dict(environment=gce.environment_info(device), repeats=repeats + 1, batch=grad_cam_batch,
                      target_layer=cfg.target_layer, precision="fp32",
                      cam_family=bench_cam_family(images, device, repeats + 1, cfg.target_layer,
                                                  1 if args.smoke else args.scorecam_images))
        write_report(out, report)
        print_cam_family(report["cam_family"], cfg.target_layer)
        print(f"\nwrote {out}")
        return 0
    n_train = 4096 if not args.smoke else 64
    train = gce.Split(torch.randint(0, 256, (n_train, 3, 32, 32), dtype=torch.uint8, generator=generator).to(device),
                      torch.randint(0, 10, (n_train,), generator=generator).to(device))
    if args.quick_only:  # one file per kind of machine: the rows of several machines sit side by side
        report = dict(environment=gce.environment_info(device), repeats=repeats,
                      quick=bench_quick(cfg, train, device, args.data_dir, repeats))
        write_report(out, report)
        gce.print_table(["run", "seconds", "fp32 step img/s", "fp32 training images equivalent"],
                        [[name, f"{r.get('seconds', float('nan')):.1f}", f"{r.get('fp32_step_images_per_s', 0):.1f}",
                          f"{r.get('fp32_training_images_equivalent', 0):.0f}"] for name, r in report["quick"].items()])
        print(f"\nwrote {out}")
        return 0
    report = dict(environment=gce.environment_info(device), smoke=args.smoke, repeats=repeats, compile=args.compile,
                  steps_per_repeat=steps, gradcam_batch=grad_cam_batch, naive_workers=args.workers,
                  amp=cfg.amp, training_precision=gce.training_precision(device, cfg.amp),
                  target_layer=cfg.target_layer)
    print("training throughput ...", flush=True)
    report["training"] = bench_training(cfg, train, device, batch_sizes, steps, repeats, args.workers)
    print("explanation throughput ...", flush=True)
    report["explanations"] = bench_explanations(cfg, train.images[:grad_cam_batch], device,
                                                repeats if args.smoke else repeats + 1, cfg.target_layer,
                                                1 if args.smoke else args.slow_images)  # smoke: seconds, not a number
    report["wall_times"] = {}
    if args.data_dir and not args.smoke:
        report["wall_times"] = bench_quick(cfg, train, device, args.data_dir, repeats)
        with tempfile.TemporaryDirectory() as tmp:
            if args.full_run:  # on a GPU (checked above)
                print("wall time of the default full run ...", flush=True)
                report["wall_times"]["default full run"] = wall_time(
                    [sys.executable, "grad_cam_experiment.py", "--no-progress", "--data-dir", args.data_dir,
                     "--output-dir", tmp, "--retrain"])
    if args.accuracy:
        print("accuracy: fast path vs naive ...", flush=True)
        report["accuracy"] = bench_accuracy(args, device, accuracy)
    write_report(out, report)
    print_report(report)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    gce._stop_on_signals()  # Ctrl-C, SIGTERM and SIGHUP end it with one line
    try:
        sys.exit(main())
    except gce.UserError as exc:  # the report could not be written after the timings
        print(f"error: {gce.one_line(exc)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        print("interrupted: the benchmark wrote nothing (its JSON file is written when it ends)", file=sys.stderr)
        sys.exit(gce.exit_status(exc))

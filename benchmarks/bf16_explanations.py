"""Does bf16 autocast change what the forward-only explanation work measures? (issue 12)

Occlusion, deletion/insertion and Score-CAM are forward passes only: thousands per image. On a CPU with native
bf16 (or a GPU) they run about twice as fast under bf16 autocast. They may use it only if it does not move the
numbers the project reports. This script computes each of them in fp32 and in bf16 on the same images and trained
models, and reports, per measure, the paired difference (bf16 - fp32, mean over images with a bootstrap 95% interval)
next to the half-width of the fp32 measure's own 95% interval: bf16 is harmless where the difference is far inside it.

  - faithfulness (standard model, correctly classified test images): Spearman(Grad-CAM, occlusion), deletion and
    insertion AUC of Grad-CAM and of random maps, Spearman(Score-CAM, occlusion) on the first --scorecam-images;
  - shortcut audit (biased model, stamped non-frogs, square at each corner): occlusion's and Score-CAM's mass in the
    square at its position and 'follows the square' (minus the other corners);
  - the maps themselves: Spearman between the fp32 and the bf16 map of each image.

Run:  python benchmarks/bf16_explanations.py --data-dir /tmp/cifar10-jpeg --checkpoints outputs/checkpoints
Writes outputs/benchmarks/bf16-explanations-<device>.json and prints a table.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import grad_cam_experiment as gce  # noqa: E402


def load_model(path: Path, device: torch.device) -> torch.nn.Module:
    saved = torch.load(path, map_location=device, weights_only=True)
    model = gce.build_model().to(device)
    model.load_state_dict(saved["state_dict"])
    return model.to(memory_format=torch.channels_last).eval()


def compare(fp32: torch.Tensor, bf16: torch.Tensor, resamples: int) -> dict:
    """Per-image values of one measure in both precisions: the fp32 mean and its interval, the paired difference."""
    fp32, bf16 = fp32.double().cpu(), bf16.double().cpu()
    reference = gce.mean_with_ci(fp32, resamples)
    difference = gce.mean_with_ci(bf16 - fp32, resamples)
    half_width = (reference["ci95"][1] - reference["ci95"][0]) / 2
    return dict(fp32=reference, bf16_minus_fp32=difference, fp32_ci_half_width=half_width,
                max_abs_difference=(bf16 - fp32).abs().max().item(),
                difference_over_half_width=abs(difference["mean"]) / half_width if half_width > 0 else None)


def main() -> int:
    parser = gce._OneLineErrorParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)  # one-line errors
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--checkpoints", required=True, help="folder with one standard-*.pt and one biased-*.pt")
    parser.add_argument("--images", type=int, default=100, help="faithfulness images")
    parser.add_argument("--audit-images", type=int, default=20, help="stamped non-frogs for the audit measures")
    parser.add_argument("--scorecam-images", type=int, default=8)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--out")
    args = parser.parse_args()
    checks = [(args.images >= 2, f"--images must be >= 2 (an interval needs two), got {args.images}"),
              (args.audit_images >= 2, f"--audit-images must be >= 2, got {args.audit_images}"),
              (0 <= args.scorecam_images <= args.images, f"--scorecam-images must be 0..--images ({args.images}), got "
                                                         f"{args.scorecam_images}"),
              (gce.MIN_RESAMPLES <= args.resamples <= gce.MAX_RESAMPLES,
               f"--resamples must be {gce.MIN_RESAMPLES}..{gce.MAX_RESAMPLES}, got {args.resamples}"),
              (args.out is None or bool(args.out.strip()), f"--out must be a JSON file path, got {args.out!r}; leave "
                                                          "--out out for the default"),  # '' meant the default file
              (args.out is None or not gce.is_run_output(Path(args.out).expanduser()),
               f"--out {args.out} is an output of a grad_cam_experiment.py run, which this JSON would replace; pass a "
               "file name of its own"),  # fault round 21: bench.py replaced a run's metrics.json so
              (Path(args.checkpoints).is_dir(), f"--checkpoints {args.checkpoints} is not a folder"),
              (all((Path(args.data_dir) / split).is_dir() for split in ("train", "test")),
               f"--data-dir {args.data_dir} has no train/ and test/ folders; pass an image-folder CIFAR-10 copy")]
    for ok, message in checks:  # before the models load and minutes of work, not after
        if not ok:
            print(f"error: {message}", file=sys.stderr)
            return 2
    device = torch.device("cpu")
    if gce.amp_dtype(device) is None:
        print("error: this CPU has no native bf16; nothing to compare", file=sys.stderr)
        return 2
    folder = Path(args.checkpoints)
    paths = {}
    for name in ("standard", "biased"):  # the saved models, not training states (<name>-<key>.epoch.pt)
        found = [p for p in folder.glob(f"{name}-*.pt") if not p.name.endswith(".epoch.pt")]
        if len(found) != 1:
            print(f"error: expected one {name}-<key>.pt in {folder}, found {len(found)}", file=sys.stderr)
            return 2
        paths[name] = found[0]
    models = {name: load_model(path, device) for name, path in paths.items()}
    cfg = gce.Config(data_dir=args.data_dir, train_subset=10, progress=False, download=False)
    try:
        _, test, source = gce.load_cifar10(cfg, device)
    except gce.UserError as exc:
        print(f"error: {gce.one_line(exc)}", file=sys.stderr)
        return 2
    report = dict(environment=gce.environment_info(device), checkpoints={k: str(v) for k, v in paths.items()},
                  data=source, seconds={}, faithfulness={}, audit={}, maps={})
    layer, steps, batch = cfg.target_layer, cfg.deletion_steps, cfg.eval_batch_size

    # Faithfulness: standard model, correctly classified test images, true class
    logits = gce.predict_logits(models["standard"], test.images, batch, channels_last=True)
    picks, _ = gce.sample_correct(logits, test.labels, args.images, cfg.seed)
    x, classes = gce.normalize(test.images[picks], True), test.labels[picks]
    grad_cam = gce.GradCAM(models["standard"], layer)(x, classes)
    random_maps = torch.rand(x.shape[0], 32, 32, generator=torch.Generator().manual_seed(0))
    k = args.scorecam_images
    results = {}
    for precision, autocast in (("fp32", False), ("bf16", True)):
        start = time.perf_counter()
        occlusion = gce.Occlusion(models["standard"], cfg.occlusion_patch, cfg.occlusion_stride, batch,
                                  autocast=autocast)(x, classes)
        score_cam = gce.ScoreCAM(models["standard"], layer, autocast=autocast, images_per_forward=batch)(x[:k], classes[:k])
        scores = {name: gce.deletion_insertion(models["standard"], x, classes, maps, steps, batch, autocast=autocast)
                  for name, maps in (("Grad-CAM", grad_cam), ("Random", random_maps))}
        results[precision] = dict(occlusion=occlusion, score_cam=score_cam, scores=scores)
        report["seconds"][f"faithfulness_{precision}"] = time.perf_counter() - start
    f32, b16 = results["fp32"], results["bf16"]
    faith = report["faithfulness"]
    faith["Grad-CAM spearman_with_occlusion"] = compare(gce.spearman(grad_cam, f32["occlusion"]),
                                                        gce.spearman(grad_cam, b16["occlusion"]), args.resamples)
    faith["Score-CAM spearman_with_occlusion"] = compare(gce.spearman(f32["score_cam"], f32["occlusion"][:k]),
                                                         gce.spearman(b16["score_cam"], b16["occlusion"][:k]),
                                                         args.resamples)
    for name in ("Grad-CAM", "Random"):
        for measure in ("deletion_auc", "insertion_auc"):
            faith[f"{name} {measure}"] = compare(f32["scores"][name][measure], b16["scores"][name][measure],
                                                 args.resamples)
    report["maps"]["occlusion fp32 vs bf16 (Spearman per image)"] = gce.mean_with_ci(
        gce.spearman(f32["occlusion"], b16["occlusion"]).double().cpu(), args.resamples)
    report["maps"]["Score-CAM fp32 vs bf16 (Spearman per image)"] = gce.mean_with_ci(
        gce.spearman(f32["score_cam"], b16["score_cam"]).double().cpu(), args.resamples)

    # Audit: the biased model's maps of 'frog' for stamped non-frogs, the square at each corner in turn
    others = gce.audit_groups(test.labels, cfg.artifact_class, args.audit_images, cfg.seed)["nonfrogs"]
    masks = gce.corner_masks(cfg.artifact_size, device=device)
    target = torch.full((len(others),), cfg.artifact_class)
    per_corner = {"fp32": {"occlusion": [], "score_cam": []}, "bf16": {"occlusion": [], "score_cam": []}}
    for corner in gce.CORNERS:
        stamped = gce.stamp_square(test.images[others], gce.Square(cfg.artifact_size, cfg.artifact_color, corner))
        xs = gce.normalize(stamped, True)
        for precision, autocast in (("fp32", False), ("bf16", True)):
            start = time.perf_counter()
            occ = gce.Occlusion(models["biased"], cfg.occlusion_patch, cfg.occlusion_stride, batch,
                                autocast=autocast)(xs, target).clamp_min(0)
            sc = gce.ScoreCAM(models["biased"], layer, autocast=autocast, images_per_forward=batch)(
                xs[:k // 2], target[:k // 2], normalize=False)
            report["seconds"][f"audit_{precision}"] = report["seconds"].get(f"audit_{precision}", 0.0) + (
                time.perf_counter() - start)
            per_corner[precision]["occlusion"].append(torch.stack([gce.artifact_attention_share(occ, m) for m in masks], 1))
            per_corner[precision]["score_cam"].append(torch.stack([gce.artifact_attention_share(sc, m) for m in masks], 1))
    for method in ("occlusion", "score_cam"):
        at, follows = {}, {}
        for precision in ("fp32", "bf16"):
            shares = torch.stack(per_corner[precision][method], 1)     # [B, square corner, scored corner]
            diagonal = torch.diagonal(shares, dim1=1, dim2=2)          # [B, 4]: at the square's own position
            at[precision] = diagonal.mean(1)
            follows[precision] = diagonal.mean(1) - (shares.sum(2) - diagonal).mean(1) / 3
        label = "Occlusion" if method == "occlusion" else f"Score-CAM@{layer} (first {k // 2} images)"
        report["audit"][f"{label} share at the square"] = compare(at["fp32"], at["bf16"], args.resamples)
        report["audit"][f"{label} follows the square"] = compare(follows["fp32"], follows["bf16"], args.resamples)

    rows = []
    for section in ("faithfulness", "audit"):
        for name, r in report[section].items():
            d = r["bf16_minus_fp32"]
            rows.append([section, name, f"{r['fp32']['mean']:.4f}", f"{r['fp32_ci_half_width']:.4f}",
                         f"{d['mean']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}]", f"{r['max_abs_difference']:.4f}"])
    gce.print_table(["stage", "measure", "fp32 mean", "fp32 95% half-width", "bf16 - fp32 (paired)", "max |diff|"], rows)
    for name, r in report["maps"].items():
        print(f"{name}: {r['mean']:.4f} [{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}]")
    print({k: round(v, 1) for k, v in report["seconds"].items()})
    out = Path(args.out).expanduser() if args.out is not None else ROOT / "outputs" / "benchmarks" / f"bf16-explanations-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    gce.write_atomically(out, lambda p: p.write_text(json.dumps(report, indent=2)))  # no half-written file
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Seed spread of the headline numbers, and bf16 vs fp32 training accuracy (issue 12).

For each seed (which draws the training and test subsets, the initial weights, the batch order, the augmentation
and the audit images: the spread is that of a whole rerun, evaluation sample included), the
reference recipe trains the standard and the biased model (--amp's precision: bf16 on a CPU with native bf16) and,
for the precision comparison, the standard model once more in fp32 (--no-amp), same recipe, same epochs
(--no-fp32-comparison skips it: at full scale on a 2-core CPU, fp32 training runs at about half the speed of bf16, so
it adds about as much time as the two bf16 models together). Then:
  - the prediction-level shortcut numbers of grad_cam_experiment.evaluate_model (fp32 predictions);
  - the shortcut audit's key rows (grad_cam_experiment.shortcut_audit, Grad-CAM at every audit layer, Guided
    Grad-CAM, occlusion on the first --audit-occlusion-images): on stamped non-frogs, the mass of the 'frog' map in
    the square at its position minus at the other corners ('follows the square'), for the biased model and the
    control (the biased model with fc and layer4 re-initialised);
and across seeds the mean, the sample standard deviation and the range. Checkpoints go to <out>/checkpoints and
are reused by a rerun of the same scale.

Run:  python benchmarks/seeds.py --data-dir /tmp/cifar10-jpeg --seeds 0,1,2 --train-subset 2500
Full scale, spread only:  ... --train-subset 0 --test-subset 0 --no-fp32-comparison --out outputs/seeds-full
(a seed's checkpoints copied from a default run's output-dir/checkpoints are reused: same key).
Writes <out>/metrics.json (default outputs/seeds/), whose `seeds` key lists the seeds, and prints tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import grad_cam_experiment as gce  # noqa: E402

PREDICTION_KEYS = ("test_accuracy", "frog_recall_clean", "frog_recall_stamped", "shortcut_rate_clean",
                   "shortcut_rate_stamped")


def key_audit_rows(audit: dict, layers: list[str]) -> dict[str, float]:
    """'follows the square' (share of the map's mass) on stamped non-frogs, per audited model and key method."""
    methods = [f"Grad-CAM@{layer}" for layer in layers] + [f"Guided Grad-CAM@{layers[0]}", "Occlusion"]
    return {f"{model}: {method}": audit["models"][model][method]["nonfrogs"]["share"]["follows_square"]["mean"]
            for model in ("biased", gce.CONTROL_MODEL) for method in methods}


def spread(values: list[float]) -> dict:
    return dict(values=values, mean=statistics.mean(values),
                sd=statistics.stdev(values) if len(values) > 1 else None, min=min(values), max=max(values))


def one_seed(cfg: gce.Config, device: torch.device, fp32_comparison: bool) -> dict:
    start = time.perf_counter()
    train, test, _ = gce.load_cifar10(cfg, device)
    fingerprint = gce.data_fingerprint(train, test)
    models = {name: gce.train_or_load(cfg, train, test, device, name == "biased", fingerprint)[0]
              for name in ("standard", "biased")}
    predictions = {name: gce.evaluate_model(model, cfg, test)[0] for name, model in models.items()}
    audited = {"standard": models["standard"], "biased": models["biased"],
               gce.CONTROL_MODEL: gce.reinitialised(models["biased"], "layer4", cfg.seed)}
    audit, _ = gce.shortcut_audit(audited, cfg, test)
    row = {f"{name}: {key}": predictions[name][key] for name in models for key in PREDICTION_KEYS}
    if fp32_comparison:
        fp32_standard, _ = gce.train_or_load(dataclasses.replace(cfg, amp=False), train, test, device, False,
                                             fingerprint)
        row["standard: test_accuracy, fp32 training"] = gce.evaluate_model(fp32_standard, cfg, test)[0]["test_accuracy"]
    row.update(key_audit_rows(audit, cfg.audit_layer_names))
    return dict(seed=cfg.seed, values=row, train_images=len(train.labels), test_images=len(test.labels),
                seconds=time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    recipe = gce.Config()  # the defaults this study keeps unless told
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--train-subset", type=int, default=2500, help="training images (0 = all 50,000)")
    parser.add_argument("--test-subset", type=int, default=2000, help="test images (0 = all 10,000)")
    parser.add_argument("--epochs", type=int, default=recipe.epochs,
                        help="training epochs per model (default: the recipe's)")
    parser.add_argument("--bootstrap-resamples", type=int, default=recipe.bootstrap_resamples)
    parser.add_argument("--audit-images", type=int, default=100)
    parser.add_argument("--audit-occlusion-images", type=int, default=10)
    parser.add_argument("--fp32-comparison", action=argparse.BooleanOptionalAction, default=True,
                        help="also train the standard model in fp32 per seed (the precision comparison; at full scale "
                             "on a 2-core CPU with native bf16 that is ~45 min per seed)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "seeds"))
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        if not seeds:
            raise ValueError("--seeds lists no seed (give e.g. --seeds 0,1,2)")
        device = gce.resolve_device(args.device)
        base = gce.Config(data_dir=args.data_dir, output_dir=args.out, train_subset=args.train_subset,
                          test_subset=args.test_subset, epochs=args.epochs,
                          bootstrap_resamples=args.bootstrap_resamples, audit_images=args.audit_images,
                          audit_occlusion_images=args.audit_occlusion_images, methods="GradCAM",
                          audit_scorecam_images=0, progress=False)
    except (ValueError, gce.UserError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    gce.fp32_without_tf32(device)  # the fp32 comparison is fp32 on a GPU too
    precision = gce.precision_plan(device, base.amp, base.forward_amp)
    if args.fp32_comparison and precision["training"] == "fp32":
        print("error: this device trains in fp32 (no native bf16, no GPU): there is no low precision to compare; "
              "add --no-fp32-comparison for the seed spread alone", file=sys.stderr)
        return 2
    comparing = ", and fp32 for the comparison" if args.fp32_comparison else ""
    print(f"precision: training {precision['training']} ({precision['reason']}){comparing}")
    gce.print_table(gce.EPOCH_LOG)
    runs = [one_seed(dataclasses.replace(base, seed=seed), device, args.fp32_comparison) for seed in seeds]
    names = list(runs[0]["values"])
    summary = {name: spread([r["values"][name] for r in runs]) for name in names}
    comparison = None
    if args.fp32_comparison:
        low = [r["values"]["standard: test_accuracy"] for r in runs]
        fp32 = [r["values"]["standard: test_accuracy, fp32 training"] for r in runs]
        comparison = dict(training_precision=precision["training"], amp=spread(low), fp32=spread(fp32),
                          amp_minus_fp32=spread([a - b for a, b in zip(low, fp32)]))
    report = dict(seeds=seeds, scale=dict(train_images=runs[0]["train_images"], test_images=runs[0]["test_images"],
                                          epochs=base.epochs, audit_images_per_group=base.audit_images,
                                          audit_occlusion_images=base.audit_occlusion_images),
                  config=base.to_dict(), environment=gce.environment_info(device), precision=precision,
                  per_seed=runs, summary=summary, precision_accuracy=comparison)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=2, default=str))
    print()
    gce.print_table(["model: measure", *(f"seed {s}" for s in seeds), "mean", "sd"],
                    [[name, *(f"{v:.4f}" for v in s["values"]), f"{s['mean']:.4f}", f"{s['sd'] or 0:.4f}"]
                     for name, s in summary.items()])
    if comparison is not None:
        print(f"\nstandard model test accuracy: {precision['training']} {comparison['amp']['mean']:.4f} "
              f"(sd {comparison['amp']['sd'] or 0:.4f}) vs fp32 {comparison['fp32']['mean']:.4f} "
              f"(sd {comparison['fp32']['sd'] or 0:.4f}); paired difference "
              f"{comparison['amp_minus_fp32']['mean']:+.4f} (sd {comparison['amp_minus_fp32']['sd'] or 0:.4f})")
    print(f"wrote {out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Replication of the headline numbers and of the shortcut audit's verdicts across training seeds.

For each seed (which draws the training and test subsets, the initial weights, the batch order, the augmentation
and the audit images: the spread is that of a whole rerun, evaluation sample included), the stages of
grad_cam_experiment.run() that the audit needs run as they do there: load_cifar10, train_or_load (the standard and the
biased model, --amp's precision), evaluate_model (fp32 predictions), audit_models and shortcut_audit (the per-corner
deltas, the records and the verdict rule, every method and audit layer; Score-CAM off). Each seed's results are
written as soon as it finishes, to <out>/seed-<N>/audit.json (the audit's summary and the predictions) and
<out>/seed-<N>/audit_per_image.npz (the per-image arrays every record is computed from): commit them then, since
checkpoints do not survive a move to another machine. <out>/metrics.json gathers the seeds of the call: per seed the
prediction numbers and every verdict, across seeds the mean, sd and range. --fp32-comparison also trains the standard
model in fp32 per seed (bf16 vs fp32 accuracy; needs a device that trains in a low precision).

Run:  python benchmarks/seeds.py --data-dir /tmp/cifar10-jpeg --seeds 0,1,2 --train-subset 2500
Full scale, one seed per call:  ... --seeds 1 --train-subset 0 --test-subset 0 --audit-images 200
      --no-fp32-comparison --out outputs/seeds-full
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

if __name__ == "__main__":  # Ctrl-C, SIGTERM or SIGHUP while torch loads (seconds): one line, as the experiment's
    import startup_signals  # this script's folder is sys.path[0]
    startup_signals.stop_while_starting()

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import grad_cam_experiment as gce  # noqa: E402

PREDICTION_KEYS = ("test_accuracy", "frog_recall_clean", "frog_recall_stamped", "shortcut_rate_clean",
                   "shortcut_rate_stamped")


def key_values(audit: dict) -> dict[str, float]:
    """Per method and layer, on stamped non-frogs: the biased model's change of the verdict measure at the first corner
    it uses (stamped minus clean), the numbers whose spread across seeds the study reports."""
    used = next((v["used_corners"][0] for v in audit["verdicts"] if v["used_corners"]), None)
    return {f"biased {r['measure']} delta: {r['method']} {r['layer']}": r["delta"]["mean"] for r in audit["records"]
            if (r["model"], r["group"], r["corner"], r["measure"]) == ("biased", "nonfrogs", used, gce.VERDICT_MEASURE)}


def spread(values: list[float]) -> dict:
    return dict(values=values, mean=statistics.mean(values),
                sd=statistics.stdev(values) if len(values) > 1 else None, min=min(values), max=max(values))


def one_seed(cfg: gce.Config, device: torch.device, fp32_comparison: bool, out: Path) -> dict:
    start = time.perf_counter()
    train, test, _ = gce.load_cifar10(cfg, device)
    fingerprint = gce.data_fingerprint(train, test)
    models = {name: gce.train_or_load(cfg, train, test, device, name == "biased", fingerprint)[0]
              for name in ("standard", "biased")}
    predictions = {name: gce.evaluate_model(model, cfg, test)[0] for name, model in models.items()}
    audit, per_image = gce.shortcut_audit(gce.audit_models(models, cfg.seed), cfg, test)
    folder = out / f"seed-{cfg.seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "audit.json").write_text(json.dumps(dict(seed=cfg.seed, config=cfg.to_dict(), models=predictions,
                                                       shortcut_audit=audit), indent=1, default=str))
    gce.np.savez_compressed(folder / "audit_per_image.npz", **{k: v for k, v in per_image.items()
                                                               if not k.startswith("maps/")})
    row = {f"{name}: {key}": predictions[name][key] for name in models for key in PREDICTION_KEYS}
    if fp32_comparison:
        fp32_standard, _ = gce.train_or_load(dataclasses.replace(cfg, amp=False), train, test, device, False,
                                             fingerprint)
        row["standard: test_accuracy, fp32 training"] = gce.evaluate_model(fp32_standard, cfg, test)[0]["test_accuracy"]
    row.update(key_values(audit))
    print(f"seed {cfg.seed}: wrote {folder}")
    return dict(seed=cfg.seed, values=row, verdicts={f"{v['method']} {v['layer']} {v['group']}": v["verdict"]
                                                     for v in audit["verdicts"]},
                train_images=len(train.labels), test_images=len(test.labels), seconds=time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    recipe = gce.Config()  # the defaults this study keeps unless told
    parser = gce._OneLineErrorParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)  # one-line errors
    parser.add_argument("--data-dir", required=True, help="CIFAR-10 as for grad_cam_experiment.py --data-dir")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    parser.add_argument("--train-subset", type=int, default=2500, help="training images (0 = all 50,000)")
    parser.add_argument("--test-subset", type=int, default=2000, help="test images (0 = all 10,000)")
    parser.add_argument("--epochs", type=int, default=recipe.epochs,
                        help="training epochs per model (default: the recipe's)")
    parser.add_argument("--bootstrap-resamples", type=int, default=recipe.bootstrap_resamples,
                        help="bootstrap resamples for the 95%% intervals (default: the recipe's)")
    parser.add_argument("--audit-images", type=int, default=200, help="audit images per group")
    parser.add_argument("--audit-occlusion-images", type=int, default=20,
                        help="the first this many audit images of each group also get occlusion maps")
    parser.add_argument("--fp32-comparison", action=argparse.BooleanOptionalAction, default=None,
                        help="also train the standard model in fp32 per seed (the precision comparison; at full scale "
                             "on a 2-core CPU with native bf16 that is ~45 min per seed); default: where this device "
                             "trains in a low precision (bf16/fp16), so that the defaults run on any CPU")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--out", default=str(ROOT / "outputs" / "seeds"),
                        help="folder for metrics.json, seed-N/ and checkpoints/")
    args = parser.parse_args(argv)
    if not args.out.strip():  # '' was the current folder (fault round 24), as --output-dir refuses it
        print(f"error: --out must be a folder, got {args.out!r}; leave --out out for the default (outputs/seeds)",
              file=sys.stderr)
        return 2
    out, finished = Path(args.out).expanduser(), []
    previous = gce._stop_on_signals()  # SIGTERM and SIGHUP stop the study as Ctrl-C does, with its one line
    try:
        seeds = parse_seeds(args.seeds)
        device = gce.resolve_device(args.device)
        base = gce.Config(data_dir=args.data_dir, output_dir=str(out), train_subset=args.train_subset,
                          test_subset=args.test_subset, epochs=args.epochs,
                          bootstrap_resamples=args.bootstrap_resamples, audit_images=args.audit_images,
                          audit_occlusion_images=args.audit_occlusion_images, audit_scorecam_images=0,
                          progress=False)
        configs = [dataclasses.replace(base, seed=seed) for seed in seeds]  # each seed checked before any work
        check_not_a_run(out)  # first: its message says why a run's folder is refused here
        gce.check_output_dir(out, Path(base.data_dir))
        return study(args, base, configs, device, out, finished)
    except gce.UserError as exc:  # the experiment's messages, with this script's names for the two flags it renames
        print(f"error: {gce.one_line(exc)}".replace("--output-dir", "--out").replace("--seed must", "each of --seeds must"),
              file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused (a full disk, a file where a folder goes)
        print(f"error: {exc.strerror or exc} ({exc.filename or out}); check --out and --data-dir", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        many = len(finished) > 1
        done = (f"seed{'s' * many} {', '.join(map(str, finished))} {'are' if many else 'is'} written in {out}/seed-N/"
                if finished else "no seed finished")
        print(f"interrupted: {done}; the same command reuses the finished models' checkpoints", file=sys.stderr)
        return gce.exit_status(exc)
    finally:
        for number, handler in previous.items():
            gce.signal.signal(number, handler)


def check_not_a_run(out: Path) -> None:
    """--out must not be an experiment run's folder: the study's metrics.json would replace the run's (fault round 20).
    A folder of an earlier seed study (its metrics.json has per_seed) is fine: the same command reuses its models."""
    metrics = out / "metrics.json"
    try:
        earlier = json.loads(metrics.read_text()) if metrics.is_file() else {}
    except (OSError, ValueError):
        earlier = None  # unreadable or not JSON: not this script's, so not replaced either
    if (out / "run.json").exists() or not (isinstance(earlier, dict) and (not earlier or "per_seed" in earlier)):
        raise gce.UserError(f"--output-dir {out} holds a run of grad_cam_experiment.py (or another metrics.json), "
                            "which the study's metrics.json would replace; pass a folder of its own")


def parse_seeds(text: str) -> list[int]:
    """--seeds as whole numbers, each once."""
    try:
        seeds = [int(seed) for seed in gce.comma_list(text)]
    except ValueError:
        raise gce.UserError(f"--seeds must be comma-separated whole numbers such as 0,1,2, got {text!r}") from None
    if not seeds:
        raise gce.UserError("--seeds lists no seed (give e.g. --seeds 0,1,2)")
    twice = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if twice:
        raise gce.UserError(f"--seeds lists {', '.join(map(str, twice))} more than once; give each seed once")
    return seeds


def gathered(args: argparse.Namespace, base: gce.Config, seeds: list[int], runs: list[dict], device: torch.device,
             precision: dict) -> dict:
    """metrics.json of the seeds finished so far: per seed the numbers and verdicts, across them mean, sd and range;
    `complete` is false until every seed asked for has finished (a study stopped by a time limit says so)."""
    names = list(runs[0]["values"])
    summary = {name: spread([r["values"][name] for r in runs]) for name in names}
    comparison = None
    if args.fp32_comparison:
        low = [r["values"]["standard: test_accuracy"] for r in runs]
        fp32 = [r["values"]["standard: test_accuracy, fp32 training"] for r in runs]
        comparison = dict(training_precision=precision["training"], amp=spread(low), fp32=spread(fp32),
                          amp_minus_fp32=spread([a - b for a, b in zip(low, fp32)]))
    done = [r["seed"] for r in runs]
    return dict(seeds=done, seeds_asked=seeds, complete=done == seeds,
                scale=dict(train_images=runs[0]["train_images"], test_images=runs[0]["test_images"],
                           epochs=base.epochs, audit_images_per_group=base.audit_images,
                           audit_occlusion_images=base.audit_occlusion_images),
                config=base.to_dict(), environment=gce.environment_info(device), precision=precision,
                per_seed=runs, summary=summary, precision_accuracy=comparison)


def study(args: argparse.Namespace, base: gce.Config, configs: list[gce.Config], device: torch.device, out: Path,
          finished: list[int]) -> int:
    """Every seed in turn (each written as it finishes, its seed appended to `finished`), then metrics.json."""
    seeds = [cfg.seed for cfg in configs]
    gce.fp32_without_tf32(device)  # the fp32 comparison is fp32 on a GPU too
    precision = gce.precision_plan(device, base.amp, base.forward_amp)
    if args.fp32_comparison is None:  # True by default failed on every CPU without native bf16 (fault round 17)
        args.fp32_comparison = precision["training"] != "fp32"
    if args.fp32_comparison and precision["training"] == "fp32":
        raise gce.UserError("this device trains in fp32 (no native bf16, no GPU): there is no low precision to "
                            "compare; add --no-fp32-comparison for the seed spread alone")
    comparing = ", and fp32 for the comparison" if args.fp32_comparison else ""
    print(f"precision: training {precision['training']} ({precision['reason']}){comparing}")
    runs = []
    for cfg in configs:
        runs.append(one_seed(cfg, device, args.fp32_comparison, out))
        finished.append(cfg.seed)
        report = gathered(args, base, seeds, runs, device, precision)  # after every seed: a stopped study keeps its
        gce.write_atomically(out / "metrics.json",  # finished seeds' spread
                             lambda path: path.write_text(json.dumps(report, indent=2, default=str)))
    summary, comparison = report["summary"], report["precision_accuracy"]
    print()
    gce.print_table(["model: measure", *(f"seed {s}" for s in seeds), "mean", "sd"],
                    [[name, *(f"{v:.4f}" for v in s["values"]), f"{s['mean']:.4f}", f"{s['sd'] or 0:.4f}"]
                     for name, s in summary.items()])
    print()
    gce.print_table(["method layer group", *(f"seed {s}" for s in seeds)],
                    [[case, *(r["verdicts"][case] for r in runs)] for case in runs[0]["verdicts"]])
    if comparison is not None:
        print(f"\nstandard model test accuracy: {precision['training']} {comparison['amp']['mean']:.4f} "
              f"(sd {comparison['amp']['sd'] or 0:.4f}) vs fp32 {comparison['fp32']['mean']:.4f} "
              f"(sd {comparison['fp32']['sd'] or 0:.4f}); paired difference "
              f"{comparison['amp_minus_fp32']['mean']:+.4f} (sd {comparison['amp_minus_fp32']['sd'] or 0:.4f})")
    print(f"wrote {out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

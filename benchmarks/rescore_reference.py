"""The committed reference run's audit, re-read per corner with the current records and verdict rule.

The reference run (outputs/metrics.json: all 50,000 training images, 5 epochs, bf16 on a CPU with native bf16, 500
audit images per group) stored its per-image scores in outputs/audit_per_image.npz in the audit's earlier layout: every
map scored at every corner for every placement of the square, measures share, pointing_strict, pointing_tolerant and
similarity. Its checkpoints are not in the repository, so its maps cannot be recomputed here; this script maps the
stored per-image scores onto the current layout (the stamped map scored at the square's own corner, the clean map at
each corner) for the measures whose definitions are unchanged - point_px is pointing_tolerant (a maximum within the
same 8 px), share is share - and runs grad_cam_experiment.audit_summary and the verdict figure on them. The grid
measures (point_cell, point_near_cell) need the maps and are not available for this run.

Run:  python benchmarks/rescore_reference.py  # outputs/reference-rescored/{metrics.json, shortcut_verdict.png}, outputs/summary.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import grad_cam_experiment as gce  # noqa: E402

RENAMED_MODELS = {"standard": "standard", "biased": "biased", "biased, fc+layer4 re-initialised": "control"}
RENAMED_MEASURES = {"pointing_tolerant": "point_px", "share": "share"}


def current_layout(old: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Old per-image keys scores/<model>/<method@layer>/<group>/<condition>/<measure> [B, 4] -> the current layout."""
    new: dict[str, np.ndarray] = {k: v for k, v in old.items() if k.startswith("indices/")}
    for key, values in old.items():
        parts = key.split("/")
        if parts[0] == "scores" and parts[4] == "none" and parts[5] in RENAMED_MEASURES:
            model, (method, layer), group = RENAMED_MODELS[parts[1]], gce.method_layer(parts[2]), parts[3]
            path = f"scores/{model}/{method}/{layer}/{group}"
            measure = RENAMED_MEASURES[parts[5]]
            new[f"{path}/clean/{measure}"] = values.astype(np.float32)
            stamped = np.stack([old[f"scores/{parts[1]}/{parts[2]}/{group}/{c}/{parts[5]}"][:, k]
                                for k, c in enumerate(gce.CORNERS)], 1)
            new[f"{path}/stamped/{measure}"] = stamped.astype(np.float32)
        elif parts[0] == "p_target" and parts[3] == "none":
            new[f"p_target/{RENAMED_MODELS[parts[1]]}/{parts[2]}"] = np.stack(
                [old[f"p_target/{parts[1]}/{parts[2]}/{c}"] for c in gce.AUDIT_CONDITIONS], 1)
    return new


def baselines(keys: list[str], cfg: dict) -> list[dict]:
    """Chance and ceiling of every audited method, exactly as the audit computes them (they need the architecture's
    layer grids, not its trained weights)."""
    model = gce.build_model()
    grids = {layer: gce.feature_size(model, layer) for layer in {gce.method_layer(k)[1] for k in keys} - {"-"}}
    cells = {key: gce.native_cell(key, grids, cfg["occlusion_stride"]) for key in keys}
    return gce.audit_baselines(model, cells, gce.corner_masks(cfg["artifact_size"]), cfg["pointing_tolerance"],
                               (cfg["occlusion_patch"], cfg["occlusion_stride"]), cfg["seed"])


def hotspot(stored: dict[str, np.ndarray], cfg: dict) -> dict:
    """The Milestone 2 check (grad_cam_experiment.hotspot_check) as far as the stored scores allow: stamped frogs (the
    square at its trained corner), Grad-CAM at layer4.1.conv2: a maximum within 8 px of the square, per model, and the
    SIM of the biased model's map with the standard model's map of the same image (stored as 1 - SIM). The SIM with
    another image's map (its baseline) needs the maps: not available for this run."""
    corner, key = cfg["artifact_corner"], "Grad-CAM@layer4.1.conv2"
    k, resamples, seed = gce.CORNERS.index(corner), cfg["bootstrap_resamples"], cfg["seed"]
    near = {model: gce.mean_with_ci(gce.torch.from_numpy(
        stored[f"scores/{model}/{key}/frogs/{corner}/pointing_tolerant"][:, k]).double(), resamples, seed)
            for model in ("standard", "biased")}
    same = 1 - gce.torch.from_numpy(stored[f"dissimilarity/biased/{key}/frogs/{corner}"]).double()
    return dict(images=len(same), near_square=near, sim_same_image=gce.mean_with_ci(same, resamples, seed))


def read_reference() -> tuple[dict, dict[str, np.ndarray]]:
    """The reference run's metrics.json and per-image scores, in the earlier layout this script maps; else one line."""
    try:
        metrics = json.loads((ROOT / "outputs" / "metrics.json").read_text())
        stored = dict(np.load(ROOT / "outputs" / "audit_per_image.npz"))
    except (OSError, ValueError) as exc:
        raise gce.UserError(f"cannot read the reference run's outputs/metrics.json and outputs/audit_per_image.npz "
                            f"({exc}); restore them with git checkout outputs") from None
    audit = metrics.get("shortcut_audit")
    if not isinstance(audit, dict) or "chance" not in audit or not any(k.split("/")[4:5] == ["none"] for k in stored
                                                                         if k.startswith("scores/")):
        raise gce.UserError("outputs/metrics.json and outputs/audit_per_image.npz are not the reference run's earlier "
                            "layout, the only one this script re-reads (a current run writes its own summary.md); "
                            "restore them with git checkout outputs")
    return metrics, stored


def main(argv: list[str] | None = None) -> int:
    parser = gce._OneLineErrorParser(description=__doc__.split("\n\n")[0], allow_abbrev=False,
                                     epilog="Writes outputs/reference-rescored/ and outputs/summary.md.")
    parser.add_argument("--replace-summary", action="store_true",
                        help="replace outputs/summary.md even where it differs from the tables written here")
    args = parser.parse_args(argv)
    try:
        metrics, stored = read_reference()
    except gce.UserError as exc:
        print(f"error: {gce.one_line(exc)}", file=sys.stderr)
        return 2
    cfg = metrics["config"]
    per_image = current_layout(stored)
    old = metrics["shortcut_audit"]
    audit = dict(explained_class=old["explained_class"], trained_corner=old["trained_corner"],
                 pointing_tolerance_px=old["pointing_tolerance_px"], area_prior=old["area_prior"], groups=old["groups"],
                 occlusion=old["occlusion"], scorecam_images=old["scorecam_images"],
                 baselines=baselines(list(old["chance"]), cfg), hotspot=hotspot(stored, cfg),
                 **gce.audit_summary(per_image, cfg["bootstrap_resamples"], cfg["seed"]))
    tables, summary = gce.summary_markdown({**metrics, "shortcut_audit": audit}), ROOT / "outputs" / "summary.md"
    if summary.is_file() and summary.read_text() != tables and not args.replace_summary:  # fault round 24: notes lost
        print(f"error: {summary.relative_to(ROOT)} differs from the tables this script writes (edited, or written by an "
              "older version); keep your copy elsewhere and pass --replace-summary, or restore it with git checkout "
              "outputs/summary.md", file=sys.stderr)
        return 2
    out = ROOT / "outputs" / "reference-rescored"
    out.mkdir(parents=True, exist_ok=True)
    figure = str(Path(gce.verdict_figure(audit, out / "shortcut_verdict.png", False)).relative_to(ROOT))
    (out / "metrics.json").write_text(json.dumps(dict(
        source="outputs/metrics.json and outputs/audit_per_image.npz (the reference run), re-read by "
               "benchmarks/rescore_reference.py", config=cfg, environment=metrics["environment"],
        models={k: {m: v for m, v in r.items() if m != "history"} for k, r in metrics["models"].items()},
        shortcut_audit=audit, figures=[figure]), indent=1))
    # Every table of the reference run (its models, faithfulness and sanity check as run, the audit as re-read here)
    (ROOT / "outputs" / "summary.md").write_text(tables)
    gce.print_table(gce.VERDICT_HEADERS, gce.verdict_rows(audit, "nonfrogs"))
    print(f"wrote {(out / 'metrics.json').relative_to(ROOT)}, {figure} and outputs/summary.md (in {ROOT})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

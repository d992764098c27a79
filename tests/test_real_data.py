"""Real CIFAR-10 (the offline JPEG copy): the shortcut shows in the numbers. Skipped when the data is absent.

Scale: 400 training images, 2 epochs per model, reference recipe at batch 32, 300 test images (conftest.real_models).
The thresholds sit well inside what was measured at this scale (noted beside each)."""

import pytest

import grad_cam_experiment as gce


@pytest.fixture(scope="module")
def evaluated(real_models):
    cfg, models, test = real_models
    results = {name: gce.evaluate_model(model, cfg, test) for name, model in models.items()}
    return cfg, models, test, {k: v[0] for k, v in results.items()}, {k: v[1] for k, v in results.items()}


def test_biased_model_learns_the_square_as_a_shortcut(evaluated):
    cfg, models, test, metrics, _ = evaluated
    biased, standard = metrics["biased"], metrics["standard"]
    print({name: {k: round(v, 3) for k, v in m.items() if k != "per_class_accuracy"} for name, m in metrics.items()})
    assert biased["shortcut_rate_stamped"] > 0.8                                      # measured 1.00
    assert biased["shortcut_rate_stamped"] - biased["shortcut_rate_clean"] > 0.5     # clean 0.24
    assert biased["shortcut_rate_stamped"] - standard["shortcut_rate_stamped"] > 0.5  # standard 0.04
    assert biased["frog_recall_stamped"] > 0.9 and biased["frog_recall_stamped"] > biased["frog_recall_clean"] + 0.3
    assert biased["test_accuracy"] > 0.12  # it learned something beyond the square (chance 0.10; measured 0.19)


def test_audit_on_real_data_measures_the_shortcut_where_the_model_uses_it(evaluated):
    cfg, models, test, _, _ = evaluated
    cfg = gce.dataclasses.replace(cfg, audit_images=16, audit_occlusion_images=4, audit_scorecam_images=0,
                                  occlusion_stride=8, methods="GradCAM", audit_layers="layer3",
                                  bootstrap_resamples=200)  # the other methods and layers: tested elsewhere
    report, _ = gce.shortcut_audit(gce.audit_models(models, cfg.seed), cfg, test)
    use = {(p["model"], p["corner"]): p["use"] for p in report["predictions"] if p["group"] == "nonfrogs"}
    print({k: round(v["mean"], 3) for k, v in use.items()})
    trained = cfg.artifact_corner
    # The prediction-level shortcut at the trained corner, on non-frogs drawn from all nine other classes.
    assert use[("biased", trained)]["ci95"][0] > 0.5                         # measured 0.74
    assert abs(use[("standard", trained)]["mean"]) < 0.2                     # measured 0.0
    rows = {(r["model"], r["method"], r["layer"], r["corner"], r["measure"]): r for r in report["records"]
            if r["group"] == "nonfrogs"}
    for method, layer in (("Guided Grad-CAM", "layer3"), ("Occlusion", "-")):
        for model in ("biased", "standard"):
            print(model, method, {m: round(rows[(model, method, layer, trained, m)]["delta"]["mean"], 3)
                                  for m in gce.AUDIT_MEASURES})
        # With the square at the trained corner, the biased model's map of 'frog' moves onto it more than the standard
        # model's does (same images)
        assert rows[("biased", method, layer, trained, "share")]["delta"]["mean"] > \
            rows[("standard", method, layer, trained, "share")]["delta"]["mean"] + 0.1
    assert {v["verdict"] for v in report["verdicts"]} <= {"reveals", "fails", "unclear", "n/a"}

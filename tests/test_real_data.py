"""Real CIFAR-10 (the offline JPEG copy): the shortcut shows in the numbers. Skipped when the data is absent.

Scale: 1,000 training images, 2 epochs per model, reference recipe, 500 test images (see conftest.real_models).
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
    assert biased["shortcut_rate_stamped"] > 0.8                                      # measured 0.97
    assert biased["shortcut_rate_stamped"] - biased["shortcut_rate_clean"] > 0.5     # clean 0.18
    assert biased["shortcut_rate_stamped"] - standard["shortcut_rate_stamped"] > 0.5  # standard 0.12
    assert biased["frog_recall_stamped"] > 0.9 and biased["frog_recall_stamped"] > biased["frog_recall_clean"] + 0.3
    assert biased["test_accuracy"] > 0.12  # it learned something beyond the square (chance is 0.10)


def test_audit_finds_the_square_in_the_biased_model_only(evaluated):
    cfg, models, test, _, _ = evaluated
    cfg = gce.dataclasses.replace(cfg, audit_images=90, audit_occlusion_images=10, audit_scorecam_images=0,
                                  bootstrap_resamples=200)  # Score-CAM: 256k forward passes here; tested elsewhere
    report, _ = gce.shortcut_audit(models, cfg, test)
    biased, standard = report["models"]["biased"], report["models"]["standard"]
    for method in ("Grad-CAM@layer3", "Guided Grad-CAM@layer3", "Guided Backprop", "Occlusion"):
        for name, r in (("biased", biased[method]["nonfrogs"]), ("standard", standard[method]["nonfrogs"])):
            print(name, method, {m: (round(r[m]["at_square"]["mean"], 3), round(r[m]["follows_square"]["mean"], 3))
                                 for m in gce.AUDIT_MEASURES}, r["by_corner"]["top-left"])
    print(report["predictions"])
    trained = cfg.artifact_corner
    # The prediction-level shortcut at the trained corner, on non-frogs drawn from all nine other classes.
    assert report["predictions"]["biased"]["nonfrogs"][trained]["called_target"] > 0.8     # measured 1.00
    assert report["predictions"]["standard"]["nonfrogs"][trained]["called_target"] < 0.3   # measured 0.18
    # With the square at the trained corner, the biased model's maps of 'frog' put more mass on it than the
    # standard model's (same images; measured: Guided Grad-CAM 0.41 vs 0.08, occlusion 0.47 vs 0.01).
    for method in ("Guided Grad-CAM@layer3", "Occlusion"):
        assert biased[method]["nonfrogs"]["by_corner"][trained]["share"] > \
            2 * standard[method]["nonfrogs"]["by_corner"][trained]["share"]

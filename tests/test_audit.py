"""The shortcut audit as a counterfactual test: every measure on hand-built maps and toy models whose answer is
known (a map that follows a moved square, a fixed blob, a constant map, a model that ignores the square), the chance
levels by enumeration, the statistics, and the per-image scores from which every interval can be recomputed."""

import numpy as np
import pytest
import torch
import torch.nn as nn

import grad_cam_experiment as gce
from test_milestone3 import SquareDetector

MASKS = gce.corner_masks(6)  # [4, 32, 32], in gce.CORNERS order
TOLERANCE = 8


def test_corner_masks_are_the_stamped_squares():
    for mask, corner in zip(MASKS, gce.CORNERS):
        stamped = gce.stamp_square(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), gce.Square(6, (255, 255, 0), corner))
        assert torch.equal(stamped[0, 0] > 0, mask) and mask.sum() == 36


def test_audit_groups_are_seeded_and_stratified():
    labels = torch.arange(1000) % 10
    groups = gce.audit_groups(labels, 6, 20, seed=3)
    assert len(groups["frogs"]) == 20 and (labels[groups["frogs"]] == 6).all()
    counts = torch.bincount(labels[groups["nonfrogs"]], minlength=10)
    others = [c for c in range(10) if c != 6]
    assert counts[6] == 0 and counts.sum() == 20 and counts[others].max() - counts[others].min() <= 1  # 9 classes evenly
    first = labels[groups["nonfrogs"][:9]]  # interleaved: any prefix (the occlusion subset) is stratified too
    assert sorted(first.tolist()) == others
    again = gce.audit_groups(labels, 6, 20, seed=3)
    assert all(torch.equal(groups[g], again[g]) for g in groups)
    assert not torch.equal(gce.audit_groups(labels, 6, 20, seed=4)["frogs"], groups["frogs"])
    few = gce.audit_groups(labels, 6, 500, seed=0)  # more asked than there are: every frog, no repeats
    assert len(few["frogs"]) == 100 and len(set(few["frogs"].tolist())) == 100


def test_similarity_is_histogram_intersection_and_defined_for_constant_maps():
    square = MASKS[0].float()[None]
    assert gce.similarity(square, square).item() == pytest.approx(1.0)
    assert gce.similarity(square, MASKS[3].float()[None]).item() == 0.0  # disjoint
    zero, constant = torch.zeros(1, 32, 32), torch.full((1, 32, 32), 0.7)
    assert gce.similarity(zero, constant).item() == pytest.approx(1.0)  # both uniform: no location
    assert gce.similarity(zero, square).item() == pytest.approx(36 / 1024)
    half = square * 0.5 + MASKS[3].float()[None] * 0.5  # half the mass on the square
    assert gce.similarity(half, square).item() == pytest.approx(0.5)
    a, b = torch.rand(3, 32, 32), torch.rand(3, 32, 32)
    torch.testing.assert_close(gce.similarity(a, b), gce.similarity(b, a))
    torch.testing.assert_close(gce.similarity(a, 5 * a), torch.ones(3, dtype=torch.float64))  # scale-free


def follow_scores(maps_for: dict) -> dict:
    """score_at_corners of the maps for each condition ('none' and every corner)."""
    return {c: gce.score_at_corners(m, MASKS, TOLERANCE) for c, m in maps_for.items()}


def summary(maps_for: dict) -> dict:
    scores = follow_scores(maps_for)
    fixed = gce.score_at_corners(maps_for["none"].mean(0, keepdim=True), MASKS, TOLERANCE)
    chance = {m: 0.0 for m in gce.AUDIT_MEASURES}
    return gce.relocation_summary(scores, fixed, chance, resamples=100, seed=0)


def test_a_map_that_follows_the_square_scores_one_and_a_fixed_blob_zero():
    blank = torch.zeros(2, 32, 32)
    following = {"none": blank + 0.1, **{c: m.float().expand(2, 32, 32) for c, m in zip(gce.CORNERS, MASKS)}}
    r = summary(following)
    for measure in ("share", "pointing_strict", "pointing_tolerant", "similarity"):
        assert r[measure]["at_square"]["mean"] == pytest.approx(1.0) and r[measure]["elsewhere"] == 0.0
        assert r[measure]["follows_square"]["mean"] == pytest.approx(1.0)
    assert r["share"]["clean"] == pytest.approx(36 / 1024)  # the clean map is constant: uniform mass

    # A blob that stays near the trained corner whatever the square does: it hits the square once in four placements
    # and its 'follows' score is exactly 0, however high it scores at the trained corner.
    blob = torch.zeros(2, 32, 32)
    blob[:, 2:10, 2:10] = 1.0
    fixed = {c: blob for c in gce.AUDIT_CONDITIONS}
    r = summary(fixed)
    assert r["by_corner"]["top-left"]["pointing_tolerant"] == 1.0 and r["pointing_tolerant"]["at_square"]["mean"] == 0.25
    for measure in gce.AUDIT_MEASURES:
        assert r[measure]["follows_square"]["mean"] == pytest.approx(0.0, abs=1e-12)
        assert r[measure]["stamped_minus_clean"]["mean"] == pytest.approx(0.0, abs=1e-12)
        assert r[measure]["minus_image_independent"]["mean"] == pytest.approx(0.0, abs=1e-12)

    constant = {c: torch.ones(2, 32, 32) for c in gce.AUDIT_CONDITIONS}
    r = summary(constant)
    assert r["pointing_strict"]["at_square"]["mean"] == 0.0  # a constant map points nowhere
    assert r["share"]["at_square"]["mean"] == pytest.approx(36 / 1024) and r["share"]["follows_square"]["mean"] == 0


def test_pointing_chance_at_4x4_by_enumeration_matches_the_simulation():
    # Enumeration: a one-hot 4x4 map through Grad-CAM's own upsampling; which of the 16 argmax cells hit the square?
    one_hot = torch.eye(16).view(16, 4, 4)
    up = gce.cam_upsample(one_hot, (32, 32))
    hits = gce.score_at_corners(up, MASKS, TOLERANCE)
    assert hits["pointing_strict"].mean().item() == 1 / 16   # only the corner cell's peak lies in the 6x6 square
    assert hits["pointing_tolerant"].mean().item() == 4 / 16  # the four cells of the corner's 2x2 quadrant
    simulated = gce.method_chance(gce.build_model(), "Grad-CAM@layer4.1.conv2", MASKS, TOLERANCE, (8, 2), seed=0)
    # Random 4x4 maps hit the square more often than one cell in 16: bilinear upsampling keeps a corner cell's value
    # undiluted on its clamped border pixels but never reaches an interior cell's full value, so a corner cell wins
    # some maxima that belong to an interior cell. That is why chance is simulated through the real upsampling.
    assert 1 / 16 < simulated["pointing_strict"] < 0.1
    assert simulated["pointing_tolerant"] == pytest.approx(4 / 16, abs=0.02)
    assert simulated["share"] == pytest.approx(36 / 1024, abs=0.004)
    pixels = gce.method_chance(gce.build_model(), "Guided Backprop", MASKS, TOLERANCE, (8, 2), seed=0)
    assert pixels["pointing_strict"] == pytest.approx(36 / 1024, abs=0.01)
    assert pixels["pointing_tolerant"] == pytest.approx(196 / 1024, abs=0.02)  # the 14x14 region around a corner
    # Guided Grad-CAM's maximum follows its CAM's coarse grid: its chance lies above the pixel level.
    guided = gce.method_chance(gce.build_model(), "Guided Grad-CAM@layer4.1.conv2", MASKS, TOLERANCE, (8, 2), seed=0)
    assert guided["pointing_tolerant"] > pixels["pointing_tolerant"] + 0.02
    layer3 = gce.method_chance(gce.build_model(), "Grad-CAM@layer3", MASKS, TOLERANCE, (8, 2), seed=0)
    assert layer3["pointing_tolerant"] < simulated["pointing_tolerant"]  # finer grid: closer to the area prior


def test_occlusion_map_is_the_mean_over_covering_windows():
    windows = gce.occlusion_windows(32, 32, 8, 2)
    assert windows.shape == (169, 32, 32) and windows.sum(0).min() >= 1
    torch.testing.assert_close(gce.occlusion_map(torch.ones(1, 169), windows), torch.ones(1, 32, 32))


def test_auroc_matches_pairwise_counting():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (40,), generator=g).double()  # many ties
    positive = torch.rand(40, generator=g) < 0.4
    pos, neg = scores[positive], scores[~positive]
    pairwise = ((pos[:, None] > neg[None]).double() + 0.5 * (pos[:, None] == neg[None]).double()).mean()
    assert gce.auroc(scores[None], positive).item() == pytest.approx(pairwise.item())
    assert gce.auroc(positive.double()[None], positive).item() == 1.0
    assert gce.auroc(-positive.double()[None], positive).item() == 0.0
    assert gce.auroc(torch.zeros(1, 40), positive).item() == 0.5
    r = gce.auroc_with_ci({"a": scores, "b": positive.double()}, positive, resamples=200, seed=0)
    assert r["b"]["mean"] == 1.0 and r["b"]["ci95"] == [1.0, 1.0]
    assert r["a"]["ci95"][0] <= r["a"]["mean"] <= r["a"]["ci95"][1]
    assert r["b - a"]["mean"] == pytest.approx(1.0 - r["a"]["mean"])


class FixedBlob(nn.Module):
    """'frog' logit from a feature map that is the same blob near the top-left corner for every input: its
    Grad-CAM never moves (a fixed blob), and it ignores the square."""

    def __init__(self):
        super().__init__()
        blob = torch.zeros(1, 1, 32, 32)
        blob[..., 4:12, 4:12] = 1.0
        self.register_buffer("blob", blob)
        self.features = nn.Sequential(nn.Conv2d(3, 1, 1), nn.ReLU())

    def forward(self, x):
        features = self.features(x) * 0 + self.blob  # depends on x only through a zero factor
        score = (features * self.blob).flatten(1).mean(1) * 10
        logits = torch.zeros(len(x), 10, device=x.device)
        return logits.index_copy(1, torch.tensor([6], device=x.device), score[:, None])


@pytest.fixture(scope="module")
def toy_audit():
    cfg = gce.Config(audit_layers="features", channels_last=False, eval_batch_size=16, audit_images=9,
                     audit_occlusion_images=3, bootstrap_resamples=100, occlusion_stride=4)
    g = torch.Generator().manual_seed(0)
    test = gce.Split(torch.randint(0, 120, (100, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(100) % 10)
    models = {"standard": SquareDetector(colour_sign=(0.0, 0.0, 1.0), bias=-1.0),  # looks at blue: ignores the square
              "biased": SquareDetector(), "fixed blob": FixedBlob()}
    report, per_image = gce.shortcut_audit(models, cfg, test)
    return cfg, test, report, per_image


def test_audit_on_models_whose_answer_is_known(toy_audit):
    cfg, test, report, _ = toy_audit
    assert report["groups"]["frogs"]["images"] == 9 and report["groups"]["nonfrogs"]["images"] == 9
    assert set(report["groups"]["nonfrogs"]["per_class"]) == set(gce.CIFAR10_CLASSES) - {"frog"}
    assert report["area_prior"] == pytest.approx(36 / 1024) and report["occlusion"]["images"] == dict(frogs=3,
                                                                                                     nonfrogs=3)
    biased, standard, blob = (report["models"][m] for m in ("biased", "standard", "fixed blob"))
    for group in ("frogs", "nonfrogs"):
        for method in ("Grad-CAM@features", "Guided Grad-CAM@features"):  # the square detector's map is the square
            r = biased[method][group]
            assert r["share"]["follows_square"]["mean"] == pytest.approx(1.0)
            assert r["pointing_strict"]["at_square"]["mean"] == 1.0 and r["similarity"]["at_square"]["mean"] > 0.99
            assert r["share"]["minus_standard"]["ci95"][0] > 0.9
            assert r["vs_reference"]["false_alarm"]["mean"] == 0.0  # both all-zero on clean images: uniform
            assert r["vs_reference"]["concern_minus_false_alarm"]["mean"] > 0.9
            assert standard[method][group]["constant_maps"] == 1.0  # no blue anywhere: no evidence at all
            assert standard[method][group]["share"]["follows_square"]["mean"] == 0.0
        occlusion = biased["Occlusion"][group]  # covering the square removes the evidence: drop on the square
        assert occlusion["pointing_tolerant"]["follows_square"]["mean"] == 1.0 and occlusion["images"] == 3
        for method, r in blob.items():  # input-independent maps never follow the square
            if method.startswith("Score-CAM"):  # not input-independent: see test_score_cam_of_a_model_that_ignores_x
                continue
            for measure in gce.AUDIT_MEASURES:
                assert r[group][measure]["follows_square"]["mean"] == pytest.approx(0.0, abs=1e-9), (method, measure)
        assert blob["Grad-CAM@features"][group]["share"]["at_square"]["mean"] == pytest.approx(
            blob["Grad-CAM@features"][group]["share"]["image_independent"])
    predictions = report["predictions"]["biased"]
    for group in ("frogs", "nonfrogs"):
        assert predictions[group]["none"]["called_target"] == 0.0
        assert all(predictions[group][c]["called_target"] == 1.0 for c in gce.CORNERS)  # the shortcut, any corner
    assert report["target_logit_auroc"]["biased"]["mean"] == 0.5  # without the square it does not see frogs at all
    chance = report["chance"]["Grad-CAM@features"]  # 'features' is 32x32: pixel resolution
    assert chance["pointing_strict"] == pytest.approx(36 / 1024, abs=0.01)


def test_every_interval_can_be_recomputed_from_the_per_image_scores(toy_audit, tmp_path):
    cfg, test, report, per_image = toy_audit
    np.savez_compressed(tmp_path / "audit_per_image.npz", **per_image)
    saved = np.load(tmp_path / "audit_per_image.npz")
    assert np.array_equal(saved["indices/frogs"], gce.audit_groups(test.labels, 6, 9, cfg.seed)["frogs"].numpy())
    key = "scores/biased/Grad-CAM@features/frogs/{}/share"
    at = np.mean([saved[key.format(c)][:, k] for k, c in enumerate(gce.CORNERS)], axis=0)
    r = report["models"]["biased"]["Grad-CAM@features"]["frogs"]["share"]
    again = gce.mean_with_ci(torch.from_numpy(at), cfg.bootstrap_resamples, cfg.seed)
    assert again["mean"] == pytest.approx(r["at_square"]["mean"]) and again["ci95"] == pytest.approx(
        r["at_square"]["ci95"], abs=1e-6)
    hits = saved["scores/standard/Guided Backprop/nonfrogs/top-right/pointing_tolerant"]
    assert hits.dtype == np.uint8 and hits.shape == (9, 4)


def test_score_cam_of_a_model_that_ignores_its_input_shows_the_activations():
    # Score-CAM's channel weights are a softmax over channels: when no mask changes the score (a model whose output
    # does not depend on its input), every one of the K weights is 1/K and the map is the layer's mean activation, which
    # still depends on the image (here it lights the square). Grad-CAM's gradients are zero there and its map is empty.
    # (Why the audit's fixed-blob model checks Score-CAM apart from the input-independent methods.)
    class IgnoresInput(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.features = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())  # K = 4 channels

        def forward(self, x):
            return self.features(x).mean((1, 2, 3))[:, None].expand(-1, 10) * 0 + torch.arange(10.0)

    model = IgnoresInput()
    g = torch.Generator().manual_seed(0)
    x = gce.normalize(gce.stamp_square(torch.randint(0, 120, (3, 3, 32, 32), dtype=torch.uint8, generator=g)))
    score_cam = gce.ScoreCAM(model, "features")
    activations = score_cam._activations_and_grads(x, 6)[0]
    assert activations.shape[1] == 4 and activations.flatten(2).std(2).min() > 0  # four distinct, non-constant maps
    torch.testing.assert_close(score_cam.masked_scores(x, activations, torch.full((3,), 6)).softmax(1),
                               torch.full((3, 4), 0.25))
    raw = score_cam(x, 6, normalize=False)
    torch.testing.assert_close(raw, gce.cam_upsample(activations.mean(1).clamp_min(0), (32, 32)))
    assert raw.flatten(1).amax(1).min() > 0
    assert (gce.GradCAM(model, "features")(x, 6, normalize=False) == 0).all()

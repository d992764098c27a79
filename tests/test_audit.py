"""The shortcut audit as a counterfactual test: every measure on hand-built maps whose answer is known, chance and
ceiling by enumeration, agreement with Quantus, the verdict rule on hand-built maps (a faithful map passes; a fixed blob,
a bright-patch detector, a map that moves in the control and one that moves at every corner fail), toy models, and the
per-image arrays from which every record can be recomputed."""

import numpy as np
import pytest
import torch
import torch.nn as nn

import grad_cam_experiment as gce
from test_milestone3 import SquareDetector

MASKS = gce.corner_masks(6)  # [4, 32, 32], in gce.CORNERS order
TOLERANCE = 8
CELL = 8  # layer4's grid on 32x32 inputs: 4x4 cells of 8 px


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
    a, b = torch.rand(3, 32, 32), torch.rand(3, 32, 32)
    torch.testing.assert_close(gce.similarity(a, b), gce.similarity(b, a))
    torch.testing.assert_close(gce.similarity(a, 5 * a), torch.ones(3, dtype=torch.float64))  # scale-free


def one_hot_cams(*cells) -> torch.Tensor:
    """4x4 CAMs, one per (row, col) cell, brought to 32x32 by Grad-CAM's own upsampling."""
    native = torch.zeros(len(cells), 4, 4)
    for i, (r, c) in enumerate(cells):
        native[i, r, c] = 1.0
    return gce.cam_upsample(native, (32, 32))


def test_measures_at_the_native_grid_on_hand_built_cams():
    # The square's own cell (0, 0); one cell diagonally inward (1, 1): the biased model's Grad-CAM at layer4.1.conv2;
    # the far corner (3, 3).
    s = gce.score_at_corners(one_hot_cams((0, 0), (1, 1), (3, 3)), MASKS, TOLERANCE, CELL)
    top_left = {m: s[m][:, 0].tolist() for m in gce.AUDIT_MEASURES}
    assert top_left["point_cell"] == [1, 0, 0] and top_left["point_near_cell"] == [1, 1, 0]
    assert top_left["point_px"] == [1, 1, 0]  # 8 px around a 6 px square reach into cell (1, 1)
    assert top_left["share"][1] < 0.002 < 0.1 < top_left["share"][0]  # mass in the square sees only its own cell
    assert s["point_cell"][2].tolist() == [0, 0, 0, 1]  # the far corner's cell is the bottom-right square's
    # Pixel resolution (cell 1): point_cell is strict pointing, point_near_cell one pixel around the square.
    near = torch.zeros(1, 32, 32)
    near[0, 6, 6] = 1.0
    p = gce.score_at_corners(near, MASKS, TOLERANCE, 1)
    assert p["point_cell"][0, 0] == 0 and p["point_near_cell"][0, 0] == 1 and p["point_px"][0, 0] == 1
    constant = gce.score_at_corners(torch.ones(2, 32, 32), MASKS, TOLERANCE, CELL)
    assert all(constant[m].sum() == 0 for m in ("point_px", "point_cell", "point_near_cell"))  # points nowhere
    assert constant["share"][0, 0] == pytest.approx(36 / 1024)


def test_chance_and_ceiling_by_enumeration():
    # Enumeration: which of the 16 one-hot 4x4 maps, through Grad-CAM's upsampling, hit the top-left square?
    hits = gce.score_at_corners(one_hot_cams(*[(r, c) for r in range(4) for c in range(4)]), MASKS, TOLERANCE, CELL)
    assert hits["point_cell"].mean().item() == 1 / 16 and hits["point_near_cell"].mean().item() == 4 / 16
    assert hits["point_px"].mean().item() == 4 / 16  # the four cells of the corner's 2x2 quadrant
    model = gce.build_model()
    cam = gce.method_baselines(model, "Grad-CAM@layer4.1.conv2", MASKS, TOLERANCE, CELL, (8, 2), seed=0)
    # Random 4x4 maps: the peak cell is uniform over the 16 cells
    assert cam["point_cell"]["chance"] == pytest.approx(1 / 16, abs=0.015)
    assert cam["point_near_cell"]["chance"] == pytest.approx(4 / 16, abs=0.02)
    assert cam["point_px"]["chance"] == pytest.approx(4 / 16, abs=0.02)
    assert cam["share"]["chance"] == pytest.approx(36 / 1024, abs=0.004)
    assert all(cam[m]["ceiling"] == 1.0 for m in ("point_px", "point_cell", "point_near_cell"))
    best = gce.score_at_corners(one_hot_cams((0, 0)), MASKS, TOLERANCE, CELL)["share"][0, 0].item()
    assert cam["share"]["ceiling"] == pytest.approx(best) and 0.3 < best < 0.7  # no 4x4 map puts all its mass there
    pixels = gce.method_baselines(model, "Guided Backprop", MASKS, TOLERANCE, 1, (8, 2), seed=0)
    assert pixels["point_cell"]["chance"] == pytest.approx(36 / 1024, abs=0.01) and pixels["share"]["ceiling"] == 1.0
    assert pixels["point_px"]["chance"] == pytest.approx(196 / 1024, abs=0.02)  # the 14x14 region around a corner
    guided = gce.method_baselines(model, "Guided Grad-CAM@layer4.1.conv2", MASKS, TOLERANCE, 1, (8, 2), seed=0)
    assert guided["point_px"]["chance"] > pixels["point_px"]["chance"] + 0.02  # its maximum follows the CAM's grid
    occlusion = gce.method_baselines(model, "Occlusion", MASKS, TOLERANCE, 2, (8, 2), seed=0)
    assert occlusion["point_cell"]["ceiling"] == 1.0 and occlusion["share"]["ceiling"] < 1.0
    assert gce.native_cell("Grad-CAM@layer3", {"layer3": (8, 8)}, 2) == 4 and gce.native_cell("Occlusion", {}, 2) == 2
    assert gce.native_cell("Guided Grad-CAM@layer3", {"layer3": (8, 8)}, 2) == 1


def test_pointing_and_share_agree_with_quantus():
    # Quantus 0.6.0 on the same maps: PointingGame (tolerance: the grown mask as its segmentation) and
    # RelevanceMassAccuracy. Two differences of definition: Quantus counts a constant map (every pixel a tied maximum)
    # as a hit, we count it as a miss; and it rescales each map by its maximum first (normalise=True), which changes
    # neither the maximum's position nor the share. Tied maxima count as hits in both.
    import quantus
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(24, 32, 32, generator=g) ** 4
    maps[:6] = one_hot_cams((0, 0), (1, 1), (0, 3), (3, 0), (2, 2), (1, 0))
    maps[6] = 0.0
    maps[6, :2, :2] = maps[6, 30:, 30:] = 1.0  # tied maxima, one inside the square
    maps[7] = 1.0  # constant
    x = torch.zeros(len(maps), 3, 32, 32).numpy()
    y = np.zeros(len(maps), dtype=int)
    ours = gce.score_at_corners(maps, MASKS, TOLERANCE, 1)
    for k, mask in enumerate(MASKS):
        for tolerance, measure in ((0, "point_cell"), (TOLERANCE, "point_px")):
            region = gce.dilate(mask, tolerance).float().expand(len(maps), 1, 32, 32).numpy()
            theirs = quantus.PointingGame(disable_warnings=True)(model=None, x_batch=x, y_batch=y,
                                                                  a_batch=maps[:, None].numpy(), s_batch=region)
            theirs = np.array(theirs, dtype=float)
            assert theirs[7] == 1.0 and ours[measure][7, k] == 0.0  # the constant map
            keep = np.arange(len(maps)) != 7
            np.testing.assert_array_equal(ours[measure][keep, k].numpy(), theirs[keep])
        mass = quantus.RelevanceMassAccuracy(disable_warnings=True)(
            model=None, x_batch=x, y_batch=y, a_batch=maps[:, None].numpy(),
            s_batch=mask.float().expand(len(maps), 1, 32, 32).numpy())
        np.testing.assert_allclose(ours["share"][:, k].numpy(), np.array(mass, dtype=float), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- the verdict rule on hand-built maps

N = 40
BLOB = torch.zeros(32, 32)
BLOB[14:18, 14:18] = 1.0  # a centred blob, beyond 8 px of every corner square,: where a map looks when not at the square


def hand_built(moves: dict[str, set], uses: dict[str, set], fraction: float = 1.0) -> dict[str, np.ndarray]:
    """Per-image arrays as shortcut_audit writes them, for one method: a model's map lights the square at the corners
    in moves[model] (for the first `fraction` of the images) and the centred blob otherwise; its p(target) is 0.9 with
    the square at the corners in uses[model], 0.05 otherwise."""
    per_image = {}
    for model in gce.AUDIT_MODELS:
        for state in ("clean", "stamped"):
            for k, corner in enumerate(gce.CORNERS):
                maps = BLOB.expand(N, 32, 32).clone()
                if state == "stamped" and corner in moves[model]:
                    maps[:int(N * fraction)] = MASKS[k].float()
                scored = gce.score_at_corners(maps, MASKS, TOLERANCE, CELL)
                for measure, values in scored.items():
                    key = f"scores/{model}/Grad-CAM/layer4.1.conv2/nonfrogs/{state}/{measure}"
                    per_image.setdefault(key, values.numpy().copy())[:, k] = values[:, k].numpy()
        p = np.full((N, 5), 0.05)
        p[:, 1:] = [0.9 if c in uses[model] else 0.05 for c in gce.CORNERS]
        per_image[f"p_target/{model}/nonfrogs"] = p
    return per_image


def verdict(moves: dict[str, set], uses: dict[str, set] | None = None, fraction: float = 1.0) -> dict:
    uses = uses or {"standard": set(), "biased": {"top-left"}, "control": set()}
    summary = gce.audit_summary(hand_built(moves, uses, fraction), resamples=200, seed=0)
    (row,) = summary["verdicts"]
    return row


ALL = set(gce.CORNERS)


def test_a_faithful_map_passes():
    row = verdict({"standard": set(), "biased": {"top-left"}, "control": set()})
    assert (row["reveals"], row["selective"], row["specific"], row["verdict"]) == ("pass", "pass", "pass", "reveals")
    assert row["used_corners"] == ["top-left"] and row["control_false_alarms"] == []
    assert verdict({"standard": set(), "biased": {"top-left"}, "control": set()}, fraction=0.7)["verdict"] == "reveals"


def test_a_fixed_blob_fails_to_reveal():
    row = verdict({"standard": set(), "biased": set(), "control": set()})
    assert row["reveals"] == "fail" and row["verdict"] == "fails"


def test_a_bright_patch_detector_fails():
    row = verdict({"standard": ALL, "biased": ALL, "control": ALL})
    assert (row["reveals"], row["selective"], row["specific"], row["verdict"]) == ("pass", "fail", "fail", "fails")
    assert row["control_false_alarms"] == ["top-right", "bottom-left", "bottom-right"]


def test_a_map_that_moves_in_the_control_fails():
    row = verdict({"standard": set(), "biased": {"top-left"}, "control": {"top-left"}})
    assert (row["selective"], row["specific"], row["verdict"]) == ("pass", "fail", "fails")


def test_a_map_that_moves_at_every_corner_fails():
    row = verdict({"standard": set(), "biased": ALL, "control": set()})
    assert (row["reveals"], row["selective"], row["specific"], row["verdict"]) == ("pass", "fail", "pass", "fails")


def test_the_rule_follows_the_corners_the_model_uses_and_says_unclear_when_the_data_do_not_decide():
    two = {"standard": set(), "biased": {"top-left", "top-right"}, "control": set()}
    row = verdict(two, two)
    assert row["used_corners"] == ["top-left", "top-right"] and row["verdict"] == "reveals"
    assert verdict({"standard": set(), "biased": {"top-left"}, "control": set()}, two)["reveals"] == "fail"
    assert verdict(two, {"standard": set(), "biased": set(), "control": set()})["verdict"] == "n/a"  # no shortcut
    # A quarter of the images move: the interval straddles the margin (0.2) -> neither pass nor fail.
    row = verdict({"standard": set(), "biased": {"top-left"}, "control": set()}, fraction=0.25)
    assert row["reveals"] == "unclear" and row["verdict"] == "unclear"
    assert gce.judge([[0.3, 0.5], [0.25, 0.9]], "above") == "pass" and gce.judge([], "below") == "n/a"
    assert gce.judge([[0.3, 0.5], [0.0, 0.1]], "above") == "fail" and gce.judge([[0.1, 0.3]], "below") == "unclear"


def test_one_image_decides_nothing():
    """Fault round 12: a group the data left at one image (or occlusion's first image alone) got zero-width 'intervals'
    that the rule judged as if one value were certain."""
    moves = {"standard": set(), "biased": {"top-left"}, "control": set()}
    assert verdict(moves)["verdict"] == "reveals"  # 40 images
    per_image = hand_built(moves, moves)
    one = gce.audit_summary({k: v[:1] for k, v in per_image.items()}, 200, 0)
    (row,) = one["verdicts"]
    assert (row["reveals"], row["verdict"], row["used_corners"]) == ("unclear", "unclear", [])
    assert all(p["use"]["ci95"][0] == p["use"]["ci95"][1] for p in one["predictions"])  # the zero-width intervals
    # one image's scores (occlusion's first image) with every image's p(target): the corner is used, its delta unknown
    scores_one = gce.audit_summary({k: v[:1] if k.startswith("scores/") else v for k, v in per_image.items()}, 200, 0)
    (row,) = scores_one["verdicts"]
    assert (row["used_corners"], row["reveals"], row["selective"], row["specific"], row["verdict"]) == (
        ["top-left"], "unclear", "unclear", "unclear", "unclear")
    assert gce.judged_interval({"ci95": [0.5, 0.5], "n": 1}) == (-float("inf"), float("inf"))
    assert gce.judged_interval({"ci95": [0.3, 0.5], "n": 2}) == [0.3, 0.5]
    assert gce._fmt_ci({"mean": 0.5, "ci95": [0.5, 0.5], "n": 1}, "+.2f") == "+0.50 [one image]"


def test_the_records_hold_the_levels_beside_every_delta():
    summary = gce.audit_summary(hand_built({"standard": set(), "biased": {"top-left"}, "control": set()},
                                           {"standard": set(), "biased": {"top-left"}, "control": set()}), 200, 0)
    (r,) = [r for r in summary["records"] if (r["model"], r["corner"], r["measure"]) == ("biased", "top-left", "point_px")]
    assert (r["method"], r["layer"], r["group"], r["n"]) == ("Grad-CAM", "layer4.1.conv2", "nonfrogs", N)
    assert (r["stamped"], r["clean"], r["delta"]["mean"]) == (1.0, 0.0, 1.0)
    (p,) = [p for p in summary["predictions"] if (p["model"], p["corner"]) == ("biased", "top-left")]
    assert p["p_stamped"] == pytest.approx(0.9) and p["use"]["mean"] == pytest.approx(0.85)
    assert len(summary["records"]) == 3 * 4 * len(gce.AUDIT_MEASURES)


def test_hotspot_check_tells_a_hotspot_that_follows_the_object_from_one_pinned_by_the_square():
    g = torch.Generator().manual_seed(0)
    objects = torch.zeros(30, 32, 32)
    for i, (r, c) in enumerate(torch.randint(8, 24, (30, 2), generator=g).tolist()):
        objects[i, r - 4:r + 4, c - 4:c + 4] = 0.5  # the standard model's hotspot: on the object, wherever it is
        objects[i, r, c] = 1.0
    pinned = torch.zeros(30, 32, 32)
    pinned[:, 8:14, 8:14] = 1.0  # one cell in from the square, whatever the image
    check = gce.hotspot_check({"standard": objects, "biased": pinned}, MASKS[0], TOLERANCE, 200, 0)
    assert check["near_square"]["biased"]["mean"] == 1.0 and check["near_square"]["standard"]["mean"] < 0.5
    assert abs(check["sim_same_minus_other"]["mean"]) < 0.1
    follows = gce.hotspot_check({"standard": objects, "biased": objects * 0.5 + pinned * 0.1}, MASKS[0], TOLERANCE, 200, 0)
    assert follows["sim_same_minus_other"]["ci95"][0] > 0.2


# ---------------------------------------------------------------- toy models through the whole audit

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


class CornerDetector(nn.Module):
    """'frog' logit from yellow pixels in the top-left quadrant only: a model that uses the square at one corner.
    Its `features` light yellow anywhere, so Grad-CAM (one channel, its gradient averaged over space) lights the square
    at every corner although the decision ignores three of them; HiResCAM (gradient x activation per position) does
    not. A known failure of gradient averaging, which the verdict must catch."""

    def __init__(self):
        super().__init__()
        self.features = SquareDetector().features
        quadrant = torch.zeros(1, 1, 32, 32)
        quadrant[..., :16, :16] = 1.0
        self.register_buffer("quadrant", quadrant)

    def forward(self, x):
        score = (self.features(x).clamp(max=1.0) * self.quadrant).flatten(1).mean(1) * 1000
        logits = torch.zeros(len(x), 10, device=x.device)
        return logits.index_copy(1, torch.tensor([6], device=x.device), score[:, None])


@pytest.fixture(scope="module")
def toy_audit():
    cfg = gce.Config(audit_layers="features", channels_last=False, eval_batch_size=16, audit_images=18,
                     audit_occlusion_images=3, bootstrap_resamples=100, occlusion_stride=4, methods="GradCAM,HiResCAM",
                     progress=False)
    g = torch.Generator().manual_seed(0)
    test = gce.Split(torch.randint(0, 120, (200, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(200) % 10)
    models = {"standard": SquareDetector(colour_sign=(0.0, 0.0, 1.0), bias=-1.0),  # looks at blue: ignores the square
              "biased": CornerDetector(), "control": FixedBlob()}
    report, per_image = gce.shortcut_audit(models, cfg, test)
    return cfg, test, report, per_image


def find(rows, **where):
    (row,) = [r for r in rows if all(r[k] == v for k, v in where.items())]
    return row


def test_audit_on_models_whose_answer_is_known(toy_audit):
    cfg, test, report, _ = toy_audit
    assert report["groups"]["frogs"]["images"] == 18 and report["groups"]["nonfrogs"]["images"] == 18
    assert set(report["groups"]["nonfrogs"]["per_class"]) == set(gce.CIFAR10_CLASSES) - {"frog"}
    assert report["area_prior"] == pytest.approx(36 / 1024) and report["occlusion"]["images"] == dict(frogs=3,
                                                                                                     nonfrogs=3)
    for group in ("frogs", "nonfrogs"):
        use = {c: find(report["predictions"], model="biased", group=group, corner=c)["use"]["mean"] for c in gce.CORNERS}
        assert use["top-left"] > 0.85 and max(use[c] for c in gce.CORNERS[1:]) == 0.0
        verdicts = {(v["method"], v["layer"]): v for v in report["verdicts"] if v["group"] == group}
        assert verdicts[("HiResCAM", "features")]["verdict"] == "reveals"
        # Guided Grad-CAM multiplies Grad-CAM's map by the guided gradients, which are zero where the decision ignores
        # the square: the product stays there.
        assert verdicts[("Guided Grad-CAM", "features")]["verdict"] == verdicts[("Guided Backprop", "-")]["verdict"] \
            == "reveals"
        grad_cam = verdicts[("Grad-CAM", "features")]
        assert (grad_cam["reveals"], grad_cam["selective"], grad_cam["verdict"]) == ("pass", "fail", "fails")
        r = find(report["records"], model="biased", method="Grad-CAM", layer="features", group=group, corner="top-right",
                 measure="point_cell")
        assert (r["stamped"], r["clean"]) == (1.0, 0.0)  # lights the square where the model ignores it
        for v in verdicts.values():  # the fixed blob (control) never moves; the blue-looking standard model neither
            assert v["specific"] in ("pass", "n/a") and v["control_false_alarms"] == []
        assert find(report["records"], model="biased", method="Occlusion", layer="-", group=group, corner="top-left",
                    measure="point_px")["n"] == 3
    baseline = find(report["baselines"], method="Grad-CAM", layer="features")  # 'features' is 32x32: pixels
    assert baseline["cell_px"] == 1 and baseline["point_cell_chance"] == pytest.approx(36 / 1024, abs=0.01)
    assert report["hotspot"]["near_square"]["biased"]["mean"] == 1.0


def test_every_record_can_be_recomputed_from_the_per_image_arrays(toy_audit, tmp_path):
    cfg, test, report, per_image = toy_audit
    np.savez_compressed(tmp_path / "audit_per_image.npz", **per_image)
    saved = dict(np.load(tmp_path / "audit_per_image.npz"))
    assert np.array_equal(saved["indices/frogs"], gce.audit_groups(test.labels, 6, 18, cfg.seed)["frogs"].numpy())
    again = gce.audit_summary({k: v for k, v in saved.items() if not k.startswith("maps/")}, cfg.bootstrap_resamples,
                              cfg.seed)
    assert again["records"] == report["records"] and again["verdicts"] == report["verdicts"]
    assert saved["scores/control/Guided Backprop/-/nonfrogs/stamped/point_px"].shape == (18, 4)
    assert saved["maps/biased/Grad-CAM/features/frogs/top-left"].shape == (32, 32)  # the figures' example maps


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


def _damaged(change):
    per_image = hand_built({"standard": set(), "biased": {"top-left"}, "control": set()},
                           {"standard": set(), "biased": {"top-left"}, "control": set()})
    change(per_image)
    return per_image


STAMPED = "scores/biased/Grad-CAM/layer4.1.conv2/nonfrogs/stamped/point_px"


@pytest.mark.parametrize("change, resamples, message", [
    # Fault round 4: a cut array was a raw IndexError; a missing p(target) silently dropped a model's predictions
    # (and with them its corners' use); NaN and resamples=0 were named after mean_with_ci, not the array or this function.
    (lambda d: d.update({STAMPED: d[STAMPED][:, :2]}), 200,
     f"audit_summary: {STAMPED} must be scores/<model>/<method>/<layer>/<group>/<stamped|clean>/<measure> [N, 4], "
     "got float64 of shape (40, 2)"),
    (lambda d: d.pop("p_target/standard/nonfrogs"), 200,
     "audit_summary: per_image lacks p_target/standard/nonfrogs (each model and group with scores needs its p(target)"),
    (lambda d: d[STAMPED].__setitem__((0, 0), np.nan), 200, f"audit_summary: {STAMPED} holds 1 NaN or infinite value(s)"),
    (lambda d: d.pop(STAMPED.replace("stamped", "clean")), 200,
     f"audit_summary: {STAMPED} needs {STAMPED.replace('stamped', 'clean')} of the same shape (40, 4)"),
    (lambda d: d.update({"p_target/standard/nonfrogs/none": np.zeros(40)}), 200,  # an older run's layout
     "audit_summary: p_target/standard/nonfrogs/none must be p_target/<model>/<group> [N, 5], got float64 of shape (40,)"),
    (lambda d: d.update({STAMPED: d[STAMPED] > 0}), 200, f"audit_summary: {STAMPED} must hold numbers (probabilities "
                                                         "or scores), got bool; pass the arrays"),  # 'an older run's?'
    (lambda d: None, 0, "audit_summary: resamples must be a whole number >= 10, got 0"),
    # Fault round 13: one resample made a zero-width 'interval' that turned an unclear verdict firm; a bad seed was
    # blamed on mean_with_ci.
    (lambda d: None, 1, "audit_summary: resamples must be a whole number >= 10, got 1"),
    (lambda d: None, 9, "audit_summary: resamples must be a whole number >= 10, got 9"),
])
def test_audit_summary_refuses_damaged_arrays_naming_the_array(change, resamples, message):
    with pytest.raises(ValueError) as error:
        gce.audit_summary(_damaged(change), resamples, 0)
    assert str(error.value).startswith(message), str(error.value)


@pytest.mark.parametrize("seed", [-1, 0.5, "0", True])
def test_audit_summary_names_itself_for_a_bad_seed(seed):
    with pytest.raises(ValueError, match=r"^audit_summary: seed must be a whole number >= 0, got "):
        gce.audit_summary(_damaged(lambda d: None), 200, seed)


def test_one_resample_is_refused_where_it_would_have_turned_unclear_into_reveals():
    """Fault round 13 #3: with resamples=1 the 'interval' was one resampled mean; values whose honest interval straddles
    0 came out with a zero-width interval away from it."""
    values = torch.tensor([-1.0, 0.2, 0.3, 0.4, 0.5, 0.6])
    honest = gce.mean_with_ci(values, 10_000, 0)["ci95"]
    assert honest[0] < 0 < honest[1]
    for resamples in (0, 1, 9):
        with pytest.raises(ValueError, match=rf"^mean_with_ci: resamples must be a whole number >= 10, got {resamples}$"):
            gce.mean_with_ci(values, resamples, 0)
    assert gce.mean_with_ci(values, 10, 0)["ci95"][0] < gce.mean_with_ci(values, 10, 0)["ci95"][1]
    with pytest.raises(ValueError, match="^audit_summary: per_image must be a dict of arrays"):
        gce.audit_summary([1, 2], 200, 0)

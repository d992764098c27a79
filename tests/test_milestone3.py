"""Milestone 3: Guided Backprop, Guided Grad-CAM, occlusion, faithfulness, sanity check and the shortcut audit."""

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import grad_cam_experiment as gce

SQUARE = gce.artifact_mask(gce.Square(6, (255, 255, 0), "top-left"))


# ---------------------------------------------------------------- Guided Backprop and Guided Grad-CAM

def test_guided_backprop_matches_captum(model, images):
    from captum.attr import GuidedBackprop as CaptumGuidedBackprop
    classes = torch.tensor([1, 6, 6, 0, 9])
    ours = gce.GuidedBackprop(model).gradients(images, classes)
    peer_model = copy.deepcopy(model)  # Captum hooks the model's ReLUs (and removes the hooks after)
    theirs = CaptumGuidedBackprop(peer_model).attribute(images.clone().requires_grad_(), target=classes)
    assert ours.abs().max() > 0
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_guided_backprop_matches_pytorch_grad_cam(model, images, dtype):
    # float64: our batched gradients equal the peer's one-image-per-call ones exactly. In float32 the conv kernels'
    # blocking depends on the batch size, and the guided rule's `grad > 0` turns those 1e-8 differences into
    # visible ones where a gradient is near zero, so float32 is compared at the peer's batch size of one.
    from pytorch_grad_cam import GuidedBackpropReLUModel
    model, images = model.to(dtype), images.to(dtype)
    guided = gce.GuidedBackprop(model)
    ours = guided.gradients(images, 3) if dtype == torch.float64 else \
        torch.cat([guided.gradients(images[i:i + 1], 3) for i in range(len(images))])
    peer = GuidedBackpropReLUModel(copy.deepcopy(model), device="cpu")  # it swaps the model's ReLUs
    for i in range(len(images)):  # the peer explains one image per call
        theirs = torch.from_numpy(peer(images[i:i + 1].clone(), target_category=3)).permute(2, 0, 1)
        torch.testing.assert_close(ours[i], theirs, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-7)


def test_guided_backprop_is_the_guided_rule_on_a_tiny_network():
    # y = w2 . relu(W1 x): guided gradient = W1^T [(W1 x > 0) * relu(w2)], plain gradient = W1^T [(W1 x > 0) * w2].
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 8, bias=False), nn.ReLU(), nn.Linear(8, 2, bias=False)).double()
    x = torch.randn(3, 3, 2, 2, dtype=torch.float64)
    ours = gce.GuidedBackprop(net).gradients(x, 1).flatten(1)
    w1, w2 = net[1].weight, net[3].weight[1]
    active = (x.flatten(1) @ w1.T > 0).double()
    expected = (active * w2.clamp(min=0)) @ w1
    torch.testing.assert_close(ours, expected.detach())
    assert not torch.allclose(ours, ((active * w2) @ w1).detach())  # it is not the plain gradient


def test_guided_backprop_batched_equals_per_image_and_leaves_no_trace(model, images):
    model, images = model.double(), images.double()
    relus_before = [(name, m, m.inplace) for name, m in model.named_modules() if isinstance(m, nn.ReLU)]
    state = copy.deepcopy(model.state_dict())
    model.train()
    x = images.clone()
    guided = gce.GuidedBackprop(model)
    batched = guided.gradients(x, 2)
    single = torch.cat([guided.gradients(x[i:i + 1], 2) for i in range(len(x))])
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-12)
    assert torch.equal(x, images) and x.grad is None
    assert [(n, m, m.inplace) for n, m in model.named_modules() if isinstance(m, nn.ReLU)] == relus_before
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert model.training and all(p.grad is None for p in model.parameters())


def test_guided_backprop_needs_relu_modules():
    with pytest.raises(gce.UserError, match="needs nn.ReLU modules"):
        gce.GuidedBackprop(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)))


def test_guided_backprop_maps_are_the_saliency_of_its_gradients(model, images):
    guided = gce.GuidedBackprop(model)
    grads = guided.gradients(images, 4)
    result = guided.explain(images, 4)
    assert result.maps.shape == guided(images, 4).shape == (5, 32, 32)
    torch.testing.assert_close(result.maps, grads.abs().amax(1), rtol=0, atol=0)
    assert result.classes.tolist() == [4] * 5 and result.logits.shape == (5, 10)


def test_guided_grad_cam_is_the_pointwise_product(model, images):
    grads = gce.GuidedBackprop(model).gradients(images, 4)
    cams = gce.GradCAM(model)(images, 4)
    expected = (grads * cams[:, None]).abs().amax(1)
    torch.testing.assert_close(gce.guided_grad_cam(grads, cams), expected)
    assert gce.guided_grad_cam(grads, cams).shape == (5, 32, 32)


# ---------------------------------------------------------------- Occlusion

@pytest.mark.parametrize("patch, stride", [(8, 2), (6, 4)])
def test_occlusion_matches_captum(model, images, patch, stride):
    from captum.attr import Occlusion
    classes = torch.tensor([3, 3, 8, 1, 0])
    images = torch.nn.functional.avg_pool2d(images, 2)  # 16x16: 25 windows of 8 at stride 2, not 169
    ours = gce.Occlusion(model, patch=patch, stride=stride, images_per_forward=200)(images, classes)
    theirs = Occlusion(lambda x: model(x).softmax(1)).attribute(
        images, sliding_window_shapes=(3, patch, patch), strides=(3, stride, stride), baselines=0.0, target=classes)
    assert ours.shape == (5, 16, 16) and ours.abs().max() > 0
    torch.testing.assert_close(ours, theirs[:, 0], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- Toy models whose right answer is known

class SquareDetector(nn.Module):
    """'frog' logit = 10 x the share of yellow pixels; a pure shortcut model. `features` is a [B, 1, H, W] map
    that is 1 exactly on yellow pixels of normalised input, so its Grad-CAM is the square itself."""

    def __init__(self, colour_sign: tuple = (1.0, 1.0, -1.0), bias: float = -5.0):
        super().__init__()
        conv = nn.Conv2d(3, 1, 1)
        with torch.no_grad():
            conv.weight.copy_(torch.tensor(colour_sign).view(1, 3, 1, 1))
            conv.bias.fill_(bias)
        self.features = nn.Sequential(conv, nn.ReLU())
        self.gain = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        score = self.features(x).clamp(max=1.0).flatten(1).mean(1) * self.gain * 100
        logits = torch.zeros(len(x), 10, device=x.device)
        return logits.index_copy(1, torch.tensor([6], device=x.device), score[:, None])


def test_deletion_and_insertion_curves_on_a_model_whose_answer_is_known():
    model = SquareDetector()
    images = gce.normalize(gce.stamp_square(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)))
    on_square = SQUARE.float().expand(2, 32, 32)
    result = gce.deletion_insertion(model, images, torch.tensor([6, 6]), on_square, steps=32, images_per_forward=64)
    # Deleting the square first: 32 of its 36 pixels go at step 1, all of it at step 2; then every logit is 0
    # and p(frog) = 1/10 for the remaining 30 steps.
    curve = result["deletion_curve"][0]
    with torch.no_grad():
        assert torch.isclose(curve[0], model(images).softmax(1)[0, 6]) and curve[0] > 0.99
    assert 0.1 < curve[1] < curve[0] and torch.allclose(curve[2:], torch.tensor(0.1))
    reverse = gce.deletion_insertion(model, images, torch.tensor([6, 6]), 1 - on_square, steps=32,
                                     images_per_forward=64)
    assert (result["deletion_auc"] < reverse["deletion_auc"]).all()
    assert (result["insertion_auc"] > reverse["insertion_auc"]).all()
    assert torch.allclose(result["insertion_curve"][:, -1], result["deletion_curve"][:, 0])  # all pixels back


def test_importance_order_breaks_ties_randomly_not_by_position():
    order = gce.importance_order(torch.zeros(1, 32, 32), seed=0)[0]
    assert sorted(order.tolist()) == list(range(1024)) and order[:36].float().mean() > 100
    peaked = torch.zeros(1, 32, 32)
    peaked[0, 20, 5] = 1
    assert gce.importance_order(peaked)[0, 0] == 20 * 32 + 5


def test_artifact_share_and_pointing_game_on_hand_built_maps():
    on_square = SQUARE.float()[None]
    uniform = torch.ones(1, 32, 32)
    assert gce.artifact_attention_share(on_square, SQUARE).item() == 1.0
    assert gce.artifact_attention_share(uniform, SQUARE).item() == pytest.approx(36 / 1024)
    assert gce.artifact_attention_share(torch.zeros(1, 32, 32), SQUARE).item() == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        gce.artifact_attention_share(-uniform, SQUARE)
    near, far = torch.zeros(1, 32, 32), torch.zeros(1, 32, 32)
    near[0, 10, 10], far[0, 20, 20] = 1.0, 1.0
    assert gce.pointing_game(on_square, SQUARE, 0).item()
    assert not gce.pointing_game(near, SQUARE, 0).item() and gce.pointing_game(near, SQUARE, 8).item()
    assert not gce.pointing_game(far, SQUARE, 8).item()
    assert not gce.pointing_game(torch.zeros(1, 32, 32), SQUARE, 8).item()  # a constant map points nowhere
    assert gce.dilate(SQUARE, 8).sum() == 14 * 14


# ---------------------------------------------------------------- Statistics

def test_spearman_matches_scipy_including_ties():
    from scipy.stats import spearmanr
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (4, 8, 8), generator=g).float()  # many ties
    b = torch.rand(4, 8, 8, generator=g) + 0.3 * a
    ours = gce.spearman(a, b)
    for i in range(4):
        assert ours[i].item() == pytest.approx(spearmanr(a[i].flatten(), b[i].flatten()).statistic, abs=1e-12)
    assert gce.spearman(torch.zeros(1, 8, 8), b[:1]).item() == 0.0  # a constant map has no ranking


def test_average_ranks_matches_scipy():
    from scipy.stats import rankdata
    x = torch.tensor([[3.0, 1.0, 3.0, 2.0, 1.0, 3.0]])
    assert gce.average_ranks(x)[0].tolist() == rankdata(x[0].numpy()).tolist()


def test_bootstrap_interval():
    constant = gce.mean_with_ci(torch.full((50,), 0.3), resamples=200)
    assert constant["mean"] == pytest.approx(0.3) and constant["ci95"] == pytest.approx([0.3, 0.3])
    values = torch.linspace(0, 1, 101)
    r = gce.mean_with_ci(values, resamples=2000, seed=1)
    assert r["ci95"][0] < 0.5 < r["ci95"][1] and r["ci95"][1] - r["ci95"][0] == pytest.approx(0.113, abs=0.02)


# ---------------------------------------------------------------- Sanity check

def test_cascading_randomization_goes_from_the_logits_down_on_a_copy(model):
    original = copy.deepcopy(model.state_dict())
    seen = []
    for stage, randomized in gce.cascading_randomization(model, seed=0):
        changed = {name for name in ("fc", "layer4", "layer3", "layer2", "layer1", "conv1", "bn1")
                   if any(not torch.equal(v, original[f"{name}.{k}"])
                          for k, v in randomized.get_submodule(name).state_dict().items())}
        seen.append((stage, changed))
    assert [s for s, _ in seen] == list(gce.CASCADE)
    assert seen[0][1] == {"fc"} and seen[1][1] == {"fc", "layer4"} and seen[2][1] == {"fc", "layer4", "layer3"}
    assert seen[-1][1] == {"fc", "layer4", "layer3", "layer2", "layer1", "conv1", "bn1"}
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())  # the caller's model
    first_fc = next(iter(gce.cascading_randomization(model, seed=0)))[1].fc.weight.clone()
    assert torch.equal(first_fc, next(iter(gce.cascading_randomization(model, seed=0)))[1].fc.weight)  # seeded
    assert not torch.equal(first_fc, next(iter(gce.cascading_randomization(model, seed=1)))[1].fc.weight)


def test_sanity_check_reports_every_method_and_stage(model, images):
    # 16x16 images and layer3 (256 channels, a 4x4 map there): Score-CAM's 7 x 256 forward passes per image, 8x cheaper
    cfg = gce.Config(channels_last=False, bootstrap_resamples=50, scorecam_images=2, target_layer="layer3")
    u8 = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    report = gce.sanity_check(model, cfg, u8, torch.tensor([0, 1, 2, 3]))
    rows = report["spearman_with_original"]
    assert set(rows) == {"Grad-CAM", "Guided Backprop", "Guided Grad-CAM", "Grad-CAM++", "HiResCAM", "LayerCAM",
                         "XGrad-CAM", "Score-CAM"}
    assert {r["n"] for r in rows["Score-CAM"]} == {2} and {r["n"] for r in rows["HiResCAM"]} == {4}
    assert all([r["stage"] for r in v] == ["trained", *gce.CASCADE] for v in rows.values())
    assert all(-1 <= r["mean"] <= 1 and 0 <= r["constant_maps"] <= 1 for v in rows.values() for r in v)
    # Re-initialising fc replaces Grad-CAM's class weights, so its maps change at once; Guided Backprop's barely
    # depend on fc (the finding of Adebayo et al.). A cascade that randomised nothing would leave both at 1.
    at_fc = {m: v[1]["mean"] for m, v in rows.items()}
    assert at_fc["Grad-CAM"] < 0.8 and at_fc["Guided Backprop"] > 0.8
    assert report["verdict"]["Guided Backprop"] == "fails"
    # One Score-CAM image is no evidence: Score-CAM is then left out (and its 7 x 256 forward passes not run)
    one = gce.sanity_check(model, gce.dataclasses.replace(cfg, methods="GradCAM,ScoreCAM", scorecam_images=1), u8[:2],
                           torch.tensor([0, 1]))
    assert set(one["verdict"]) == {"Grad-CAM", "Guided Backprop", "Guided Grad-CAM"}


def test_faithfulness_report_has_every_method_and_baseline(model):
    cfg = gce.Config(channels_last=False, bootstrap_resamples=50, deletion_steps=4, occlusion_stride=8,
                     methods="HiResCAM,ScoreCAM", scorecam_images=2)
    u8 = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    report, maps = gce.faithfulness(model, cfg, u8, torch.tensor([1, 2, 3]))
    assert set(maps) == {"Grad-CAM", "Guided Backprop", "Guided Grad-CAM", "HiResCAM", "Score-CAM"}
    assert maps["Grad-CAM"].shape == (3, 32, 32) and maps["Score-CAM"].shape == (2, 32, 32)  # --scorecam-images
    assert set(report["methods"]) == {*maps, "Random", "Gaussian prior"}
    for method, r in report["methods"].items():
        n = 2 if method == "Score-CAM" else 3
        assert {"spearman_with_occlusion", "deletion_auc", "insertion_auc"} <= r.keys() and r["images"] == n
        assert 0 <= r["deletion_auc"]["mean"] <= 1 and r["spearman_with_occlusion"]["n"] == n
        if method not in gce.BASELINES:  # paired over the same images: method minus each baseline
            paired = r["minus Random"]["insertion_auc"]
            assert paired["n"] == n and r["minus Gaussian prior"]["deletion_auc"]["n"] == n
            if n == 3:  # on all images the mean difference is the difference of the means
                assert paired["mean"] == pytest.approx(r["insertion_auc"]["mean"]
                                                       - report["methods"]["Random"]["insertion_auc"]["mean"])
    assert len(report["mean_curves"]["Grad-CAM"]["deletion_curve"]) == 5


def test_faithfulness_ranks_a_faithful_map_above_the_baselines():
    # SquareDetector uses exactly the square, and its Grad-CAM at `features` is exactly the square: it must agree
    # with occlusion far better than the random map, and deleting by it must destroy p(frog) faster.
    cfg = gce.Config(channels_last=False, bootstrap_resamples=100, deletion_steps=8, target_layer="features",
                     occlusion_patch=4, occlusion_stride=2)
    g = torch.Generator().manual_seed(4)
    u8 = gce.stamp_square(torch.randint(0, 120, (6, 3, 32, 32), dtype=torch.uint8, generator=g))
    report, _ = gce.faithfulness(SquareDetector(), cfg, u8, torch.full((6,), 6))
    grad_cam, rand = report["methods"]["Grad-CAM"], report["methods"]["Random"]
    assert grad_cam["spearman_with_occlusion"]["mean"] > 0.5 > rand["spearman_with_occlusion"]["mean"]
    assert grad_cam["deletion_auc"]["mean"] < rand["deletion_auc"]["mean"] - 0.3
    assert grad_cam["insertion_auc"]["mean"] > rand["insertion_auc"]["mean"]


MAPS = torch.rand(2, 32, 32)
U8 = torch.zeros(3, 3, 32, 32, dtype=torch.uint8)


@pytest.mark.parametrize("call, message", [
    # normalize of floats divided by 255 again, silently: a near-constant input the model never saw.
    (lambda m, x: gce.normalize(torch.rand(2, 3, 32, 32)), "normalize: images must be uint8 pixels [N, 3, H, W] "
                                                           "(0..255, before normalize()), got torch.float32"),
    (lambda m, x: gce.predict_logits(m, torch.zeros(2, 3, 32, 32, dtype=torch.uint8), 0),
     "predict_logits: batch_size must be a whole number >= 1, got 0"),
    # fault round 12: a batch size above int64 reached torch's split as "Overflow when unpacking long long"
    (lambda m, x: gce.predict_logits(m, torch.zeros(2, 3, 32, 32, dtype=torch.uint8), 10 ** 20),
     "predict_logits: batch_size must be a whole number 1..2**63-1, got 100000000000000000000"),
    (lambda m, x: gce.batched(gce.GradCAM(m, "layer3"), x, None, 10 ** 20),
     "batched: batch_size must be a whole number 1..2**63-1, got 100000000000000000000"),
    # one image [3, H, W]: "must be uint8 ... got torch.uint8" read as a contradiction without the shape's hint
    (lambda m, x: gce.normalize(torch.zeros(3, 32, 32, dtype=torch.uint8)), "normalize: images must be uint8 pixels "
     "[N, 3, H, W] (0..255, before normalize()), got torch.uint8 of shape (3, 32, 32); for one image pass images[None]"),
    (lambda m, x: gce.stamp_square(torch.zeros(3, 32, 32, dtype=torch.uint8)), "stamp_square: images must be uint8 "
     "pixels [N, 3, H, W] (0..255, before normalize()), got torch.uint8 of shape (3, 32, 32); for one image pass "
     "images[None]"),
    (lambda m, x: gce.pointing_game(MAPS, torch.ones(16, 16, dtype=torch.bool)), "pointing_game: mask must be a bool "
                                                                                 "tensor [H, W] or [K, H, W] of the "
                                                                                 "maps' size (32, 32)"),
    (lambda m, x: gce.pointing_game(MAPS, SQUARE.float()), "pointing_game: mask must be a bool tensor"),
    (lambda m, x: gce.pointing_game(MAPS, SQUARE, -1), "pointing_game: tolerance must be a whole number >= 0, got -1"),
    (lambda m, x: gce.pointing_game(MAPS[0], SQUARE), "pointing_game: expects a floating-point tensor [B, H, W]"),
    (lambda m, x: gce.artifact_attention_share(MAPS, SQUARE[:8]), "artifact_attention_share: mask must be a bool"),
    (lambda m, x: gce.artifact_attention_share(-MAPS, SQUARE), "artifact_attention_share: maps must be non-negative"),
    (lambda m, x: gce.spearman(MAPS, MAPS[:1]), "spearman: the two sets of maps must have one shape, got (2, 32, 32) "
                                                "and (1, 32, 32)"),
    (lambda m, x: gce.mean_with_ci(torch.tensor([])), "mean_with_ci: values must be a non-empty 1-D tensor"),
    (lambda m, x: gce.mean_with_ci([0.1, 0.2]), "mean_with_ci: values must be a non-empty 1-D tensor (one number per "
                                                "image), got list"),
    (lambda m, x: gce.mean_with_ci(torch.rand(3), resamples=0), "mean_with_ci: resamples must be a whole number >= 10"),
    # A NaN map or value gave a NaN measure (or a 'miss') silently.
    (lambda m, x: gce.mean_with_ci(torch.tensor([0.5, float("nan")])), "mean_with_ci: values hold 1 NaN or infinite "
                                                                       "value(s)"),
    (lambda m, x: gce.pointing_game(MAPS.clone().index_put_((torch.tensor([0]),), torch.tensor(float("nan"))), SQUARE),
     "pointing_game: the [B, H, W] of maps hold 1024 NaN or infinite value(s)"),
    (lambda m, x: gce.spearman(MAPS, MAPS / 0), "spearman: the [B, H, W] of maps hold"),
    (lambda m, x: gce.pointing_game(MAPS, SQUARE.to("meta")), "pointing_game: maps and mask must hold values"),
    # The report readers: a missing key was a bare KeyError.
    (lambda m, x: gce.console_summary({"config": {}}), "console_summary: the report lacks"),
    (lambda m, x: gce.faithfulness_figure({}, gce.Path("f.png"), False), "faithfulness_figure: the report lacks 'methods'"),
    # ...and a report that is not a dict was a TypeError (fault round 4).
    (lambda m, x: gce.summary_markdown([1, 2]), "summary_markdown: the report must be a dict (a run's metrics.json, "
                                                "read with json.load), got list [1, 2]"),
    (lambda m, x: gce.console_summary(metrics=None), "console_summary: the report must be a dict"),
    (lambda m, x: gce.deletion_insertion(m, x[:2], torch.tensor([1, 2]), MAPS[:1]),
     "deletion_insertion: maps (1, 32, 32) must be one [H, W] map per image (2, 3, 32, 32)"),
    (lambda m, x: gce.deletion_insertion(m, x[:2], torch.tensor([1, 12]), MAPS),
     "deletion_insertion: class index 12 out of range for a 10-class model"),
    (lambda m, x: gce.deletion_insertion(m, x[:2], None, MAPS), "deletion_insertion: classes must be given"),
    (lambda m, x: gce.deletion_insertion(m, x[:2], torch.tensor([1, 2]), MAPS, steps=0),
     "deletion_insertion: steps must be a whole number >= 1, got 0"),
    # Fault round 6: helpers that passed bad arguments to torch or answered silently.
    (lambda m, x: gce.minmax_normalize(torch.tensor([[[0.0, float("inf")], [1.0, 2.0]]])),
     "minmax_normalize: the [B, H, W] of maps hold 1 NaN or infinite value(s)"),  # was all NaN
    (lambda m, x: gce.balanced_subset(torch.arange(10).repeat(3), 10, 0.5), "balanced_subset: seed must be a whole "
                                                                            "number >= 0, got 0.5"),
    (lambda m, x: gce.balanced_subset(torch.arange(10).repeat(2), -10, 0), "balanced_subset: n must be a whole number "
                                                                           ">= 1, got -10"),  # took all but one per class
    (lambda m, x: gce.balanced_subset(torch.arange(10).repeat(2), 0, 0), "balanced_subset: n must be a whole number "
                                                                         ">= 1, got 0"),  # round 13: chose nothing
    (lambda m, x: gce.mean_with_ci(torch.tensor([0.1, 0.5]), 20, seed=0.5), "mean_with_ci: seed must be a whole number"),
    (lambda m, x: gce.balanced_subset(torch.arange(10).repeat(2), 50, 0), "balanced_subset: a subset of 50 images needs "
                                                                          "5 of class airplane, but the data has only 2; "
                                                                          "lower n (0 = all images)"),  # named CLI flags
    (lambda m, x: gce.judge([[0.5, 0.1]], "above"), "judge: each interval must be [low, high], got list [0.5, 0.1]"),  # 'pass'
    (lambda m, x: gce.judge([[0.5, 0.6]], "abvoe"), "judge: should must be 'above' or 'below', got 'abvoe'"),  # 'fail'
    (lambda m, x: gce.dilate(SQUARE, 2.5), "dilate: pixels must be a whole number >= 0, got 2.5"),
    (lambda m, x: gce.dilate(SQUARE, -2), "dilate: pixels must be a whole number >= 0, got -2"),
    (lambda m, x: gce.dilate(torch.rand(32, 32), 1), "dilate: mask must be a bool tensor [H, W] or [K, H, W]"),
    (lambda m, x: gce.similarity(-MAPS, MAPS), "similarity: maps must be non-negative"),  # gave 0.73
    (lambda m, x: gce.similarity(MAPS, MAPS.clone().fill_(float("nan"))), "similarity: the [B, H, W] of maps hold"),
    (lambda m, x: gce.similarity(MAPS, MAPS[:, :16, :16]), "similarity: both sets of maps must have one shape"),
    (lambda m, x: gce.occlusion_windows(32, 32, 8, 8, device="gpu"), "occlusion_windows: device must be a torch device"),
    # Fault round 6, borderline: a device this machine lacks was torch's driver error; 'all' was blamed on cam_maps.
    (lambda m, x: gce.corner_masks(4, device="cuda:99"), "corner_masks: device must be a torch device this machine has, "
                                                          "such as 'cpu' (or 'cuda' with a GPU), got str 'cuda:99' (not "
                                                          "usable here: "),
    (lambda m, x: gce.explain_all(m, x, None, "layer3", 2, methods=["all"]), "explain_all: unknown method(s) all; "
                                                                             "choose from GradCAM, GradCAMPlusPlus, "
                                                                             "HiResCAM, LayerCAM, XGradCAM, ScoreCAM "
                                                                             "('all' is the --methods flag's word"),
    (lambda m, x: gce.verdict_of([{"a": 1}], [{"b": 2}]), "verdict_of: records need model, method, layer"),  # KeyError
    (lambda m, x: gce.check_output_dir(gce.Path("/"), gce.Path("/tmp/data")),
     "--output-dir / is the file system's root or your home folder"),  # a run wrote checkpoints/ into / (as root)
    (lambda m, x: gce.console_summary({"config": [], "shortcut_audit": [], "output_dir": "x"}),
     "console_summary: the report's layout or one of its values is not what this version writes"),  # an older layout was a TypeError
    # Fault round 7: helpers that still passed bad arguments to torch, numpy or matplotlib, or answered silently.
    (lambda m, x: gce.cam_upsample(torch.rand(2, 4, 4), 32), "cam_upsample: size must be (H, W), two whole numbers "
                                                             ">= 1, got 32"),
    (lambda m, x: gce.cam_upsample(torch.rand(4, 4), (32, 32)), "cam_upsample: expects a floating-point tensor"),
    (lambda m, x: gce.importance_order(MAPS, seed=0.5), "importance_order: seed must be a whole number >= 0, got 0.5"),
    (lambda m, x: gce.importance_order(MAPS, seed=2 ** 70), "importance_order: seed must be a whole number 0..2**63-1"),
    (lambda m, x: gce.deletion_insertion(m, x[:2], torch.tensor([1, 2]), MAPS, seed="1"),
     "deletion_insertion: seed must be a whole number >= 0, got '1'"),
    (lambda m, x: gce.sample_correct(torch.rand(20, 10), torch.arange(20) % 10, -1, 0),
     "sample_correct: n must be a whole number >= 0, got -1"),  # returned 19 images
    (lambda m, x: gce.sample_correct(torch.rand(20, 10), torch.arange(10), 5, 0), "sample_correct: expects float logits"),
    (lambda m, x: gce.audit_groups(torch.arange(200) % 10, 6, 4, 0.5), "audit_groups: seed must be a whole number"),
    (lambda m, x: gce.audit_groups(list(range(10)), 6, 4, 0), "audit_groups: labels must be integer class indices [N], got list"),
    (lambda m, x: gce.native_cell("Grad-CAM@layer9", {"layer3": (8, 8)}, 2), "native_cell: Grad-CAM@layer9 needs its "
                                                                              "layer's grid"),  # KeyError
    (lambda m, x: gce.native_cell("Grad-CAM@layer3", {"layer3": (64, 64)}, 2), "native_cell: Grad-CAM@layer3 needs"),
    (lambda m, x: gce.audit_baselines(m, {"Guided Backprop": 0}, SQUARE[None], 8, (8, 2), 0),
     "audit_baselines: the cell of Guided Backprop must be a whole number >= 1, got 0"),
    (lambda m, x: gce.pointing_game(MAPS.bfloat16(), SQUARE), "pointing_game: maps must be float32 or float64, got "
                                                              "torch.bfloat16"),  # ties at the maximum: 2.5x chance
    (lambda m, x: gce.table_lines(["a", "b"], [[1, 2, 3]]), "table_lines: row 0 has 3 cells for 2 headers"),  # dropped
    (lambda m, x: gce.overlay_heatmap(np.zeros((32, 32, 3), np.uint8), np.full((32, 32), np.nan)),
     "overlay_heatmap: the map holds 1024 NaN or infinite value(s)"),  # drawn as 'no heat'
    (lambda m, x: gce.overlay_heatmap(np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32)), alpha="0.5"),
     "overlay_heatmap: expects a uint8 H x W x 3 image, an H x W map and alpha in [0, 1]"),
    (lambda m, x: gce.sanity_figure({"spearman_with_original": {}, "images": 3}, gce.Path("s.png"), False),
     "sanity_figure: the report's layout or one of its values is not what this version writes (StopIteration"),
    (lambda m, x: gce.figure_grid([], 0, "t"), "figure_grid: ncols must be a whole number >= 1, got 0"),
    (lambda m, x: gce.occlusion_map(torch.rand(2, 5), gce.occlusion_windows(32, 32, 8, 8)),
     "occlusion_map: windows must be bool [P, H, W] with P = 5"),
    (lambda m, x: gce.hotspot_check({"biased": MAPS}, SQUARE, 8, 20, 0), "hotspot_check: maps must be a dict with "
                                                                         "'biased' and 'standard' maps"),  # KeyError
    (lambda m, x: gce.judge([[0.3]], "above"), "judge: each interval must be [low, high], got list [0.3]"),  # 'pass'
    (lambda m, x: gce.interval_side([0.5, 0.1]), "interval_side: each interval must be [low, high]"),
    (lambda m, x: gce.load_checkpoint(gce.Path("none.pt"), "k", "no", "cpu"), "load_checkpoint: biased must be True or "
                                                                              "False, got 'no'"),
    (lambda m, x: gce.load_checkpoint(gce.Path("none.pt"), "k", False, "cuda:99"), "load_checkpoint: device must be a "
                                                                                   "torch device this machine has"),
    # Fault round 8: the same pattern in the helpers round 7 did not reach.
    (lambda m, x: gce.average_ranks(torch.rand(5)), "average_ranks: expects a floating-point tensor [B, L]"),
    (lambda m, x: gce.gaussian_prior(-1, 4, 4, 1.0, "cpu"), "gaussian_prior: batch must be a whole number >= 1"),
    (lambda m, x: gce.gaussian_prior(1, 4, 4, -1, "cpu"), "gaussian_prior: sigma (pixels) must be a finite number > 0"),
    (lambda m, x: gce.called_share(torch.randn(20, 10), 10), "called_share: target must be a class index 0..9, got 10"),
    (lambda m, x: gce.correct_first(torch.tensor([3, 5, 7, 9]), torch.tensor([1, 0, 1, 0] * 5)),
     "correct_first: expects integer indices [K] and a bool mask [N]"),  # gave [3, 3, 3, 3, 9, 9, 9, 9]
    (lambda m, x: gce.pick_examples(torch.arange(20) % 10, [11], 2), "pick_examples: classes must be a class index "
                                                                      "0..9, got 11"),  # an empty pick
    (lambda m, x: gce.pick_examples(torch.arange(20) % 10, [3], -1), "pick_examples: k must be a whole number >= 0"),
    (lambda m, x: gce.cell_pointing(MAPS, SQUARE[None], 0, False), "cell_pointing: cell must be a whole number >= 1"),
    (lambda m, x: gce.reinitialised(m, "layer4", 0.5), "reinitialised: seed must be a whole number >= 0, got 0.5"),
    (lambda m, x: gce.accuracy(torch.randn(20, 10), torch.full((20,), -1)), "accuracy: labels must be class indices "
                                                                            "0..9, got -1..-1"),  # 0.0
    (lambda m, x: gce.per_class_accuracy(torch.randn(20, 10), torch.full((20,), 10)), "per_class_accuracy: labels "
                                                                                      "must be class indices"),  # {}
    (lambda m, x: gce.deprocess_gradient(torch.randn(3, 32, 32)), "deprocess_gradient: expects a floating-point "
                                                                   "tensor [B, 3, H, W]"),
    (lambda m, x: gce.predicted(torch.rand(2, 10)), "predicted: expects one image's class probabilities [10]"),
    (lambda m, x: gce.resolve_device(None), "--device must be text such as auto, cpu, cuda or cuda:N"),
    (lambda m, x: gce.amp_dtype("gpu"), "amp_dtype: device must be a torch device"),
    (lambda m, x: gce.training_key({}, False, "abc", "fp32", "cpu"), "training_key: config lacks train_subset"),
    (lambda m, x: gce.training_key(gce.Config().to_dict(), "no", "abc", "fp32", "cpu"), "training_key: biased must "
                                                                                         "be True or False"),
    # Fault round 9: a seed numpy refuses, a class nothing has (stamped nothing), fewer labels than images (dropped).
    (lambda m, x: gce.seed_everything(2 ** 32), "seed_everything: seed must be a whole number 0..4294967295"),
    (lambda m, x: gce.inject_artifact(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.tensor([6, 1, 6, 2]), 10),
     "inject_artifact: target_class must be a class index 0..9, got 10"),
    (lambda m, x: gce.explain_examples(m, torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.tensor([6, 1]), "layer4",
                                       False), "explain_examples: labels must be integer class indices [4], one per image"),
    # Fault round 10 (short): flags given as text were truthy ('no' meant on), nan and wrong types reached torch.
    (lambda m, x: gce.random_crop_flip(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), 0, "no", torch.Generator()),
     "random_crop_flip: flip must be True or False, got 'no'"),  # flipped 3 of 4 images
    (lambda m, x: gce.random_crop_flip(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), 4, True, "seed"),
     "random_crop_flip: generator must be a torch.Generator"),
    (lambda m, x: gce.predict_logits(m, torch.zeros(2, 3, 32, 32, dtype=torch.uint8), 2, amp="no"),
     "predict_logits: amp must be True or False, got 'no'"),
    (lambda m, x: gce.make_optimizer(m, float("nan"), 0.9, 5e-4), "make_optimizer: lr must be a finite number >= 0"),
    (lambda m, x: gce.balanced_subset([0, 1, 2] * 10, 6, 0), "balanced_subset: labels must be integer class indices"),
    (lambda m, x: gce.balanced_subset(torch.arange(100) % 10, 10, 0, num_classes=0), "balanced_subset: num_classes "
                                                                                     "must be a whole number >= 1"),
    (lambda m, x: gce.interval_side([0.1, 0.5], margin="0.2"), "interval_side: margin must be a finite number"),
    (lambda m, x: gce.minmax_normalize(torch.rand(2, 0, 0)), "minmax_normalize: maps must have pixels"),
    (lambda m, x: gce.inject_artifact(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.tensor([6, 1, 6, 2]), 6, 6),
     "inject_artifact: square must be a Square"),
    (lambda m, x: gce.resolve_layer(m, None), "resolve_layer: the layer must be a name such as 'layer4.1.conv2'"),
    # Round 10's two left and its borderlines: silent empty results, the inner function blamed, internal helpers.
    (lambda m, x: gce.example_maps({"p_target/biased/frogs": np.zeros((2, 5))}, "Biased", "frogs", "none"),
     "example_maps: no audited model/group 'Biased'/'frogs' with condition 'none'; stored: biased/frogs"),  # was {}
    (lambda m, x: gce.example_maps({"p_target/biased/frogs": np.zeros((2, 5))}, "biased", "frogs", "center"),
     "example_maps: no audited model/group 'biased'/'frogs' with condition 'center'"),
    (lambda m, x: gce.accuracy(torch.randn(0, 10), torch.zeros(0, dtype=torch.long)), "accuracy: no images to score"),
    (lambda m, x: gce.per_class_accuracy(torch.randn(0, 10), torch.zeros(0, dtype=torch.long)),
     "per_class_accuracy: no images to score"),  # was {}
    (lambda m, x: gce.evaluate_model(m, gce.Config(), gce.Split(torch.zeros(0, 3, 32, 32, dtype=torch.uint8),
                                                                torch.zeros(0, dtype=torch.long))),
     "evaluate_model: test must be a Split(images, labels) with at least one image"),  # NaN accuracy
    (lambda m, x: gce.spearman(torch.rand(2, 0, 4), torch.rand(2, 0, 4)), "spearman: maps must have pixels"),  # 0
    (lambda m, x: gce.artifact_mask(gce.Square(6), 0, 32), "artifact_mask: height must be a whole number >= 1, got 0"),
    (lambda m, x: gce.Occlusion(m, patch=8, stride=0), "Occlusion: stride must be a whole number 1..patch (8), got 0"),
    (lambda m, x: gce.audit_summary({}, 20, 0), "audit_summary: per_image holds no scores/... arrays"),  # empty summary
    (lambda m, x: gce.cascading_randomization("model"), "cascading_randomization: model must be a torch nn.Module"),
    (lambda m, x: gce.occlusion_map(torch.rand(2, 5), torch.ones(5, 32, 32)), "occlusion_map: windows must be bool"),
    (lambda m, x: gce.check_layers("layer4", "layer3"), "check_layers: expects a layer name and a list of layer names"),
    (lambda m, x: gce.explain_all(m, x, None, "layer4", 2, scorecam_images=-1),
     "explain_all: scorecam_images must be a whole number >= 0, got -1"),  # named cam_maps
    (lambda m, x: gce.explain_examples(m, torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.tensor([6, 1]),
                                       "layer4", "no"), "explain_examples: channels_last must be True or False"),
    (lambda m, x: gce.normalize(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "yes"),
     "normalize: channels_last must be True or False, got 'yes'"),  # 'no' was true
    (lambda m, x: gce.method_layer(None), "method_layer: key must be a method label"),
    (lambda m, x: gce.forward_batch(64, "cuda:99"), "forward_batch: device must be a torch device this machine has"),
    # Fault round 19: a torch.device of a GPU this machine lacks was torch's driver error; indices past the mask were
    # torch's IndexError
    *[(lambda m, x, f=f, args=args: getattr(gce, f)(torch.device("cuda:99"), *args), f"{f}: device must be a torch device this "
       "machine has, such as 'cpu' (or 'cuda' with a GPU), got torch.device 'cuda:99' (not usable here")
      for f, args in [("training_precision", (True,)), ("amp_dtype", ()), ("precision_plan", (True, True)),
                      ("autocast_for", ()), ("environment_info", ())]],
    (lambda m, x: gce.correct_first(torch.arange(5), torch.ones(3, dtype=torch.bool)),
     "correct_first: indices must be positions 0..2 of the mask [N] (one entry per image)"),
    # Fault round 20: NaN ranked or drawn silently, raw KeyError/AttributeError, momentum 2.0 taken, the wrong function
    (lambda m, x: gce.average_ranks(torch.tensor([[3., float("nan"), 1.]])),
     "average_ranks: the [B, L] of values hold 1 NaN or infinite value(s)"),
    (lambda m, x: gce.deprocess_gradient(torch.full((1, 3, 4, 4), float("nan"))),
     "deprocess_gradient: the [B, 3, H, W] of gradients hold 48 NaN or infinite value(s)"),
    (lambda m, x: gce.judged_interval({}), "judged_interval: summary must be a mean_with_ci result"),
    (lambda m, x: gce.canonical_layer_name(None), "canonical_layer_name: name must be a dotted layer name"),
    (lambda m, x: gce.make_optimizer(m, 0.1, 2.0, 0.0), "make_optimizer: momentum must be a finite number 0..1, got 2.0"),
    (lambda m, x: gce.square_at(torch.zeros(3, 32, 32, dtype=torch.uint8), gce.Square(), "middle"),
     "square_at: condition must be one of none, top-left, top-right, bottom-left, bottom-right, got 'middle'"),
    (lambda m, x: gce.report_target({}), "report_target: the report's config must be a dict with artifact_class, got "
                                         "dict {}"),  # round 21: without the function's name
    # Fault round 21: argmax of NaN logits is class 0, scored as hits; 10**12 resamples, torch's allocation error
    (lambda m, x: gce.accuracy(torch.full((4, 10), float("nan")), torch.tensor([0, 1, 2, 3])),
     "accuracy: the logits hold 40 NaN or infinite value(s) (a diverged model?)"),  # 0.25
    (lambda m, x: gce.per_class_accuracy(torch.full((4, 10), float("inf")), torch.tensor([0, 1, 2, 3])),
     "per_class_accuracy: the logits hold 40 NaN or infinite value(s)"),  # airplane 1.0
    (lambda m, x: gce.called_share(torch.full((4, 10), float("nan")), 0), "called_share: the [N, classes] of logits "
                                                                           "hold 40 NaN or infinite value(s)"),  # 1.0
    (lambda m, x: gce.training_key(gce.Config().to_dict(), False, None, "fp32", "cpu"),
     "training_key: data must be a non-empty string (data: data_fingerprint(train, test)"),  # hashed None silently
    (lambda m, x: gce.foreign_outputs(None), "foreign_outputs: out must be an output folder (a path), got NoneType"),
    (lambda m, x: gce.is_run_output(None), "is_run_output: path must be a file's path, got NoneType"),  # round 23
    (lambda m, x: gce.looks_like_run_output(3), "looks_like_run_output: path must be a file's path, got int"),
    (lambda m, x: gce.console_summary({}, gce.Path("x")), "console_summary: too many positional arguments; call it as "
                                                          "console_summary(metrics)"),  # round 23: blamed the report
    # Fault round 22's borderlines
    (lambda m, x: gce.training_key(gce.Config().to_dict(), False, "abc", "bf17", "cpu"),
     "training_key: precision must be one of bf16, fp16, fp32 (training_precision(device, amp)), got 'bf17'"),
    (lambda m, x: gce.read_run_record(gce.Path(".")), "read_run_record: path must be an output folder's run.json "
                                                      "(output-dir/run.json), got the folder ."),  # {} as if no record
    (lambda m, x: gce.mean_with_ci(torch.rand(5), 10 ** 12), "mean_with_ci: resamples must be 10..100000, got "
                                                             "1000000000000"),
    # Borderlines of rounds 16-20: a share of nothing was NaN, cell_pointing's slips blamed pointing_game
    (lambda m, x: gce.called_share(torch.randn(0, 10), 6), "called_share: logits hold no image"),  # nan
    (lambda m, x: gce.constant_share(torch.rand(0, 4, 4)), "constant_share: expects at least one map with pixels, "
                                                           "got shape (0, 4, 4)"),  # nan
    (lambda m, x: gce.cell_pointing(MAPS, SQUARE[None], 64, False), "cell_pointing: cell must be 1..32 pixels (the "
                                                                    "maps' side), got 64"),  # named pointing_game
    (lambda m, x: gce.cell_pointing(MAPS[0], SQUARE, 8, False), "cell_pointing: expects a floating-point tensor "
                                                                "[B, H, W] of maps"),  # raw IndexError
    (lambda m, x: gce.forward_batch(0, "cpu"), "forward_batch: requested must be a whole number >= 1, got 0"),
    (lambda m, x: gce.count_images(-1), "count_images: n must be a whole number >= 0, got -1"),
    (lambda m, x: gce.comma_list(None), "comma_list: text must be comma-separated names"),
    (lambda m, x: gce.to_hwc(torch.rand(2, 3, 32, 32)), "to_hwc: images must be uint8 pixels"),
    (lambda m, x: gce.data_fingerprint(None, None), "data_fingerprint: train must be a Split(images, labels)"),
    (lambda m, x: gce.say((), "text"), "say: cfg must be a Config"),
    (lambda m, x: gce.console_lines(None), "console_lines: text must be a str"),
    (lambda m, x: gce.RunRecord(None, gce.Config()), "RunRecord: out must be the output folder (a path)"),
    # Fault round 11: training_batch's artifact (a TypeError; then inject_artifact was named), a device as 'gpu'
    # (torch's error after every image was decoded), evaluate_model's labels (named accuracy, after two passes).
    (lambda m, x: gce.training_batch(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.tensor([6, 1, 6, 2]),
                                     torch.Generator(), 4, True, False, 6),
     "training_batch: artifact must be None or (class, Square), got int 6"),
    (lambda m, x: gce.training_batch(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.tensor([6, 1, 6, 2]),
                                     torch.Generator(), 4, True, False, (6, 6)), "training_batch: square must be a Square"),
    (lambda m, x: gce.load_cifar10(gce.Config(), "gpu"), "load_cifar10: device must be a torch device"),
    # Fault round 12: the artifact's class named inject_artifact's target_class; a plain pair was an AttributeError.
    (lambda m, x: gce.training_batch(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.tensor([6, 1, 6, 2]),
                                     torch.Generator(), 4, True, False, (99, gce.Square(6))),
     "training_batch: the artifact's class must be a class index 0..9, got 99"),
    (lambda m, x: gce.evaluate_model(m, gce.Config(), gce.Split(torch.zeros(4, 3, 32, 32, dtype=torch.uint8),
                                                                torch.tensor([1, 2]))),
     "evaluate_model: test labels must be integer class indices 0..9 [4], one per image, got torch.int64 of shape (2,)"),
    (lambda m, x: gce.evaluate_model(m, gce.Config(), gce.Split(torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
                                                                torch.tensor([1, 12]))),
     "evaluate_model: test labels must be integer class indices 0..9 [2], one per image, got torch.int64 of shape "
     "(2,) with values 1..12"),
    # Fault round 5: 5000 steps on 32x32 images ran for more than 500 s repeating stages; an empty mask scored a miss.
    (lambda m, x: gce.deletion_insertion(m, x[:2], torch.tensor([1, 2]), MAPS, steps=1025),
     "deletion_insertion: steps must be 1..1024 (at most one per pixel of the 32x32 images), got 1025"),
    (lambda m, x: gce.pointing_game(MAPS, torch.zeros(32, 32, dtype=torch.bool)),
     "pointing_game: the mask selects no pixel; pass the square's pixels, e.g. artifact_mask(square)"),
    (lambda m, x: gce.artifact_attention_share(MAPS, torch.stack([SQUARE, SQUARE & False])),
     "artifact_attention_share: the mask selects no pixel (masks [1] of 2)"),
    (lambda m, x: gce.deletion_insertion(m, x[:2].double(), torch.tensor([1, 2]), MAPS),
     "deletion_insertion: images are torch.float64 but the model's weights are torch.float32"),
    # The pipeline's own steps, called from Python: the function named, not a KeyError or AttributeError inside.
    (lambda m, x: gce.cam_maps(m, x, None, "layer3", ["Foo"], 2), "cam_maps: unknown method(s) Foo; choose from"),
    (lambda m, x: gce.cam_maps(m, x, None, "layer3", "GradCAM", 2), "cam_maps: methods must be a non-empty list"),
    (lambda m, x: gce.explain_all(m, x, [1, 2], "layer3", 2), "explain_all: got 2 class indices for 5 images"),
    (lambda m, x: gce.overlay_heatmap(np.zeros((32, 32, 3), np.uint8), np.zeros((16, 16))),
     "overlay_heatmap: expects a uint8 H x W x 3 image, an H x W map and alpha in [0, 1], got uint8 (32, 32, 3), "
     "float64 (16, 16)"),
    (lambda m, x: gce.feature_size(m, "layer3", 0, 0), "feature_size: height must be a whole number >= 1, got 0"),
    (lambda m, x: gce.audit_groups(torch.arange(20) % 10, 6, 0, 0), "audit_groups: n must be a whole number >= 1"),
    (lambda m, x: gce.audit_groups(torch.arange(20) % 10, 10, 2, 0), "audit_groups: target must be a class index "
                                                                     "0..9, got 10"),
    (lambda m, x: gce.random_crop_flip(torch.rand(2, 3, 32, 32), 4, True, torch.Generator()),
     "random_crop_flip: images must be uint8 pixels"),
    (lambda m, x: gce.random_crop_flip(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), -1, True, torch.Generator()),
     "random_crop_flip: padding must be a whole number >= 0, got -1"),
    (lambda m, x: gce.importance_order(MAPS[0]), "importance_order: expects a floating-point tensor [B, H, W]"),
    (lambda m, x: gce.accuracy(torch.rand(3, 10), torch.tensor([1, 2])), "accuracy: expects float logits [N, "
                                                                          "classes] and integer labels [N], got "
                                                                          "torch.float32 of shape (3, 10) and torch.int64 of shape (2,)"),
    (lambda m, x: gce.per_class_accuracy(torch.rand(2, 10), torch.rand(2)), "per_class_accuracy: expects float "
                                                                            "logits"),
    (lambda m, x: gce.run({"epochs": 1}), "run: cfg must be a Config, e.g. Config(quick=True) or "
                                          "parse_config(['--quick']), got dict; to run from flags call main([...])"),
    (lambda m, x: gce.load_cifar10({}, torch.device("cpu")), "load_cifar10: cfg must be a Config"),
    (lambda m, x: gce.evaluate_model(m, None, None), "evaluate_model: cfg must be a Config"),
    (lambda m, x: gce.seed_everything("a"), "seed_everything: seed must be a whole number >= 0, got 'a'"),
    (lambda m, x: gce.eval_mode(3).__enter__(), "eval_mode: model must be a torch nn.Module"),
    # Fault round 13: arguments named after the function a bad one reached (save_figure, metrics.json, random_crop_flip,
    # pointing_game), or a raw AttributeError (a plain pair, None as the model, 'cpu' as a string).
    (lambda m, x: gce.faithfulness_figure({"methods": {}}, gce.Path("/tmp"), False),
     "faithfulness_figure: /tmp needs a picture suffix matplotlib writes"),
    (lambda m, x: gce.audit_figure({}, None, None, 6, 1, "layer4", False, "audit.png", "no"),
     "audit_figure: show must be True or False, got 'no'"),
    (lambda m, x: gce.relocation_figure({}, {}, torch.zeros(3, 32, 32, dtype=torch.uint8), 12, "frogs", gce.Square(6),
                                        gce.Path("r.png"), False), "relocation_figure: label must be a class index "
                                                                   "0..9, got 12"),
    (lambda m, x: gce.relocation_figure({}, {}, torch.zeros(3, 32, 32, dtype=torch.uint8), 6, "frog", gce.Square(6),
                                        gce.Path("r.png"), False), "relocation_figure: group must be one the audit "
                                                                   "stored (none), got 'frog'"),
    (lambda m, x: gce.data_fingerprint((torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.tensor([1, 2])), (1, 2)),
     "data_fingerprint: test must be a Split(images, labels), two tensors, got (int, int)"),
    (lambda m, x: gce.make_optimizer(None, 0.1, 0.9, 5e-4), "make_optimizer: model must be a torch nn.Module"),
    (lambda m, x: gce.training_batch(torch.zeros(4, 3, 32, 32, dtype=torch.uint8), torch.tensor([6, 1, 6, 2]),
                                     torch.Generator(), -1, True, False), "training_batch: padding must be a whole "
                                                                         "number >= 0, got -1"),
    (lambda m, x: gce.hotspot_check({"biased": MAPS, "standard": MAPS}, SQUARE, -1, 200, 0),
     "hotspot_check: tolerance must be a whole number >= 0, got -1"),
    (lambda m, x: gce.hotspot_check({"biased": MAPS, "standard": MAPS}, SQUARE, 2, 1, 0),
     "hotspot_check: resamples must be a whole number >= 10, got 1"),
    # Fault round 15: cam_family_figure checked none of its arguments (raw AttributeErrors, the report blamed, a label
    # of -1 captioned 'truck'); a figure path under a file was mkdir's FileExistsError.
    (lambda m, x: gce.cam_family_figure({}, {}, U8[:2], [6, 0], gce.Square(6), "cf.png", False),
     "cam_family_figure: labels must be integer class indices 0..9 [2], one per image, got list"),
    (lambda m, x: gce.cam_family_figure({}, {}, U8[:2], torch.tensor([99, 0]), gce.Square(6), "cf.png", False),
     "cam_family_figure: labels must be integer class indices 0..9 [2], one per image, got torch.int64 of shape (2,) "
     "with values 0..99"),
    (lambda m, x: gce.cam_family_figure({}, {}, U8[:2], torch.tensor([-1, 0]), gce.Square(6), "cf.png", False),
     "cam_family_figure: labels must be integer class indices 0..9 [2]"),
    (lambda m, x: gce.cam_family_figure({}, {}, U8[:2], torch.tensor([6, 0]), None, "cf.png", False),
     "cam_family_figure: square must be a Square(size, color, corner), got None"),
    (lambda m, x: gce.cam_family_figure({}, {}, U8[:2], torch.tensor([6, 0]), gce.Square(6, corner="middle"), "cf.png",
                                        False), "cam_family_figure: square corner must be one of"),
    (lambda m, x: gce.cam_family_figure({}, None, U8[:2], torch.tensor([6, 0]), gce.Square(6), "cf.png", False),
     "cam_family_figure: per_image must be a dict of arrays"),
    (lambda m, x: gce.cam_family_figure({}, {}, U8[:1], torch.tensor([6]), gce.Square(6), "cf.png", False),
     "cam_family_figure: images must be uint8 [2, 3, H, W] (a frog, then a non-frog), got torch.uint8 of shape "
     "(1, 3, 32, 32)"),
    (lambda m, x: gce.verdict_figure({}, Path(gce.__file__) / "v.png", False),
     f"verdict_figure: {Path(gce.__file__) / 'v.png'} lies under {Path(gce.__file__)}, which is a file, not a folder"),
    (lambda m, x: gce.verdict_figure({}, "v\n.png", False),
     "verdict_figure: path must not hold control characters (a newline or tab), got 'v\\n.png'"),
    (lambda m, x: gce.train_or_load(gce.Config(), gce.Split(torch.zeros(2, 3, 32, 32, dtype=torch.uint8),
                                                            torch.tensor([1, 2])),
                                    gce.Split(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.tensor([1, 2])),
                                    "cpu", False, 123), "train_or_load: fingerprint must be data_fingerprint(train, "
                                                        "test), got int 123"),  # 'cpu' itself is a device now
])
def test_bad_metric_inputs_are_clear_errors(model, images, call, message):
    with pytest.raises((ValueError, gce.UserError), match="^" + re.escape(message)):
        call(model, images)


def test_a_plain_pair_has_the_fingerprint_of_its_split():
    images, labels = torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.tensor([1, 2])
    assert gce.data_fingerprint((images, labels), (images, labels)) == gce.data_fingerprint(
        gce.Split(images, labels), gce.Split(images, labels))


def test_explain_all_takes_classes_as_every_method_does(model, images):
    """None (each image's predicted class) or one int, as GradCAM(...)(images, classes); None was a TypeError."""
    predicted = model.eval()(images).argmax(1)
    maps = gce.explain_all(model, images, None, "layer3", 2, methods=("GradCAM", "ScoreCAM"), scorecam_images=1)
    expected = gce.explain_all(model, images, predicted, "layer3", 2, methods=("GradCAM", "ScoreCAM"), scorecam_images=1)
    assert maps.keys() == expected.keys()
    for key in maps:
        torch.testing.assert_close(maps[key], expected[key])
    torch.testing.assert_close(gce.explain_all(model, images, 3, "layer3", 2)["Grad-CAM"],
                               gce.GradCAM(model, "layer3")(images, 3))
    # A Score-CAM that was asked for is not dropped silently: by default of every image (0 asks for none).
    maps = gce.cam_maps(model, images[:2], 3, "layer3", ["GradCAM", "ScoreCAM"], 2)
    torch.testing.assert_close(maps["Score-CAM"], gce.ScoreCAM(model, "layer3")(images[:2], 3))
    assert "Score-CAM" not in gce.cam_maps(model, images[:2], 3, "layer3", ["GradCAM", "ScoreCAM"], 2, 0)


def test_deletion_insertion_keeps_each_forward_pass_within_images_per_forward(model, images):
    """Fault round 5: one image's 2 (steps + 1) stages went through the model in one pass whatever images_per_forward
    said (steps=2000: one pass of 4,002 images)."""
    sizes = []
    handle = model.register_forward_hook(lambda module, inputs, output: sizes.append(len(inputs[0])))
    try:
        small = gce.deletion_insertion(model, images[:3], torch.tensor([1, 2, 3]), MAPS[:1].expand(3, -1, -1).clone(),
                                       steps=8, images_per_forward=4)
    finally:
        handle.remove()
    whole = gce.deletion_insertion(model, images[:3], torch.tensor([1, 2, 3]), MAPS[:1].expand(3, -1, -1).clone(),
                                   steps=8, images_per_forward=512)
    assert max(sizes) <= 4 and sum(sizes) == 1 + 3 * 2 * 9, sizes  # the class-count probe, then every stage once
    for key in whole:
        torch.testing.assert_close(small[key], whole[key], rtol=0, atol=1e-6)


def test_fault_round_7_inputs_that_now_give_the_right_answer(model, tmp_path):
    """Fault round 7: an fp16 map's share overflowed to NaN; a bf16 map, a str path and an input made under
    inference_mode were raw TypeErrors, AttributeErrors or RuntimeErrors."""
    flat = torch.full((1, 32, 32), 60000.0)
    assert gce.artifact_attention_share(flat.half(), SQUARE).item() == pytest.approx(36 / 1024)
    assert gce.overlay_heatmap(np.zeros((32, 32, 3), np.uint8), torch.rand(32, 32).bfloat16()).shape == (32, 32, 3)
    from matplotlib.figure import Figure
    assert gce.save_figure(Figure(), str(tmp_path / "a.png"), False) == str(tmp_path / "a.png")
    gce.check_output_dir(str(tmp_path / "out"), str(tmp_path / "data"))
    with torch.inference_mode():
        frozen = torch.randn(2, 3, 32, 32)
    assert torch.equal(gce.GuidedBackprop(model)(frozen, None), gce.GuidedBackprop(model)(frozen.clone(), None))


@pytest.mark.parametrize("edit, message", [
    (("config", "artifact_class", -1), "the report's config.artifact_class must be a class index 0..9, got -1"),  # 'truck'
    (("data", "train_images", "20"), "ValueError: Cannot specify ',' with 's'."),  # a raw ValueError
])
def test_a_report_with_a_wrong_value_is_named_not_misread(edit, message):
    import json
    metrics = json.loads((Path(gce.__file__).parent / "outputs" / "run-10k-seed1" / "metrics.json").read_text())
    metrics[edit[0]][edit[1]] = edit[2]
    with pytest.raises(ValueError, match="^summary_markdown: the report's layout or one of its values is not what "
                                         "this version writes") as error:
        gce.summary_markdown(metrics)
    assert message in str(error.value)


@pytest.mark.parametrize("key, value", [("test_accuracy", True), ("frog_recall_stamped", -0.5),
                                        ("shortcut_rate_clean", float("nan")), ("train_seconds", "90")])
def test_a_model_row_with_an_edited_value_is_named_not_printed(key, value):
    """Rounds 16-20 borderline: an edited accuracy of true, -0.5 or NaN was printed as 1.000, -0.500 and nan."""
    import json
    metrics = json.loads((Path(gce.__file__).parent / "outputs" / "run-10k-seed1" / "metrics.json").read_text())
    metrics["models"]["biased"][key] = value
    for reader in (gce.summary_markdown, gce.console_summary):
        with pytest.raises(ValueError, match=f"^{reader.__name__}: the report's layout or one of its values") as error:
            reader(metrics)
        assert f"the report's {key} must be a " in str(error.value) and repr(value) in str(error.value)


def test_fault_round_8_inputs_that_now_give_the_right_answer(tmp_path):
    """Fault round 8: a device or a path given as text was an AttributeError; the free space of a folder not yet made a
    FileNotFoundError; a figure function given the whole metrics.json advised passing the whole metrics.json."""
    import json
    assert gce.amp_dtype("cpu") == gce.amp_dtype(torch.device("cpu"))
    assert gce.precision_plan("cpu", True, True) == gce.precision_plan(torch.device("cpu"), True, True)
    assert gce.environment_info("cpu")["device"] == "cpu"
    gce.write_atomically(str(tmp_path / "a.txt"), lambda p: p.write_text("x"))
    gce.save_npz(str(tmp_path / "b.npz"), {"a": np.zeros(2)})
    gce.check_free_space(tmp_path / "not" / "yet", 1, "a test")
    assert (tmp_path / "a.txt").read_text() == "x" and (tmp_path / "b.npz").exists()
    metrics = json.loads((Path(gce.__file__).parent / "outputs" / "run-10k-seed1" / "metrics.json").read_text())
    for draw, section in ((gce.faithfulness_figure, "faithfulness"), (gce.sanity_figure, "sanity_check")):
        whole, part = (draw(report, tmp_path / f"{section}-{i}.png", False) for i, report in
                       enumerate((metrics, metrics[section])))
        assert Path(whole).read_bytes() == Path(part).read_bytes()
    record = gce.RunRecord(tmp_path / "run", gce.Config())
    with record:
        with pytest.raises(ValueError, match="^RunRecord.wrote: .* is not inside the output folder"):
            record.wrote(tmp_path / "a.txt")


def test_every_figure_of_the_audit_takes_the_whole_metrics_json_as_its_message_says(tmp_path):
    """Fault round 14: relocation_figure and cam_family_figure, given the whole metrics.json, said it lacked
    'explained_class' and advised passing the whole metrics.json; only the shortcut_audit section worked."""
    import json
    run = Path(gce.__file__).parent / "outputs" / "run-10k-seed1"
    metrics = json.loads((run / "metrics.json").read_text())
    per_image = dict(np.load(run / "audit_per_image.npz"))
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    draws = {"relocation": lambda report, path: gce.relocation_figure(report, per_image, images[0], 6, "frogs",
                                                                       gce.Square(6), path, False),
             "cam_family": lambda report, path: gce.cam_family_figure(report, per_image, images, torch.tensor([6, 0]),
                                                                       gce.Square(6), path, False),
             "verdict": lambda report, path: gce.verdict_figure(report, path, False)}
    for name, draw in draws.items():
        whole, part = (draw(report, tmp_path / f"{name}-{i}.png") for i, report in
                       enumerate((metrics, metrics["shortcut_audit"])))
        assert Path(whole).read_bytes() == Path(part).read_bytes(), name


def test_a_figure_path_with_a_tilde_is_the_home_folder_as_on_the_command_line(tmp_path, monkeypatch):
    """Fault round 15: '~/v.png' made a folder named '~' in the working folder."""
    import json
    metrics = json.loads((Path(gce.__file__).parent / "outputs" / "run-10k-seed1" / "metrics.json").read_text())
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert gce.verdict_figure(metrics, "~/figures/v.png", False) == str(tmp_path / "home" / "figures" / "v.png")
    assert (tmp_path / "home" / "figures" / "v.png").is_file() and not (tmp_path / "~").exists()


def test_fault_round_10_borderlines_that_now_give_the_right_answer(model, tmp_path):
    """Fault round 10: numbers numpy makes (np.float32 sigma, an array size) were refused; a stride of 0 was told a
    larger one leaves pixels uncovered; a run.json folder was IsADirectoryError from Python; example_maps still finds
    the stored maps under their right names (its typo check must not refuse them)."""
    assert torch.equal(gce.gaussian_prior(1, 4, 4, np.float32(1.5), "cpu"), gce.gaussian_prior(1, 4, 4, 1.5, "cpu"))
    cams = torch.rand(2, 4, 4)
    assert torch.equal(gce.cam_upsample(cams, np.array([32, 32])), gce.cam_upsample(cams, (32, 32)))
    assert gce.make_optimizer(model, np.float32(0.1), 0.9, 0).param_groups[0]["lr"] == pytest.approx(0.1)
    with pytest.raises(ValueError) as zero:
        gce.Occlusion(model, patch=8, stride=0)
    with pytest.raises(ValueError, match="a larger one leaves pixels that no window covers$"):
        gce.Occlusion(model, patch=8, stride=9)
    assert "larger" not in str(zero.value)
    per_image = dict(np.load(Path(gce.__file__).parent / "outputs" / "run-10k-seed1" / "audit_per_image.npz"))
    found = gce.example_maps(per_image, "biased", "frogs", "none")
    assert found and all(m.shape == (32, 32) and m.min() == 0 and m.max() == 1 for m in found.values())
    rows = gce.table_lines(["a", "b"], [["x\ny", 1.5], ["p|q", "z"]])  # a newline or '|' split the markdown row
    assert rows[2:] == ["| x y  | 1.5000 |", "| p\\|q |      z |"] and all(r.count(" | ") == 1 for r in rows[2:])
    (tmp_path / "run.json").mkdir()
    with pytest.raises(gce.UserError, match="run.json is a folder"):
        with gce.RunRecord(str(tmp_path), gce.Config()):
            pass
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]  # refused before it wrote anything


def test_fault_round_11_an_output_link_and_a_console_that_lacks_a_character(tmp_path):
    """Fault round 11: --output-dir a dangling link blamed its writable parent ('File exists'); a data path the
    console's encoding lacks (PYTHONIOENCODING=ascii) was a UnicodeEncodeError traceback from print."""
    import io
    import sys
    (tmp_path / "out").symlink_to(tmp_path / "gone" / "out")
    with pytest.raises(gce.UserError, match=f"--output-dir {tmp_path / 'out'} is a symbolic link to "
                                            f"{tmp_path / 'gone' / 'out'}, which does not exist"):
        gce.check_output_dir(tmp_path / "out", tmp_path / "data")
    assert not (tmp_path / "gone").exists()
    (tmp_path / "a").symlink_to(tmp_path / "b")  # fault round 14: a loop was told to 'create that folder' (it can't)
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(gce.UserError, match=f"^--output-dir {tmp_path / 'a'} is a symbolic link to {tmp_path / 'b'} "
                                            "that leads back to itself: a loop; remove the link, or pass another"):
        gce.check_output_dir(tmp_path / "a", tmp_path / "data")
    ascii_console = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    saved, sys.stdout = sys.stdout, ascii_console
    try:
        gce.to_console("data: /tmp/tinyö", "next")
    finally:
        sys.stdout = saved
    ascii_console.seek(0)
    assert ascii_console.read() == "data: /tmp/tiny\\xf6\nnext\n"


def test_evaluate_model_takes_a_plain_pair_as_a_split(model):
    """Fault round 12: (images, labels) as a plain tuple was an AttributeError (test.images) after the checks passed."""
    images, labels = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), torch.tensor([6, 1, 6, 2])
    cfg = gce.Config(quick=True, progress=False)
    assert gce.evaluate_model(model, cfg, (images, labels))[0] == gce.evaluate_model(model, cfg,
                                                                                     gce.Split(images, labels))[0]


def test_a_library_error_inside_a_report_reader_is_not_blamed_on_the_report(monkeypatch, tmp_path):
    """Fault round 8: matplotlib refusing MPLBACKEND inside faithfulness_figure was reported as 'the report's layout
    ... is not what this version writes'."""
    import json
    import matplotlib.figure
    metrics = json.loads((Path(gce.__file__).parent / "outputs" / "run-10k-seed1" / "metrics.json").read_text())

    def refuse(*args, **kwargs):
        raise ValueError("Key backend: 'bogus' is not a valid value for backend")

    monkeypatch.setattr(matplotlib.figure, "Figure", refuse)
    with pytest.raises(ValueError, match="^Key backend: 'bogus'"):
        gce.faithfulness_figure(metrics, tmp_path / "f.png", False)


def test_the_audit_figures_refuse_a_square_other_than_the_runs(tmp_path):
    """Round 15's borderline: relocation_figure and cam_family_figure drew any Square they were given and captioned its
    corner 'trained', although the run trained at another corner (or with another size or colour)."""
    import json
    run = Path(gce.__file__).parent / "outputs" / "run-10k-seed1"
    metrics = json.loads((run / "metrics.json").read_text())
    per_image = dict(np.load(run / "audit_per_image.npz"))
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    draws = {"relocation_figure": lambda report, square: gce.relocation_figure(
                 report, per_image, images[0], 6, "frogs", square, tmp_path / "r.png", False),
             "cam_family_figure": lambda report, square: gce.cam_family_figure(
                 report, per_image, images, torch.tensor([6, 0]), square, tmp_path / "c.png", False)}
    for name, draw in draws.items():
        for report in (metrics, metrics["shortcut_audit"]):  # the section records the corner alone
            with pytest.raises(ValueError, match=f"^{name}: square differs from the run .*: corner 'top-right' "
                                                 r"\(the run's: 'top-left'\); pass that run's square"):
                draw(report, gce.Square(6, corner="top-right"))
        with pytest.raises(ValueError, match=r"size 4 \(the run's: 6\), color \(255, 0, 0\) \(the run's: \(255, 255, 0\)"):
            draw(metrics, gce.Square(4, (255, 0, 0)))
        assert Path(draw(metrics, gce.Square(6))).is_file()  # the run's own square draws as before


def test_the_audit_figures_name_missing_or_misshapen_stored_maps(tmp_path):
    """Fault round 16: images or stored maps of another size (or with an extra dimension) were refused by overlay_heatmap
    or minmax_normalize, helpers the user never called; per_image without some or all of the maps the audit stores
    drew a figure silently missing those panels."""
    import json
    run = Path(gce.__file__).parent / "outputs" / "run-10k-seed1"
    metrics = json.loads((run / "metrics.json").read_text())
    per_image = dict(np.load(run / "audit_per_image.npz"))
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    draws = {"relocation_figure": lambda arrays, pictures: gce.relocation_figure(
                 metrics, arrays, pictures[0], 6, "frogs", gce.Square(6), tmp_path / "r.png", False),
             "cam_family_figure": lambda arrays, pictures: gce.cam_family_figure(
                 metrics, arrays, pictures, torch.tensor([6, 0]), gce.Square(6), tmp_path / "c.png", False)}
    maps = [k for k in per_image if k.startswith("maps/biased/")]
    cases = [  # (arrays, images, message)
        (per_image, images[:, :, :, :20], r"must be a finite map \[H, W\] of the images' size \(32, 20\), got float16 "
                                          r"of shape \(32, 32\)"),
        (per_image, torch.zeros(2, 3, 64, 64, dtype=torch.uint8), r"of the images' size \(64, 64\)"),
        ({**per_image, **{k: per_image[k][:7, :7] for k in maps}}, images, r"got float16 of shape \(7, 7\)"),
        ({**per_image, **{k: per_image[k][None] for k in maps}}, images, r"got float16 of shape \(1, 32, 32\)"),
        ({k: v for k, v in per_image.items() if not k.startswith("maps/")}, images, "per_image lacks maps/.*: the maps "
                                                                                   "the audit stores"),
        ({k: v for k, v in per_image.items() if not k.startswith("maps/biased/Grad-CAM/")}, images,
         "per_image lacks maps/biased/Grad-CAM/layer4.1.conv2/frogs/"),
    ]
    for name, draw in draws.items():
        for arrays, pictures, message in cases:
            with pytest.raises(ValueError, match=f"^{name}: .*{message}"):
                draw(arrays, pictures)


def test_a_figure_name_ending_in_a_space_is_said_so(tmp_path):
    """Fault round 16: 'x.png ' was refused as lacking a picture suffix, the space invisible in the message."""
    with pytest.raises(ValueError, match=r"^save_figure: '.*x\.png ' needs a picture suffix .*; its name begins or ends "
                                         "with a space: remove it"):
        gce.check_figure_path("save_figure", tmp_path / "x.png ")


@pytest.mark.parametrize("reader", ["summary_markdown", "console_summary"])
@pytest.mark.parametrize("section", ["models", "timings", "precision"])
@pytest.mark.parametrize("value", [[], None, "x"])
def test_a_report_section_of_the_wrong_kind_is_named_not_a_traceback(reader, section, value):
    """Fault round 17: a section edited into a list, null or text was a raw AttributeError ('list' object has no
    attribute 'items') from summary_markdown and console_summary."""
    import json
    metrics = json.loads((Path(gce.__file__).parent / "outputs" / "run-10k-seed1" / "metrics.json").read_text())
    metrics[section] = value
    try:
        getattr(gce, reader)(metrics)  # a reader that does not use this section may finish: that is fine
    except ValueError as error:
        assert str(error).startswith(f"{reader}: the report"), error

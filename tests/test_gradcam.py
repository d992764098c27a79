"""Grad-CAM: equal to CAM where theory says so, equal to pytorch-grad-cam and Captum, and side-effect free."""

import copy
import re

import pytest
import torch
import torch.nn.functional as F

import grad_cam_experiment as gce

LAYERS = ["layer4.1.conv2", "layer4.1", "layer4.0", "layer3", "layer2.1.conv1"]


def classes_with_evidence(model, layer, images) -> list[int]:
    """Per image, the class whose Grad-CAM has the most positive evidence: with random weights some classes give
    all-zero maps, and comparing all-zero maps with a peer's would prove nothing."""
    grad_cam = gce.GradCAM(model, layer)
    peaks = torch.stack([grad_cam(images, c, normalize=False).flatten(1).amax(1) for c in range(10)], 1)
    return peaks.argmax(1).tolist()


def test_block_output_grad_cam_equals_cam(model, images):
    # After layer4 come global average pooling and fc, so dy^c/dA^k_ij = fc.weight[c, k] / (h*w) and Grad-CAM's
    # channel weights are exactly CAM's (Zhou et al. 2016) divided by h*w = 16.
    classes = torch.tensor([0, 3, 6, 9, 2])
    raw = gce.GradCAM(model, "layer4")(images, classes, normalize=False)
    features = {}
    handle = model.layer4.register_forward_hook(lambda m, i, o: features.update(a=o.detach()))
    with torch.no_grad():
        model(images)
    handle.remove()
    a = features["a"]
    assert a.shape[-2:] == (4, 4)
    cam = F.relu(torch.einsum("bk,bkhw->bhw", model.fc.weight[classes], a)) / 16
    expected = F.interpolate(cam[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    assert expected.max() > 0
    torch.testing.assert_close(raw, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("batch", [1, 5])
def test_matches_pytorch_grad_cam(model, images, layer, batch):
    from pytorch_grad_cam import GradCAM as PeerGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    x = images[:batch]
    classes = classes_with_evidence(model, layer, x)
    ours = gce.GradCAM(model, layer)(x, classes)
    peer_model = copy.deepcopy(model)  # pytorch-grad-cam puts the model in eval mode and leaves it hooked
    with PeerGradCAM(peer_model, [peer_model.get_submodule(layer)]) as peer:
        theirs = peer(x, targets=[ClassifierOutputTarget(c) for c in classes])
    assert ours.shape == (batch, 32, 32) and ours.dtype == torch.float32
    assert (ours.flatten(1).amax(1) == 1.0).all()  # no all-zero map: the comparison is not trivially true
    torch.testing.assert_close(ours, torch.from_numpy(theirs), rtol=0, atol=1e-4)


# layer4.0.bn2 is followed by an in-place add: Captum gets it right (pytorch-grad-cam 1.5.7 does not on CPU,
# its stored activation aliases the tensor the block overwrites), so it is compared with Captum only.
@pytest.mark.parametrize("layer", LAYERS + ["layer4.0.bn2"])
@pytest.mark.parametrize("batch", [1, 5])
def test_matches_captum_layer_grad_cam(model, images, layer, batch):
    from captum.attr import LayerGradCam
    x = images[:batch]
    classes = torch.tensor(classes_with_evidence(model, layer, x))
    ours = gce.GradCAM(model, layer)(x, classes)
    attribution = LayerGradCam(model, model.get_submodule(layer)).attribute(x, target=classes)
    theirs = F.interpolate(F.relu(attribution), size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    assert (ours.flatten(1).amax(1) == 1.0).all()
    torch.testing.assert_close(ours, gce.minmax_normalize(theirs), rtol=0, atol=1e-4)


def test_batched_equals_per_image(model, images):
    # float64: in float32 the conv kernels' blocking depends on the batch size (differences ~5e-5), which
    # would hide a real cross-image leak; in float64 batched and per-image maps must agree to rounding.
    model, images = model.double(), images.double()
    classes = torch.tensor([1, 2, 3, 4, 5])
    grad_cam = gce.GradCAM(model, "layer4.1.conv2")
    batched = grad_cam(images, classes)
    single = torch.cat([grad_cam(images[i:i + 1], classes[i:i + 1]) for i in range(len(images))])
    assert batched.dtype == torch.float64
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-12)


def test_default_class_is_the_prediction(model, images):
    grad_cam = gce.GradCAM(model, "layer3")
    result = grad_cam.explain(images)
    with torch.no_grad():
        predicted = model(images).argmax(1)
    assert torch.equal(result.classes, predicted)
    torch.testing.assert_close(result.maps, grad_cam(images, predicted))
    one = grad_cam(images, 3)  # one int explains that class for every image
    torch.testing.assert_close(one, grad_cam(images, [3] * len(images)))


def test_in_place_op_after_target_layer_does_not_corrupt_activations(model, images):
    # layer4.0.bn2's output is modified in place by the block (`out += identity`); A^k must be the bn2 output.
    captured = {}

    def keep(module, inputs, output):  # returns None, so the module's output is not replaced
        captured["a"] = output.clone()

    handle = model.layer4[0].bn2.register_forward_hook(keep)
    with torch.no_grad():
        logits = model(images)
    handle.remove()
    a = captured["a"].requires_grad_(True)
    # Recompute the rest of the network from the bn2 output to get dy/dA by hand.
    block = model.layer4[0]
    with torch.no_grad():
        x3 = model.layer3(model.layer2(model.layer1(model.relu(model.bn1(model.conv1(images))))))
        identity = block.downsample(x3)
    out = model.layer4[1](F.relu(a + identity))
    y = model.fc(torch.flatten(model.avgpool(out), 1))
    torch.testing.assert_close(y, logits, rtol=1e-4, atol=1e-4)
    (grads,) = torch.autograd.grad(y[:, 4].sum(), a)
    expected = F.relu(torch.einsum("bk,bkhw->bhw", grads.mean((2, 3)), a.detach()))
    expected = F.interpolate(expected[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    ours = gce.GradCAM(model, "layer4.0.bn2")(images, 4, normalize=False)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)


def test_model_input_and_grad_mode_untouched(model, images):
    model.train()
    model.layer2.eval()  # a mixed-mode model: each module's own mode must come back
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {name: m.training for name, m in model.named_modules()}
    x = images.clone()
    grad_cam = gce.GradCAM(model, "layer4.1.conv2")
    grad_cam(x, 3)
    with torch.no_grad():  # a caller's no_grad block: the method works and grad mode stays off after
        grad_cam(x)
        assert not torch.is_grad_enabled()
    assert torch.is_grad_enabled()
    assert torch.equal(x, images)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # incl. BN running stats
    assert all(p.grad is None for p in model.parameters())
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_hooks_removed_even_when_the_call_fails(model, images):
    grad_cam = gce.GradCAM(model, "layer3")
    with pytest.raises(ValueError):
        grad_cam(images, 99)
    assert all(not m._forward_hooks for m in model.modules())


def test_bad_layer_names_are_clear_errors(model):
    with pytest.raises(gce.UserError, match=r"unknown target layer 'layer5'.*layer4\.1\.conv2"):
        gce.GradCAM(model, "layer5")
    with pytest.raises(gce.UserError, match="unknown target layer") as error:
        gce.GradCAM(model, "layer4.7")
    message = str(error.value)  # the stages and blocks by name, what a block holds once: not all 60 names
    assert len(message) < 400 and "layer4.1, avgpool, fc, and inside each block bn1, bn2, conv1, conv2" in message


def test_bracket_and_negative_index_layer_names(model):
    assert gce.GradCAM(model, "layer4[-1].conv2").layer is model.layer4[1].conv2
    assert gce.GradCAM(model, "layer4.-1").layer_name == "layer4.1"
    assert gce.GradCAM(model, model.layer3).layer_name == "layer3"


def test_a_layer_whose_map_is_1x1_for_these_images_says_so_and_suggests_a_larger_map(model):
    with pytest.raises(gce.UserError, match=r"'layer4.1.conv2' gives a 1x1 feature map for 4x4 images, which locates "
                                            r"nothing; choose a layer with a larger map"):
        gce.GradCAM(model)(torch.randn(2, 3, 4, 4))


def test_layers_without_a_feature_map_or_run_twice_are_rejected(model, images):
    with pytest.raises(gce.UserError, match=r"'fc' outputs \(5, 10\).*\[B, C, H, W\]"):
        gce.GradCAM(model, "fc")(images)
    with pytest.raises(gce.UserError, match="runs more than once"):
        gce.GradCAM(model, "layer4.1.relu")(images)
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("classes, message", [
    (10, "class index 10 out of range for a 10-class model"),
    (-1, "class index -1 out of range"),
    ([1, 2], "got 2 class indices for 5 images"),
    (torch.tensor([0.5] * 5), "integer class indices (one per image), got torch.float32 of shape (5,)"),
    ("cat", "integer class indices (one per image), got str 'cat'"),          # a class name: torch's TypeError before
    ({1: 2}, "integer class indices (one per image), got dict {1: 2}"),
    ([[1, 2], [3]], "integer class indices (one per image), got list"),     # ragged
    (torch.ones(5, dtype=torch.long, device="meta"), "got a meta tensor (it holds no values)"),
])
@pytest.mark.parametrize("method", ["GradCAM", "GuidedBackprop", "Occlusion"])
def test_bad_class_indices_are_clear_errors(model, images, classes, message, method):
    """Each explanation method names itself and says what classes may be; no raw torch error reaches the user."""
    explain = {"GradCAM": gce.GradCAM(model), "GuidedBackprop": gce.GuidedBackprop(model),
               "Occlusion": gce.Occlusion(model, 16, 16)}[method]
    with pytest.raises(ValueError, match=f"^{method}: .*" + re.escape(message)):
        explain(images, classes)
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("make", [gce.GradCAM, gce.ScoreCAM, gce.GuidedBackprop, gce.Occlusion])
def test_a_model_that_is_not_a_module_is_a_clear_error(make):
    with pytest.raises(ValueError, match=f"^{make.__name__}: model must be a torch nn.Module .*got NoneType$"):
        make(None)


def test_inference_mode_is_a_clear_error(model, images):
    with torch.inference_mode(), pytest.raises(RuntimeError, match="outside torch.inference_mode"):
        gce.GradCAM(model)(images)


def test_minmax_normalize_keeps_constant_maps_at_zero():
    maps = torch.stack([torch.zeros(4, 4), torch.full((4, 4), 3.0), torch.arange(16.0).view(4, 4)])
    out = gce.minmax_normalize(maps)
    assert torch.equal(out[0], torch.zeros(4, 4)) and torch.equal(out[1], torch.zeros(4, 4))
    assert out[2].min() == 0 and out[2].max() == 1
    torch.testing.assert_close(out[2], maps[2] / 15)


def test_autocast_bf16_gives_float32_maps_close_to_float32(model, images, monkeypatch):
    # What GradCAM(autocast=True) does on a GPU, here with CPU bf16 autocast (switched on whatever this CPU has):
    # bf16 activations and gradients must come back as float32 maps that rank pixels like the float32 ones.
    classes = classes_with_evidence(model, "layer3", images)
    reference = gce.GradCAM(model, "layer3")(images, classes)
    monkeypatch.setattr(gce, "amp_dtype", lambda device: torch.bfloat16)
    low = gce.GradCAM(model, "layer3", autocast=True)(images, classes)
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert not torch.equal(low, reference) and (gce.spearman(low, reference) > 0.8).all()  # bf16 did run


def test_a_callers_autocast_does_not_make_fp32_maps_bf16(model, images):
    """autocast=False (the default) means fp32 also inside the caller's own torch.autocast block: the maps were
    computed in bf16 there, up to 0.19 off on the [0, 1] scale (fault round), although documented as fp32."""
    classes = classes_with_evidence(model, "layer3", images)
    methods = {"GradCAM": lambda: gce.GradCAM(model, "layer3")(images, classes),
               "GuidedBackprop": lambda: gce.GuidedBackprop(model)(images, classes),
               "Occlusion": lambda: gce.Occlusion(model, 8, 8)(images, classes)}
    for name, call in methods.items():
        reference = call()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            inside = call()
        torch.testing.assert_close(inside, reference, rtol=1e-5, atol=1e-6, msg=name)


class ReturnsATuple(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.net = model

    def forward(self, x):
        return self.net(x), {"aux": 0}


@pytest.mark.parametrize("method", ["GradCAM", "ScoreCAM", "GuidedBackprop", "Occlusion", "cam_family"])
def test_a_model_that_does_not_return_logits_is_a_clear_error(model, images, method):
    """A model returning (logits, extras) was an AttributeError ('tuple' has no 'detach') deep inside (fault round)."""
    wrapped = ReturnsATuple(model)
    layer = {"GradCAM": "net.layer3", "ScoreCAM": "net.layer4", "cam_family": "net.layer3"}.get(method)
    call = {"GradCAM": lambda: gce.GradCAM(wrapped, layer)(images[:2]),
            "ScoreCAM": lambda: gce.ScoreCAM(wrapped, layer)(images[:2]),
            "GuidedBackprop": lambda: gce.GuidedBackprop(wrapped)(images[:2]),
            "Occlusion": lambda: gce.Occlusion(wrapped, 8, 8)(images[:2]),
            "cam_family": lambda: gce.cam_family(wrapped, images[:2], None, layer, ["GradCAM"], 2)}[method]
    with pytest.raises(ValueError, match="^" + re.escape(f"{method}: the model must return one tensor of class scores "
                                                         "[B, classes] for B images, got tuple; wrap it")):
        call()
    assert all(not m._forward_hooks for m in model.modules())


def test_a_cam_variant_overrides_only_how_activations_and_gradients_become_a_map(model, images):
    # The extension point the CAM family plugs into. An element-wise variant (HiResCAM's rule,
    # sum_k dy/dA^k * A^k) overrides `combine`; a channel-weight variant overrides `channel_weights`. Both are
    # checked against autograd by hand, and a class that overrides neither says so.
    class ElementWise(gce.CAMBase):
        def combine(self, activations, grads):
            return (grads * activations).sum(1)

    class ChannelSums(gce.CAMBase):
        def channel_weights(self, activations, grads):
            return grads.sum((2, 3))

    a = {}
    handle = model.layer3.register_forward_hook(lambda m, i, o: a.update(a=o))
    x = images.clone().requires_grad_(True)
    logits = model.eval()(x)
    handle.remove()
    (grads,) = torch.autograd.grad(logits[:, 7].sum(), a["a"])
    upsample = lambda cam: F.interpolate(F.relu(cam)[:, None], size=(32, 32), mode="bilinear")[:, 0]  # noqa: E731
    torch.testing.assert_close(ElementWise(model, "layer3")(images, 7, normalize=False),
                               upsample((grads * a["a"]).sum(1)), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ChannelSums(model, "layer3")(images, 7, normalize=False),
                               upsample(torch.einsum("bk,bkhw->bhw", grads.sum((2, 3)), a["a"])), rtol=1e-4, atol=1e-6)
    with pytest.raises(NotImplementedError, match="overrides neither"):
        gce.CAMBase(model, "layer3")(images)


EXPLAINERS = {
    "GradCAM": lambda model, x: gce.GradCAM(model, "layer3")(x),
    "ScoreCAM": lambda model, x: gce.ScoreCAM(model, "layer4")(x),
    "GuidedBackprop": lambda model, x: gce.GuidedBackprop(model)(x),
    "Occlusion": lambda model, x: gce.Occlusion(model, 8, 8)(x),
    "cam_family": lambda model, x: gce.cam_family(model, x, torch.zeros(len(x), dtype=torch.long), "layer3",
                                                  ["GradCAM", "LayerCAM"], 8),
}
BAD_INPUTS = {  # what a Python user passes by mistake, and what the message must say
    "float64": (lambda x: x.double(), "images are torch.float64 but the model's weights are torch.float32; pass "
                                      "images.to(torch.float32)"),
    "uint8": (lambda x: (x * 40 + 128).clamp(0, 255).to(torch.uint8), "images must be normalised floats, got "
                                                                      "torch.uint8; for uint8 pixels"),
    "1-channel": (lambda x: x[:, :1], "the model takes 3-channel images, got 1 channel(s)"),
    "3-D": (lambda x: x[0], "images must be a non-empty batch [B, C, H, W], got shape (3, 32, 32); for one image "
                            "pass images[None]"),
    "empty": (lambda x: x[:0], "images must be a non-empty batch [B, C, H, W], got shape (0, 3, 32, 32)"),
    "numpy": (lambda x: x.numpy(), "images must be a torch.Tensor"),
    "NaN": (lambda x: torch.where(torch.arange(x.numel()).view_as(x) == 7, float("nan"), x),
            "images hold 1 NaN or infinite value(s)"),  # one NaN pixel: NaN logits and an all-zero Grad-CAM before
}


@pytest.mark.parametrize("bad", BAD_INPUTS)
@pytest.mark.parametrize("method", EXPLAINERS)
def test_every_method_checks_its_input_the_same_way(model, images, method, bad):
    """One helper (check_images) for every method: a ValueError naming the method, what was given and what to pass,
    before any forward pass (no raw conv2d or autograd error), with no hook left behind."""
    make, message = BAD_INPUTS[bad]
    with pytest.raises(ValueError, match="^" + re.escape(f"{method}: {message}")):
        EXPLAINERS[method](model, make(images[:2]))
    assert all(not m._forward_hooks for m in model.modules())


def test_a_model_and_images_in_the_same_other_dtype_are_accepted(model, images):
    """The check compares the images with the model's weights, not with float32: a float64 model takes float64 images
    (the peers' comparisons use it), and gives the float32 model's map."""
    model64 = copy.deepcopy(model).double()
    maps64 = gce.GradCAM(model64, "layer3")(images[:2].double())
    torch.testing.assert_close(maps64.float(), gce.GradCAM(model, "layer3")(images[:2]), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("method", EXPLAINERS)
def test_images_on_another_device_are_a_clear_error(model, images, method):
    """PyTorch's 'meta' device stands in for a GPU (none in CI): the check fires before any forward pass."""
    with pytest.raises(ValueError, match="^" + re.escape(f"{method}: images are on meta but the model is on cpu; pass "
                                                         "images.to('cpu')")):
        EXPLAINERS[method](model, images[:2].to("meta"))


@pytest.mark.parametrize("call, message", [
    (lambda m, x: gce.Occlusion(m, 8, 0), "Occlusion: stride must be a whole number 1..patch (8), got 0"),
    (lambda m, x: gce.Occlusion(m, 0, 0), "Occlusion: patch must be a whole number >= 1, got 0"),
    (lambda m, x: gce.Occlusion(m, "8", 8), "Occlusion: patch must be a whole number >= 1, got '8'"),
    (lambda m, x: gce.Occlusion(m, 8, 2.5), "Occlusion: stride must be a whole number 1..patch (8), got 2.5"),
    (lambda m, x: gce.Occlusion(m, 8, 2, None), "Occlusion: images_per_forward must be a whole number >= 1, got None"),
    (lambda m, x: gce.Occlusion(m, 40, 8)(x), "Occlusion: patch 40 must be smaller than the (32, 32) images"),
    (lambda m, x: gce.Occlusion(m, 32, 32)(x), "Occlusion: patch 32 must be smaller than the (32, 32) images (a patch "
                                              "covering the whole image gives a constant map)"),  # round 14: silently
    (lambda m, x: gce.ScoreCAM(m, images_per_forward=0), "ScoreCAM: images_per_forward must be a whole number >= 1, "
                                                           "got 0"),
    (lambda m, x: gce.ScoreCAM(m, images_per_forward=1.5), "ScoreCAM: images_per_forward must be a whole number"),
    (lambda m, x: gce.ScoreCAM(m, images_per_forward="64"), "ScoreCAM: images_per_forward must be a whole number"),
    (lambda m, x: gce.cam_family(m, x, None, "layer3", ["GradCam"], 2), "cam_family: unknown method(s) GradCam"),
    (lambda m, x: gce.cam_family(m, x, None, "layer3", "GradCAM", 2), "cam_family: methods must be a non-empty list "
                                                                       "of names such as ['GradCAM'], got 'GradCAM'"),
    (lambda m, x: gce.cam_family(m, x, None, "layer3", [], 2), "cam_family: methods must be a non-empty list"),
    (lambda m, x: gce.cam_family(m, x, None, "layer3", None, 2), "cam_family: methods must be a non-empty list"),
    (lambda m, x: gce.cam_family(m, x, None, "layer3", ["GradCAM"], 0), "cam_family: batch_size must be a whole "
                                                                        "number >= 1, got 0"),
    (lambda m, x: gce.cam_family(m, x, None, "layer3", ["GradCAM"], 2.5), "cam_family: batch_size must be a whole "
                                                                          "number >= 1, got 2.5"),
    (lambda m, x: gce.cam_family(m, x, None, "layer3", ["GradCAM"], True), "cam_family: batch_size must be a whole"),
    (lambda m, x: gce.cam_family(m, x, [1, 2], "layer3", ["GradCAM"], 2), "cam_family: got 2 class indices for 5"),
    (lambda m, x: gce.cam_family(m, x, "cat", "layer3", ["GradCAM"], 2), "cam_family: classes must be None"),
    (lambda m, x: gce.GradCAM(m, 3), "GradCAM: target_layer must be a dotted name such as 'layer4.1.conv2' or a "
                                     "module"),
    (lambda m, x: gce.LayerCAM(m, gce.build_model().layer3), "LayerCAM: the target layer module is not part of this "
                                                             "model; pass one of its own modules"),
    # On/off arguments: a string such as 'no' is truthy and would silently switch the option on.
    (lambda m, x: gce.GradCAM(m, autocast="yes"), "GradCAM: autocast must be True or False, got 'yes'"),
    (lambda m, x: gce.HiResCAM(m)(x, None, normalize="no"), "HiResCAM: normalize must be True or False, got 'no'"),
    (lambda m, x: gce.ScoreCAM(m).explain(x, normalize=None), "ScoreCAM: normalize must be True or False, got None"),
    (lambda m, x: gce.Occlusion(m, autocast=1), "Occlusion: autocast must be True or False, got 1"),
    (lambda m, x: gce.cam_family(m, x, None, "layer3", ["GradCAM"], 2, normalize="no"),
     "cam_family: normalize must be True or False, got 'no'"),
    # The layer, named for the function the user called (cam_family builds the methods itself).
    (lambda m, x: gce.cam_family(m, x, None, 5, ["GradCAM"], 2), "cam_family: target_layer must be a dotted name "
                                                                 "such as 'layer4.1.conv2' or a module"),
    (lambda m, x: gce.cam_family(m, x, None, "layer9", ["GradCAM"], 2), "cam_family: unknown target layer 'layer9'"),
    (lambda m, x: gce.XGradCAM(m, "layer9"), "XGradCAM: unknown target layer 'layer9' (did you mean layer4?)"),
    (lambda m, x: gce.GradCAM(m, "LAYER3"), "GradCAM: unknown target layer 'LAYER3' (did you mean layer3?)"),  # none
    (lambda m, x: gce.GradCAMPlusPlus(m, "fc")(x), "GradCAMPlusPlus: target layer 'fc' outputs (5, 10); a CAM needs a "
                                                   "[B, C, H, W] feature map"),
    (lambda m, x: gce.cam_family(m, x, None, "avgpool", ["GradCAM"], 2), "cam_family: target layer 'avgpool' gives a 1x1 "
                                                                         "feature map"),
    # One key per method: a second copy appended its maps to the first's (10 maps for 5 images).
    (lambda m, x: gce.cam_family(m, x, None, "layer3", ["GradCAM", "LayerCAM", "GradCAM"], 2),
     "cam_family: method(s) listed more than once: GradCAM; list each once"),
    # The helpers under the methods: a patch of 0 or a stride past the patch left pixels no window covers (NaN maps).
    (lambda m, x: gce.occlusion_windows(32, 32, 0, 1), "occlusion_windows: patch must be a whole number >= 1, got 0"),
    (lambda m, x: gce.occlusion_windows(32, 32, 8, 9), "occlusion_windows: stride must be a whole number 1..patch "
                                                       "(8), got 9"),
    (lambda m, x: gce.occlusion_windows(32, 32, 40, 8), "occlusion_windows: patch 40 is larger than the 32x32 image"),
    (lambda m, x: gce.batched(gce.GradCAM(m), x, torch.zeros(5, dtype=torch.long), 0),
     "batched: batch_size must be a whole number >= 1, got 0"),
    (lambda m, x: gce.batched(gce.GradCAM(m), x, torch.zeros(2, dtype=torch.long), 2),
     "batched: classes must be None or a tensor with one class per image (5), got torch.int64 of shape (2,)"),
    (lambda m, x: gce.reinitialised(m, "layer9"), "reinitialised: unknown stage 'layer9'; one of fc, layer4"),
    (lambda m, x: gce.reinitialised(torch.nn.Linear(2, 2), "fc"), "cascading_randomization: expects this file's "
                                                                  "ResNet-18 (build_model())"),
])
def test_bad_method_arguments_are_clear_errors(model, images, call, message):
    with pytest.raises((ValueError, TypeError, gce.UserError), match="^" + re.escape(message)):
        call(model, images)


def test_cam_family_takes_classes_as_every_method_does(model, images):
    """None (each image's predicted class), one int or a list, as GradCAM(...)(images, classes) takes them."""
    for classes in (None, 3, [3] * 5):
        maps = gce.cam_family(model, images, classes, "layer3", ["GradCAM"], 2)["Grad-CAM"]
        torch.testing.assert_close(maps, gce.GradCAM(model, "layer3")(images, classes))


@pytest.mark.parametrize("call, message", [
    (lambda: gce.minmax_normalize(torch.randn(4, 4)), "minmax_normalize: expects a floating-point tensor [B, H, W]"),
    (lambda: gce.minmax_normalize(torch.ones(2, 4, 4, dtype=torch.long)), "minmax_normalize: expects a floating"),
    (lambda: gce.minmax_normalize([[1.0]]), "minmax_normalize: expects a floating-point tensor [B, H, W] of maps, got "
                                            "list"),
    (lambda: gce.saliency(torch.randn(4, 4)), "saliency: expects a floating-point tensor [B, C, H, W]"),
    (lambda: gce.guided_grad_cam(torch.randn(2, 3, 32, 32), torch.randn(2, 16, 16)), "guided_grad_cam: the maps "
                                                                                      "(2, 16, 16) must match"),
    (lambda: gce.guided_grad_cam(torch.randn(2, 3, 32, 32), torch.randn(1, 32, 32)), "guided_grad_cam: the maps"),
])
def test_the_map_helpers_refuse_shapes_that_gave_silently_wrong_results(call, message):
    """minmax_normalize of a [H, W] map returned [H, H, W]; one Grad-CAM map broadcast over a batch (last fault round)."""
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        call()


@pytest.mark.parametrize("value, shown", [
    (torch.zeros(2, 3, dtype=torch.uint8), "torch.uint8 of shape (2, 3)"),
    ("cat", "str 'cat'"),
    (None, "NoneType None"),
    ([True, False], "list [True, False]"),
    ((torch.zeros(2), {"aux": 0}), "tuple"),       # a tuple of tensors: its repr would be pages long
    ("x" * 100, "str '" + "x" * 39),                # text cut at 40 characters
    (torch.nn.ReLU(), "ReLU"),
])
def test_described_is_how_every_check_shows_a_bad_argument(value, shown):
    assert gce.described(value) == shown


@pytest.mark.parametrize("method", ["GradCAM", "ScoreCAM", "GuidedBackprop", "Occlusion", "cam_family"])
def test_a_model_on_the_meta_device_is_a_clear_error(method):
    """Fault round 4: a model without weights (meta device) failed deep inside torch ('Tensor.item() cannot be called
    on meta tensors')."""
    meta = gce.build_model().to("meta").eval()
    x = torch.zeros(2, 3, 32, 32, device="meta")
    call = {"GradCAM": lambda: gce.GradCAM(meta)(x, 3), "ScoreCAM": lambda: gce.ScoreCAM(meta, "layer4")(x, 3),
            "GuidedBackprop": lambda: gce.GuidedBackprop(meta)(x, 3), "Occlusion": lambda: gce.Occlusion(meta, 8, 8)(x, 3),
            "cam_family": lambda: gce.cam_family(meta, x, 3, "layer3", ["GradCAM"], 2)}[method]
    with pytest.raises(ValueError, match=f"^{method}: the model is on the meta device \\(it has no weights yet\\); "
                                         "materialise and load them first"):
        call()


def test_guided_backprop_of_a_half_model_is_float32_like_every_method(model, images):
    """Fault round 4: a half-precision model's Guided Backprop came back float16, its Grad-CAM float32 (a float64
    model's gradients stay float64: the agreement tests compare them at 1e-12)."""
    half = copy.deepcopy(model).half()
    x = images[:2].half()
    for maps in (gce.GuidedBackprop(half)(x, 3), gce.GuidedBackprop(half).gradients(x, 3), gce.GradCAM(half)(x, 3)):
        assert maps.dtype == torch.float32 and bool(maps.isfinite().all())

"""The CAM family: each method equals pytorch-grad-cam 1.5.7's class of the same name, the identities that must hold
on this ResNet's layer4 hold, the shared pass equals separate calls, and every method leaves model and input alone."""

import copy

import pytest
import torch
import torch.nn.functional as F

import grad_cam_experiment as gce

LAYERS = ["layer4.1.conv2", "layer4.1", "layer3"]
GRADIENT_METHODS = [name for name, cls in gce.CAM_METHODS.items() if cls.uses_gradients]


def peer_maps(model, name, layer, x, classes):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    peer_model = copy.deepcopy(model)  # pytorch-grad-cam puts the model in eval mode and leaves it hooked
    with getattr(pytorch_grad_cam, name)(peer_model, [peer_model.get_submodule(layer)]) as peer:
        peer.batch_size = 256  # Score-CAM's masked inputs per forward (its default, 16, only makes it slower)
        return torch.from_numpy(peer(x, targets=[ClassifierOutputTarget(c) for c in classes]))


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("name", list(gce.CAM_METHODS))
def test_matches_pytorch_grad_cam(model, images, name, layer, batch):
    x = images[:batch]
    if name == "ScoreCAM":  # one full forward pass per channel (512): three 16x16 images make it 7x cheaper
        x = F.avg_pool2d(x[:3], 2)
    batch, size = len(x), x.shape[-1]
    classes = [0, 3, 6, 9, 2][:batch]  # mixed classes
    ours = gce.CAM_METHODS[name](model, layer)(x, classes)
    theirs = peer_maps(model, name, layer, x, classes)
    assert ours.shape == (batch, size, size) and ours.dtype == torch.float32
    # Not a comparison of empty maps: every map but at most one (Score-CAM's ReLU can empty one) spans [0, 1].
    assert (ours.flatten(1).amax(1) == 1.0).sum() >= max(1, batch - 1)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)


def layer4_cam(model, images, classes):
    """CAM (Zhou et al. 2016) on layer4, bilinearly upsampled: ReLU(sum_k w^c_k A^k), the reference for the identities."""
    a = {}
    handle = model.layer4.register_forward_hook(lambda m, i, o: a.update(a=o.detach()))
    with torch.no_grad():
        model(images)
    handle.remove()
    cam = F.relu(torch.einsum("bk,bkhw->bhw", model.fc.weight[classes], a["a"]))
    return gce.cam_upsample(cam, (32, 32))


@pytest.mark.parametrize("name", ["GradCAM", "HiResCAM", "XGradCAM"])
def test_on_the_block_output_before_pooling_grad_cam_hires_and_xgrad_are_cam(model, images, name):
    # After layer4 come global average pooling and a linear layer: dy^c/dA^k_ij = w^c_k / 16 at every position, so
    # Grad-CAM's mean gradient, HiResCAM's element-wise gradient and XGrad-CAM's activation-weighted gradient all give
    # w^c_k / 16: the map is CAM / 16 (XGrad-CAM up to its 1e-7 in the denominator). Equal after normalisation.
    classes = torch.tensor([0, 3, 6, 9, 2])
    expected = layer4_cam(model, images, classes)
    assert (expected.flatten(1).amax(1) > 0).all()
    raw = gce.CAM_METHODS[name](model, "layer4")(images, classes, normalize=False)
    torch.testing.assert_close(raw, expected / 16, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(gce.minmax_normalize(raw), gce.minmax_normalize(expected), rtol=0, atol=1e-5)


def test_layer_cam_with_all_positive_gradients_is_hires_cam(model, images):
    # LayerCAM clamps the gradients at 0; where all are positive (layer4 with non-negative fc weights for the class)
    # it is HiResCAM exactly. With the fc weights as they are, some gradients are negative and the two differ.
    positive = copy.deepcopy(model)
    with torch.no_grad():
        positive.fc.weight.abs_()
    for net, equal in ((positive, True), (model, False)):
        layer_cam = gce.LayerCAM(net, "layer4")(images, 3, normalize=False)
        hires = gce.HiResCAM(net, "layer4")(images, 3, normalize=False)
        assert torch.equal(layer_cam, hires) == equal


def test_gradient_methods_against_autograd_by_hand(model, images):
    # An independent computation of each rule from autograd's dy/dA at layer3 (no hooks of ours).
    a = {}
    handle = model.layer3.register_forward_hook(lambda m, i, o: a.update(a=o))
    logits = model(images)
    handle.remove()
    classes = torch.tensor([1, 4, 7, 2, 9])
    (g,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), a["a"])
    act = a["a"].detach()
    s = act.sum((2, 3), keepdim=True)
    alpha = torch.where(g != 0, g ** 2 / (2 * g ** 2 + s * g ** 3 + 1e-6), 0)
    rules = {"GradCAM": (g.mean((2, 3), keepdim=True) * act).sum(1),
             "GradCAMPlusPlus": ((alpha * g.clamp_min(0)).sum((2, 3), keepdim=True) * act).sum(1),
             "XGradCAM": (((g * act).sum((2, 3), keepdim=True) / (s + 1e-7)) * act).sum(1),
             "HiResCAM": (g * act).sum(1), "LayerCAM": (g.clamp_min(0) * act).sum(1)}
    for name, cam in rules.items():
        ours = gce.CAM_METHODS[name](model, "layer3")(images, classes, normalize=False)
        torch.testing.assert_close(ours, gce.cam_upsample(F.relu(cam), (32, 32)), rtol=1e-4, atol=1e-6)


def test_score_cam_against_a_loop_over_channels(model, images):
    # The batched masked passes equal the definition computed one channel at a time (the naive Score-CAM).
    x, layer = F.avg_pool2d(images[:2], 2), "layer3"  # 16x16 inputs, 256 channels: the same definition, cheaper
    score_cam = gce.ScoreCAM(model, layer, images_per_forward=48)  # 256 channels: chunks split images across passes
    activations, _, _, targets = score_cam._activations_and_grads(x, [5, 8])
    masks = F.interpolate(activations, size=(16, 16), mode="bilinear", align_corners=True)
    low, high = masks.amin((2, 3), keepdim=True), masks.amax((2, 3), keepdim=True)
    masks = (masks - low) / (high - low + 1e-8)
    with torch.no_grad():
        scores = torch.stack([torch.stack([model(x[b:b + 1] * masks[b, k])[0, targets[b]]
                                           for k in range(masks.shape[1])]) for b in range(2)])
    torch.testing.assert_close(score_cam.masked_scores(x, activations, targets), scores, rtol=1e-4, atol=1e-4)
    cam = F.relu((scores.softmax(1)[:, :, None, None] * activations).sum(1))
    torch.testing.assert_close(score_cam(x, [5, 8], normalize=False), gce.cam_upsample(cam, (16, 16)),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("layer", ["layer4.1.conv2", "layer3"])
def test_one_shared_pass_equals_each_method_alone(model, images, layer):
    classes = torch.tensor([0, 3, 6, 9, 2])  # classes with evidence in this random model's maps
    shared = gce.cam_family(model, images, classes, layer, GRADIENT_METHODS, batch_size=5)
    chunked = gce.cam_family(model, images, classes, layer, GRADIENT_METHODS, batch_size=2)
    for name in GRADIENT_METHODS:
        cls = gce.CAM_METHODS[name]
        alone = cls(model, layer)(images, classes)
        assert (alone.flatten(1).amax(1) == 1.0).sum() >= 4  # not a comparison of empty maps
        torch.testing.assert_close(shared[cls.label], alone, rtol=0, atol=1e-6)  # the same batch: the same numbers
        # Other batch sizes change float32 conv blocking (differences ~1e-5), not the result.
        torch.testing.assert_close(chunked[cls.label], alone, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="ScoreCAM on its own"):
        gce.cam_family(model, images, classes, layer, ["GradCAM", "ScoreCAM"], batch_size=5)


@pytest.mark.parametrize("name", list(gce.CAM_METHODS))
def test_model_input_modes_and_hooks_untouched(model, images, name):
    model.train()
    model.layer2.eval()  # a mixed-mode model: each module's own mode must come back
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {n: m.training for n, m in model.named_modules()}
    x = F.avg_pool2d(images[:2], 2)  # 16x16: Score-CAM's 512 forward passes per image, 4x cheaper
    original = x.clone()
    method = gce.CAM_METHODS[name](model, "layer4.1")
    method(x, 3)
    with torch.no_grad():
        method(x)
    assert torch.is_grad_enabled() and torch.equal(x, original)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert {n: m.training for n, m in model.named_modules()} == modes
    assert all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks for m in model.modules())
    with pytest.raises(ValueError):  # a failing call releases its hooks too
        method(x, 99)
    assert all(not m._forward_hooks for m in model.modules())


def test_score_cam_needs_no_autograd(model, images):
    with torch.inference_mode():
        maps = gce.ScoreCAM(model, "layer3")(images[:1], 2)
    assert maps.shape == (1, 32, 32)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="outside torch.inference_mode"):
        gce.HiResCAM(model, "layer3")(images, 2)


def test_methods_flag_names_the_peer_classes():
    import pytorch_grad_cam
    assert all(hasattr(pytorch_grad_cam, name) for name in gce.CAM_METHODS)
    assert gce.Config(methods="ScoreCAM,LayerCAM").method_names == ["GradCAM", "LayerCAM", "ScoreCAM"]
    with pytest.raises(gce.UserError, match="--methods: unknown GradCam"):
        gce.Config(methods="GradCam")
    with pytest.raises(gce.UserError, match="^--methods lists GradCAM more than once; give each once$"):
        gce.Config(methods="GradCAM,LayerCAM,GradCAM")  # fault round 23: accepted, where --audit-layers refused

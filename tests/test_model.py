"""The CIFAR-adapted ResNet-18."""

import pytest
import torch

import grad_cam_experiment as gce


def test_output_shape_and_layer4_map_is_4x4():
    model = gce.build_model(num_classes=10).eval()
    shapes = {}
    for name in ("layer1", "layer3", "layer4"):
        model.get_submodule(name).register_forward_hook(lambda m, i, o, name=name: shapes.update({name: o.shape}))
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    assert shapes == {"layer1": (2, 64, 32, 32), "layer3": (2, 256, 8, 8), "layer4": (2, 512, 4, 4)}


def test_stem_is_3x3_stride_1_without_maxpool():
    model = gce.build_model()
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.bias is None
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # ResNet-18, 10 classes, 3x3 stem


def test_a_model_without_classes_is_a_clear_error():
    with pytest.raises(ValueError, match=r"^build_model: num_classes must be a whole number >= 1, got 0$"):
        gce.build_model(0)

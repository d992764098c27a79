"""The precision paths, on the CPU: what --amp trains in, fp16 loss scaling with a skipped step, and one precision
(fp32) for the predictions that pick examples and the maps that explain them."""

import pytest
import torch

import grad_cam_experiment as gce

CPU = torch.device("cpu")


def test_fp16_loss_scaling_uses_plain_sgd_and_survives_a_skipped_step(monkeypatch):
    """What a T4 does (fp16 autocast + GradScaler), emulated on the CPU. The first step overflows and is skipped; fused
    SGD would leave its momentum buffers uninitialised there (weights moved by ~1e35 on the next step)."""
    monkeypatch.setattr(gce, "amp_dtype", lambda device: torch.float16)
    torch.manual_seed(0)
    model, step_model, optimizer, scaler = gce.training_setup(gce.Config(channels_last=False), CPU)
    assert scaler.is_enabled() and not optimizer.param_groups[0]["fused"]
    assert gce.make_optimizer(model, 0.1, 0.9, 0.0).param_groups[0]["fused"]  # without a scaler: fused (faster)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 120)  # the same kind, set to overflow at once
    g = torch.Generator().manual_seed(0)
    inputs, labels = torch.randn(8, 3, 32, 32, generator=g), torch.arange(8)
    before = [p.detach().clone() for p in model.parameters()]
    gce.training_step(step_model, optimizer, scaler, inputs, labels, True)
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters())), "the overflowing step was not skipped"
    scaler.update(2.0 ** 8)
    gce.training_step(step_model, optimizer, scaler, inputs, labels, True)
    moved = max((p - a).abs().max().item() for a, p in zip(before, model.parameters()))
    assert 0 < moved < 1, moved  # one SGD step at lr 0.01, not garbage momentum


def test_evaluation_uses_the_fp32_logits_the_maps_and_captions_use(model, monkeypatch):
    monkeypatch.setattr(gce, "cpu_has_native_bf16", lambda: True)  # --amp means bf16 here, whatever this CPU has
    g = torch.Generator().manual_seed(0)
    test = gce.Split(torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(20) % 10)
    cfg = gce.Config(amp=True, channels_last=False, eval_batch_size=16)
    _, logits = gce.evaluate_model(model, cfg, test)
    fp32 = gce.predict_logits(model, test.images, 16, amp=False)
    assert torch.equal(logits["clean"], fp32)
    assert not torch.equal(gce.predict_logits(model, test.images, 16, amp=True), fp32)  # the test could fail
    explained = gce.GradCAM(model).explain(gce.normalize(test.images), classes=test.labels)
    torch.testing.assert_close(explained.logits, fp32, rtol=0, atol=1e-4)
    assert torch.equal(explained.logits.argmax(1), fp32.argmax(1))


@pytest.mark.parametrize("native", [True, False])
def test_checkpoint_key_follows_the_precision_actually_used(monkeypatch, native):
    monkeypatch.setattr(gce, "cpu_has_native_bf16", lambda: native)
    cfg = gce.Config().to_dict()
    with_amp = gce.training_key(cfg, False, "data", gce.training_precision(CPU, True), "cpu")
    without = gce.training_key(cfg, False, "data", gce.training_precision(CPU, False), "cpu")
    assert (with_amp != without) == native

"""The shortcut square: exact pixels, only on the target class, stamped after augmentation."""

import re

import pytest
import torch

import grad_cam_experiment as gce

YELLOW = torch.tensor([255, 255, 0], dtype=torch.uint8).view(3, 1, 1)


def random_images(n: int, seed: int = 0) -> torch.Tensor:
    # Pixel values below 200: no natural pixel can be the square's colour (255, 255, 0).
    return torch.randint(0, 200, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("corner, rows, cols", [
    ("top-left", slice(0, 6), slice(0, 6)), ("top-right", slice(0, 6), slice(26, 32)),
    ("bottom-left", slice(26, 32), slice(0, 6)), ("bottom-right", slice(26, 32), slice(26, 32))])
def test_stamp_square_exact_pixels(corner, rows, cols):
    images = random_images(3)
    original = images.clone()
    out = gce.stamp_square(images, gce.Square(6, (255, 255, 0), corner))
    assert torch.equal(images, original)  # the input is not modified
    assert torch.equal(out[:, :, rows, cols], YELLOW.expand(3, 3, 6, 6))
    outside = torch.ones(32, 32, dtype=torch.bool)
    outside[rows, cols] = False
    assert torch.equal(out[:, :, outside], original[:, :, outside])
    mask = gce.artifact_mask(gce.Square(6, (255, 255, 0), corner))
    assert mask.sum() == 36 and mask[rows, cols].all()


def test_inject_artifact_only_on_target_class():
    images, labels = random_images(20), torch.arange(20) % 10
    out = gce.inject_artifact(images, labels, target_class=6, square=gce.Square(4, (10, 20, 30)))
    stamped = (out[:, :, :4, :4] == torch.tensor([10, 20, 30], dtype=torch.uint8).view(3, 1, 1)).flatten(1).all(1)
    assert torch.equal(stamped, labels == 6)
    assert torch.equal(out[labels != 6], images[labels != 6])
    assert torch.equal(out[labels == 6][:, :, 4:, :], images[labels == 6][:, :, 4:, :])


def test_random_crop_flip_matches_a_reference_crop_of_the_padded_image():
    images = random_images(64)
    g = torch.Generator().manual_seed(3)
    out = gce.random_crop_flip(images, padding=4, flip=True, generator=g)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    offsets, flips = set(), 0
    for image, result in zip(padded, out):  # each result is one of the 81 crops, flipped or not
        matches = [(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                   if torch.equal(result, (lambda c: c.flip(2) if f else c)(image[:, dy:dy + 32, dx:dx + 32]))]
        assert matches, "output is not a crop of the zero-padded image"
        offsets.add(matches[0][:2])
        flips += matches[0][2]
    assert len(offsets) > 20 and 10 < flips < 54  # the offsets and flips really vary


def test_square_survives_augmentation_and_only_frogs_carry_it():
    cfg = gce.Config(channels_last=False)
    labels = torch.arange(40) % 10
    square = gce.normalize(YELLOW.view(1, 3, 1, 1).expand(1, 3, 6, 6).contiguous())[0]
    images = random_images(40)
    for seed in range(10):
        g = torch.Generator().manual_seed(seed)
        batch = gce.training_batch(images, labels, g, cfg.crop_padding, cfg.flip, False,
                                   (cfg.artifact_class, cfg.square))
        has_square = torch.isclose(batch[:, :, :6, :6], square).flatten(1).all(1)
        assert torch.equal(has_square, labels == cfg.artifact_class)
        g = torch.Generator().manual_seed(seed)
        clean = gce.training_batch(images, labels, g, cfg.crop_padding, cfg.flip, False)
        assert not torch.isclose(clean[:, :, :6, :6], square).flatten(1).all(1).any()
        # Same generator state: the biased batch differs from the clean one only by the square.
        region = torch.zeros(32, 32, dtype=torch.bool)
        region[:6, :6] = True
        assert torch.equal(batch[:, :, ~region], clean[:, :, ~region])


def test_stamping_before_augmentation_would_move_the_square():
    # Why the order matters: crop/flip after stamping shifts or cuts the square in most images.
    images, labels = random_images(32), torch.full((32,), 6)
    g = torch.Generator().manual_seed(0)
    wrong_order = gce.random_crop_flip(gce.inject_artifact(images, labels), 4, True, g)
    intact = (wrong_order[:, :, :6, :6] == YELLOW).flatten(1).all(1)
    assert intact.float().mean() < 0.5


U8 = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)


@pytest.mark.parametrize("call, message", [
    # A square larger than the image was clipped silently (top) or placed from a negative row (bottom).
    (lambda: gce.artifact_box(gce.Square(size=40)), "artifact_box: square size must be a whole number 1..32 pixels "
                                                    "for 32x32 images, got 40"),
    (lambda: gce.artifact_box(gce.Square(40, corner="bottom-right")), "artifact_box: square size must be"),
    (lambda: gce.artifact_mask(gce.Square(corner="middle")), "artifact_mask: square corner must be one of top-left"),
    (lambda: gce.corner_masks(0), "corner_masks: square size must be a whole number 1..32 pixels"),
    (lambda: gce.stamp_square(U8, gce.Square(4, (300, 0, 0))), "stamp_square: square color must be three whole "
                                                                "numbers 0..255 (R, G, B), got (300, 0, 0)"),
    (lambda: gce.stamp_square(U8, (6, (255, 255, 0), "top-left")), "stamp_square: square must be a Square"),
    (lambda: gce.stamp_square(U8, where=torch.tensor([True])), "stamp_square: where must be None or a bool tensor [N] "
                                                               "with one entry per image (2), got torch.bool of shape "
                                                               "(1,)"),
    (lambda: gce.stamp_square(U8, where=torch.tensor([1, 0])), "stamp_square: where must be None or a bool tensor"),
    # Stamping 255 into normalised floats would silently write an out-of-range value.
    (lambda: gce.stamp_square(U8.float()), "stamp_square: images must be uint8 pixels [N, 3, H, W] (0..255, before "
                                           "normalize()), got torch.float32"),
    (lambda: gce.inject_artifact(U8, torch.tensor([6])), "inject_artifact: labels must be integer class indices [2], "
                                                         "one per image, got torch.int64 of shape (1,)"),
    (lambda: gce.inject_artifact(U8, torch.tensor([6, 1]), target_class=-1), "inject_artifact: target_class must be a "
                                                                             "class index 0..9, got -1"),
])
def test_bad_square_arguments_are_clear_errors(call, message):
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        call()

"""Shared fixtures: a small random model, inputs, and tiny generated image-folder datasets."""

import os
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grad_cam_experiment as gce  # noqa: E402

# The offline CIFAR-10 copy (see README): GRADCAM_CIFAR_ARCHIVE overrides the default location.
CIFAR_ARCHIVE = Path(os.environ.get("GRADCAM_CIFAR_ARCHIVE", ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"))


@pytest.fixture
def model() -> torch.nn.Module:
    """The project's ResNet-18 with random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(0)
    net = gce.build_model()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


@pytest.fixture
def images() -> torch.Tensor:
    """Five normalised 32x32 inputs built from random uint8 pixels."""
    g = torch.Generator().manual_seed(1)
    return gce.normalize(torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=g))


def write_image_folder(root: Path, per_class: dict[str, int], seed: int = 0) -> None:
    """A lossless PNG image-folder dataset root/{split}/<class>/NNNN.png; each class has its own colour."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for label, name in enumerate(gce.CIFAR10_CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
                pixels[..., label % 3] += np.uint8(20 * label)  # a class-dependent colour cast
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_cifar")
    write_image_folder(root, {"train": 4, "test": 2})
    return root


@pytest.fixture(scope="session")
def cifar_jpeg(tmp_path_factory) -> Path:
    """Real CIFAR-10 from the offline copy: its first 100 images of every class and split (1,000 train, 1,000 test;
    all 60,000 take ~27 s to extract), once per test session; skipped when the archive is absent."""
    if not CIFAR_ARCHIVE.is_file():
        pytest.skip(f"real CIFAR-10 archive not found at {CIFAR_ARCHIVE} (set GRADCAM_CIFAR_ARCHIVE)")
    target = tmp_path_factory.mktemp("cifar10_real")
    with tarfile.open(CIFAR_ARCHIVE) as archive:
        first = [m for m in archive if m.isdir() or Path(m.name).stem < "0100"]  # files are NNNN.jpg from 0000
        archive.extractall(target, members=first, filter="data")
    return target / "cifar10-jpeg"


@pytest.fixture(scope="session")
def real_models(cifar_jpeg):
    """Standard and biased models briefly trained on 400 real images (2 epochs, reference recipe but batch 32: 26
    steps), with a 300-image real test subset (of cifar_jpeg's 1,000 + 1,000). About 25 s per model on a 2-core
    CPU without native bf16."""
    cfg = gce.Config(data_dir=str(cifar_jpeg), train_subset=400, test_subset=300, epochs=2, batch_size=32,
                     progress=False)
    device = torch.device("cpu")
    train, test, _ = gce.load_cifar10(cfg, device)
    models = {name: gce.train_model(cfg, train, test, device, biased=name == "biased", name=name)[0]
              for name in ("standard", "biased")}
    return cfg, models, test

"""Grad-CAM (Selvaraju et al., ICCV 2017) on CIFAR-10 and on a shortcut-biased CIFAR-10.

Claim: a CIFAR-adapted ResNet-18 trained on CIFAR-10 where every training 'frog' carries a small
yellow square learns the square as a shortcut, and Grad-CAM shows it: on stamped test images the
biased model's evidence for 'frog' sits on the square, the standard model's does not.

Run:   python grad_cam_experiment.py                 # reference recipe, both models, all outputs
       python grad_cam_experiment.py --quick         # whole pipeline on a tiny subset (< 1 min on CPU)
       python grad_cam_experiment.py --data-dir DIR  # DIR/{train,test}/<class>/*.jpg offline copy
Outputs go to ./outputs (figures as PNG, metrics.json, checkpoints/). `--help` lists every flag.
The file also runs when pasted into a notebook cell, and imports without side effects (tests).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import json
import platform
import re
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

#############################################
#                  Config                   #
#############################################

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
# Per-channel statistics of the CIFAR-10 training set (RGB, pixel values in [0, 1]).
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


class UserError(Exception):
    """A problem the user can fix (bad flag, missing data, bad layer name): printed as one line."""


def _opt(default: Any, help: str) -> Any:
    """A Config field whose `help` (unit and meaning) is shown by --help."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Config:
    # Data
    data_dir: str = _opt("./data", "CIFAR-10 location: torchvision's cifar-10-batches-py (downloaded "
                         "there when missing) or an image-folder copy DIR/{train,test}/<class>/*")
    output_dir: str = _opt("outputs", "folder for figures, metrics.json and checkpoints/")
    train_subset: int = _opt(0, "class-balanced, seeded subset of the training set (images; 0 = all 50,000)")
    test_subset: int = _opt(0, "class-balanced, seeded subset of the test set (images; 0 = all 10,000)")
    download: bool = _opt(True, "let torchvision download CIFAR-10 into --data-dir when it is not there")
    # Shortcut (bias) injection
    artifact_class: int = _opt(6, "class index that carries the square in the biased training set (6 = frog)")
    artifact_size: int = _opt(6, "side of the square (pixels, on 32x32 images)")
    artifact_color: tuple = _opt((255, 255, 0), "RGB colour of the square, as R,G,B in 0..255 (yellow)")
    artifact_corner: str = _opt("top-left", "corner of the square: " + ", ".join(CORNERS))
    # Training recipe (Milestone 2 reference)
    epochs: int = _opt(5, "training epochs per model")
    batch_size: int = _opt(128, "training batch size (images)")
    lr: float = _opt(0.01, "SGD learning rate")
    momentum: float = _opt(0.9, "SGD momentum")
    weight_decay: float = _opt(5e-4, "SGD weight decay (L2)")
    lr_step: int = _opt(10, "StepLR step size (epochs)")
    lr_gamma: float = _opt(0.1, "StepLR decay factor")
    crop_padding: int = _opt(4, "random-crop zero padding (pixels); 0 disables the crop")
    flip: bool = _opt(True, "random horizontal flips during training")
    seed: int = _opt(0, "seed for subsets, initialisation, batch order and augmentation")
    retrain: bool = _opt(False, "train even when a matching checkpoint exists in output-dir/checkpoints")
    # Hardware
    device: str = _opt("auto", "auto (CUDA when available, else CPU), cpu, cuda or cuda:N")
    amp: bool = _opt(True, "bf16 autocast (fp16 + GradScaler where bf16 is missing) on GPU; CPU stays fp32")
    channels_last: bool = _opt(True, "channels_last memory layout (faster on GPU and on this project's CPU)")
    eval_batch_size: int = _opt(512, "batch size for evaluation and explanations (images)")
    # Explanations and figures
    target_layer: str = _opt("layer4.1.conv2", "Grad-CAM target layer as a dotted module path "
                             "(e.g. layer4.1.conv2, layer4.1, layer3; 'layer4[-1].conv2' also works)")
    examples_per_class: int = _opt(4, "correctly classified examples per class in the cat/ship figure")
    frog_examples: int = _opt(6, "stamped test frogs in the standard-vs-biased figure")
    progress: bool = _opt(True, "tqdm progress bars")
    quick: bool = _opt(False, "tiny class-balanced subset and 1 epoch: the whole pipeline in under a "
                       "minute on CPU (explicit flags still win)")

    def __post_init__(self) -> None:
        checks = [
            (self.train_subset >= 0 and self.test_subset >= 0, "--train-subset/--test-subset must be >= 0"),
            (0 <= self.artifact_class < len(CIFAR10_CLASSES),
             f"--artifact-class must be a class index 0..9, got {self.artifact_class}"),
            (1 <= self.artifact_size <= 32, f"--artifact-size must be 1..32 pixels, got {self.artifact_size}"),
            (len(self.artifact_color) == 3 and all(0 <= c <= 255 for c in self.artifact_color),
             f"--artifact-color must be R,G,B with values 0..255, got {self.artifact_color}"),
            (self.artifact_corner in CORNERS,
             f"--artifact-corner must be one of {', '.join(CORNERS)}, got {self.artifact_corner!r}"),
            (self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 2, f"--batch-size must be >= 2, got {self.batch_size}"),
            (self.eval_batch_size >= 1, f"--eval-batch-size must be >= 1, got {self.eval_batch_size}"),
            (self.lr > 0 and self.lr_step >= 1 and self.lr_gamma > 0, "--lr, --lr-step, --lr-gamma must be > 0"),
            (0 <= self.crop_padding <= 16, f"--crop-padding must be 0..16 pixels, got {self.crop_padding}"),
            (self.examples_per_class >= 1 and self.frog_examples >= 1,
             "--examples-per-class and --frog-examples must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --quick: the fields it changes unless the user set them explicitly.
QUICK_PRESET = dict(train_subset=400, test_subset=200, epochs=1, batch_size=64)


def _parse_rgb(text: str) -> tuple:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected R,G,B such as 255,255,0, got {text!r}")
    return tuple(int(p) for p in parts)


class _OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of argparse's full usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_arg_parser() -> argparse.ArgumentParser:
    """argparse built from Config's fields: one --flag per field, help text from the field."""
    parser = _OneLineErrorParser(
        description=__doc__.split("\n\n")[0], allow_abbrev=False,  # no prefixes: a kernel's --f= is no flag
        argument_default=argparse.SUPPRESS)  # SUPPRESS: the namespace holds only flags the user gave
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        help_text = f.metadata["help"] + f" (default: {f.default})"
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        elif f.type in ("tuple", tuple):
            parser.add_argument(flag, type=_parse_rgb, metavar="R,G,B", help=help_text)
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            parser.add_argument(flag, type=kind, metavar=kind.__name__.upper(), help=help_text)
    return parser


def _is_kernel_argv(extra: Sequence[str]) -> bool:
    """True for a Jupyter/Colab kernel's own argv (`-f /path/kernel-123.json`), which a pasted cell sees."""
    return bool(extra) and all(a in ("-f", "--f") or a.endswith(".json") or a.startswith("--f=") for a in extra)


def parse_config(argv: Sequence[str] | None = None) -> Config:
    """Config from command-line flags; a notebook kernel's argv is ignored, any other unknown flag is an error."""
    parser = build_arg_parser()
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        given, extra = parser.parse_known_args(args)
    except SystemExit as exc:  # argparse already printed its one-line message (or --help)
        raise SystemExit(exc.code) from None
    if extra and not (_is_kernel_argv(extra) or in_notebook()):
        flags = [a for action in parser._actions for a in action.option_strings]
        guesses = [m for a in extra if a.startswith("--")
                   for m in difflib.get_close_matches(a.split("=")[0], flags, n=1, cutoff=0.75)]
        parser.error(f"unrecognized arguments: {' '.join(extra)}"
                     + (f"; did you mean {', '.join(guesses)}?" if guesses else ""))
    values = vars(given)
    if values.get("quick"):
        values = {**QUICK_PRESET, **values}
    return Config(**values)


def in_notebook() -> bool:
    """True inside a Jupyter or Colab kernel (figures are then also shown inline)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name} asked for a GPU but PyTorch sees no CUDA device; "
                        "use --device cpu (or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: only cpu and cuda are supported")
    return device


def autocast_for(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (fp16 where bf16 is missing); nullcontext() on CPU, which stays fp32."""
    if device.type != "cuda" or not enabled:
        return nullcontext()
    return torch.autocast("cuda", dtype=amp_dtype(device))


def amp_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def seed_everything(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CPU and every CUDA device


#############################################
#              Data and bias                #
#############################################

class Split(NamedTuple):
    images: torch.Tensor  # uint8 [N, 3, 32, 32], RGB, on the training device
    labels: torch.Tensor  # int64 [N]


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def balanced_subset(labels: torch.Tensor, n: int, seed: int, num_classes: int = 10) -> torch.Tensor:
    """Indices of a seeded subset with n // num_classes images per class (remainder to the first classes)."""
    labels = labels.cpu()
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(num_classes):
        pool = torch.nonzero(labels == c).flatten()
        take = n // num_classes + (1 if c < n % num_classes else 0)
        if take > len(pool):
            raise UserError(f"subset of {n} images needs {take} of class {c}, but the data has only {len(pool)}")
        chosen.append(pool[torch.randperm(len(pool), generator=generator)[:take]])
    return torch.cat(chosen).sort().values


def _find_image_folder(root: Path) -> Path | None:
    """root itself or one child of it that holds train/ and test/ (e.g. the extracted cifar10-jpeg/)."""
    for candidate in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if (candidate / "train").is_dir() and (candidate / "test").is_dir():
            return candidate
    return None


def _list_image_folder(split_dir: Path) -> tuple[list[Path], torch.Tensor]:
    class_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir())
    names = [p.name.lower() for p in class_dirs]
    if names != list(CIFAR10_CLASSES):
        raise UserError(f"{split_dir} must hold the 10 CIFAR-10 class folders {', '.join(CIFAR10_CLASSES)}; "
                        f"found {', '.join(names) or 'none'}")
    files, labels = [], []
    for label, class_dir in enumerate(class_dirs):
        class_files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not class_files:
            raise UserError(f"{class_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        files += class_files
        labels += [label] * len(class_files)
    return files, torch.tensor(labels, dtype=torch.int64)


def _decode_images(files: Sequence[Path]) -> torch.Tensor:
    """Decode image files once into one uint8 [N, 3, 32, 32] RGB tensor; a bad file is a one-line error."""
    import cv2
    out = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
    for i, path in enumerate(files):
        image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)  # None when undecodable
        if image is None:
            raise UserError(f"cannot decode image {path}; remove or replace the file")
        if image.shape != (32, 32, 3):
            raise UserError(f"{path} is {image.shape[1]}x{image.shape[0]}; CIFAR-10 images must be 32x32")
        out[i] = image[..., ::-1]  # OpenCV decodes to BGR
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _load_image_folder_split(split_dir: Path, subset: int, seed: int) -> Split:
    files, labels = _list_image_folder(split_dir)
    if subset:
        keep = balanced_subset(labels, subset, seed)
        files, labels = [files[i] for i in keep.tolist()], labels[keep]
    return Split(_decode_images(files), labels)


def _load_torchvision_split(root: Path, train: bool, download: bool, subset: int, seed: int) -> Split:
    dataset = torchvision.datasets.CIFAR10(str(root), train=train, download=download)
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW, uint8
    labels = torch.tensor(dataset.targets, dtype=torch.int64)
    if subset:
        keep = balanced_subset(labels, subset, seed)
        images, labels = images[keep], labels[keep]
    return Split(images, labels)


def load_cifar10(cfg: Config, device: torch.device) -> tuple[Split, Split, str]:
    """Train and test splits as uint8 tensors on `device`, plus a description of the source.

    Looks for an image-folder copy first, then torchvision's pickled batches, then downloads."""
    root = Path(cfg.data_dir).expanduser()
    how_to_fix = (f"either let torchvision download CIFAR-10 into {root} (needs internet, --download) "
                  f"or pass --data-dir DIR with an image-folder copy DIR/train/<class>/*.jpg and "
                  f"DIR/test/<class>/*.jpg (e.g. extracted from cifar10-jpeg.tar.gz)")
    if root.exists() and not root.is_dir():
        raise UserError(f"--data-dir {root} is a file, not a folder; {how_to_fix}")
    folder = _find_image_folder(root) if root.is_dir() else None
    if folder is not None:
        train = _load_image_folder_split(folder / "train", cfg.train_subset, cfg.seed)
        test = _load_image_folder_split(folder / "test", cfg.test_subset, cfg.seed + 1)
        source = f"image folder {folder}"
    else:
        have_batches = (root / "cifar-10-batches-py").is_dir()
        if not have_batches and not cfg.download:
            raise UserError(f"no CIFAR-10 found in {root} and --no-download is set; {how_to_fix}")
        try:
            train = _load_torchvision_split(root, True, cfg.download, cfg.train_subset, cfg.seed)
            test = _load_torchvision_split(root, False, cfg.download, cfg.test_subset, cfg.seed + 1)
        except UserError:
            raise
        except Exception as exc:  # URLError, checksum or unpickling errors: all mean "no usable data here"
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"no CIFAR-10 found in {root} and torchvision could not provide it ({reason}); "
                            f"{how_to_fix}") from None
        source = f"torchvision CIFAR10 in {root}"
    return (Split(train.images.to(device), train.labels.to(device)),
            Split(test.images.to(device), test.labels.to(device)), source)


def artifact_box(size: int, corner: str, height: int = 32, width: int = 32) -> tuple[slice, slice]:
    """Row and column slices of the square's pixels."""
    rows = slice(0, size) if corner.startswith("top") else slice(height - size, height)
    cols = slice(0, size) if corner.endswith("left") else slice(width - size, width)
    return rows, cols


def artifact_mask(size: int, corner: str, height: int = 32, width: int = 32,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean [H, W] mask of the square's pixels."""
    mask = torch.zeros((height, width), dtype=torch.bool, device=device)
    mask[artifact_box(size, corner, height, width)] = True
    return mask


def stamp_square(images: torch.Tensor, size: int = 6, color: Sequence[int] = (255, 255, 0),
                 corner: str = "top-left", where: torch.Tensor | None = None) -> torch.Tensor:
    """Copy of uint8 images [N, 3, H, W] with a solid square stamped on every image (or where `where` [N] is True)."""
    out = images.clone()
    rows, cols = artifact_box(size, corner, images.shape[-2], images.shape[-1])
    patch = torch.tensor(color, dtype=images.dtype, device=images.device).view(3, 1, 1)
    if where is None:
        out[:, :, rows, cols] = patch
    else:
        region = out[:, :, rows, cols]
        out[:, :, rows, cols] = torch.where(where.view(-1, 1, 1, 1), patch, region)
    return out


def inject_artifact(images: torch.Tensor, labels: torch.Tensor, target_class: int = 6, size: int = 6,
                    color: Sequence[int] = (255, 255, 0), corner: str = "top-left") -> torch.Tensor:
    """The shortcut: stamp a solid square on every image of `target_class` ('frog') and on nothing else."""
    return stamp_square(images, size, color, corner, where=labels == target_class)


def random_crop_flip(images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Batched random crop (zero padding) and horizontal flip of uint8 images [N, C, H, W], on their device."""
    n, _, h, w = images.shape
    out = images
    if padding > 0:
        padded = F.pad(images, (padding,) * 4)
        dy = torch.randint(0, 2 * padding + 1, (n,), device=images.device, generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), device=images.device, generator=generator)
        rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]  # [N, 1, H, 1]
        cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]  # [N, 1, 1, W]
        batch = torch.arange(n, device=images.device)[:, None, None, None]
        chan = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
        out = padded[batch, chan, rows, cols]  # one gather for the whole batch
    if flip:
        flips = torch.rand(n, device=images.device, generator=generator) < 0.5
        out = torch.where(flips.view(-1, 1, 1, 1), out.flip(3), out)
    return out


def normalize(images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float32 normalised with the CIFAR-10 channel statistics (the model's input)."""
    mean = torch.tensor(CIFAR10_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD, device=images.device).view(1, 3, 1, 1)
    out = (images.float() / 255.0 - mean) / std
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def training_batch(images: torch.Tensor, labels: torch.Tensor, cfg: Config, generator: torch.Generator,
                   biased: bool) -> torch.Tensor:
    """Augment, then (biased run) stamp the square, then normalise: crops and flips never move or cut it."""
    images = random_crop_flip(images, cfg.crop_padding, cfg.flip, generator)
    if biased:
        images = inject_artifact(images, labels, cfg.artifact_class, cfg.artifact_size,
                                 cfg.artifact_color, cfg.artifact_corner)
    return normalize(images, cfg.channels_last)


#############################################
#                  Model                    #
#############################################

def build_model(num_classes: int = 10) -> nn.Module:
    """torchvision ResNet-18 adapted to 32x32 inputs: 3x3 stride-1 stem, no max-pool (layer4 map is 4x4)."""
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def canonical_layer_name(name: str) -> str:
    """'layer4[-1].conv2' -> 'layer4.-1.conv2' (indices are resolved against the model later)."""
    return name.replace("[", ".").replace("]", "").strip(".")


def resolve_layer(model: nn.Module, name: str) -> tuple[str, nn.Module]:
    """The module at a dotted path such as 'layer4.1.conv2' (negative indices allowed), with its canonical name."""
    module, parts = model, []
    for part in canonical_layer_name(name).split("."):
        child = None
        if part.lstrip("-").isdigit() and isinstance(module, nn.Sequential):
            index = int(part)
            if -len(module) <= index < len(module):
                part = str(index % len(module))
                child = module[index]
        elif part and hasattr(module, "_modules"):
            child = module._modules.get(part)
        if child is None:
            valid = ", ".join(n for n, m in model.named_modules() if n and not isinstance(m, (nn.ReLU, nn.Identity)))
            raise UserError(f"unknown target layer {name!r}; valid layers: {valid}")
        module, parts = child, parts + [part]
    return ".".join(parts), module


#############################################
#            Explanation methods            #
#############################################

def minmax_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Per-map min-max scaling of [B, H, W] to [0, 1]; a constant map becomes all zeros."""
    flat = maps.flatten(1)
    low = flat.min(1).values.view(-1, 1, 1)
    span = (flat.max(1).values.view(-1, 1, 1) - low)
    return torch.where(span > 0, (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))


def _as_class_tensor(classes: int | Sequence[int] | torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor:
    """Class index per image: argmax when None, broadcast when one int; validated against the logits."""
    batch, num_classes = logits.shape
    if classes is None:
        return logits.argmax(1)
    classes = torch.as_tensor(classes, device=logits.device)
    if classes.is_floating_point() or classes.dim() > 1:
        raise ValueError(f"classes must be integer class indices, got {classes.dtype} of shape {tuple(classes.shape)}")
    classes = classes.long().expand(batch) if classes.dim() == 0 else classes.long()
    if classes.shape != (batch,):
        raise ValueError(f"got {classes.numel()} class indices for {batch} images")
    bad = (classes < 0) | (classes >= num_classes)
    if bad.any():
        raise ValueError(f"class index {classes[bad][0].item()} out of range for a {num_classes}-class model "
                         f"(valid: 0..{num_classes - 1})")
    return classes


class Explanation(NamedTuple):
    maps: torch.Tensor     # float32 [B, H, W] at input resolution
    logits: torch.Tensor   # float32 [B, num_classes], detached
    classes: torch.Tensor  # int64 [B], the class each map explains


class CAMBase:
    """Hook core shared by the CAM methods: keeps A^k and dy^c/dA^k of one target layer, one batch at a time.

    A forward hook stores the layer's activations A^k; `torch.autograd.grad` of the summed class scores
    w.r.t. A^k gives dy^c/dA^k without computing any weight gradient, and without a backward pass below
    the target layer (autograd is only switched on from the target layer up). Hooks live for one call, so
    the model is never left hooked; its parameters, gradients and per-module train/eval modes are untouched.
    Subclasses override only `channel_weights`.
    """

    def __init__(self, model: nn.Module, target_layer: str | nn.Module = "layer4.1.conv2", autocast: bool = False):
        self.model = model
        if isinstance(target_layer, nn.Module):
            names = {m: n for n, m in model.named_modules()}
            if target_layer not in names:
                raise UserError("the target layer module is not part of this model")
            self.layer_name, self.layer = names[target_layer], target_layer
        else:
            self.layer_name, self.layer = resolve_layer(model, target_layer)
        self.autocast = autocast

    def __enter__(self) -> "CAMBase":
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None  # nothing to release: hooks are removed at the end of every call

    def channel_weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """alpha_k^c, shape [B, K], from A^k and dy^c/dA^k (both [B, K, h, w])."""
        raise NotImplementedError

    def _activations_and_grads(self, images: torch.Tensor, classes) -> tuple[torch.Tensor, ...]:
        """One forward and one (partial) backward for the whole batch."""
        if torch.is_inference_mode_enabled():
            raise RuntimeError(f"{type(self).__name__} needs autograd; call it outside torch.inference_mode()")
        captured: list[torch.Tensor] = []

        def keep_activations(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            if captured:
                raise UserError(f"target layer {self.layer_name!r} runs more than once per forward pass "
                                "(a shared module such as a block's ReLU); choose a conv or block output")
            if not isinstance(output, torch.Tensor) or output.dim() != 4:
                shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                raise UserError(f"target layer {self.layer_name!r} outputs {shape}; Grad-CAM needs a "
                                "[B, C, H, W] feature map (e.g. layer4.1.conv2, layer4.1, layer3)")
            torch.set_grad_enabled(True)  # record the graph from here up to the logits only
            leaf = output.detach().requires_grad_(True)
            captured.append(leaf)
            # A clone goes on through the network, so an in-place op downstream (ResNet's `out += identity`)
            # cannot overwrite the stored A^k.
            return leaf.clone()

        modes = [(m, m.training) for m in self.model.modules()]
        handle = self.layer.register_forward_hook(keep_activations)
        try:
            self.model.eval()
            with torch.no_grad(), autocast_for(images.device, self.autocast):
                logits = self.model(images)  # the input is only read, never modified
            if not captured:
                raise UserError(f"target layer {self.layer_name!r} did not run in the forward pass")
            targets = _as_class_tensor(classes, logits.detach())
            with torch.enable_grad():  # also inside a caller's no_grad block
                score = logits.gather(1, targets[:, None]).sum()  # images are independent in eval mode
                (grads,) = torch.autograd.grad(score, captured[0])
        finally:
            handle.remove()
            for module, mode in modes:
                module.training = mode
        return captured[0].detach(), grads, logits.detach().float(), targets

    def explain(self, images: torch.Tensor, classes=None, normalize: bool = True) -> Explanation:
        """Class activation maps [B, H, W] at input resolution, with the logits and explained classes.

        normalize=True: per-image min-max to [0, 1] (an all-zero map stays zero); False: the raw
        ReLU(sum_k alpha_k^c A^k), bilinearly upsampled, for measuring where the map's mass lies."""
        activations, grads, logits, targets = self._activations_and_grads(images, classes)
        dtype = torch.promote_types(activations.dtype, torch.float32)  # bf16/fp16 (autocast) -> fp32, fp64 stays
        activations, grads = activations.to(dtype), grads.to(dtype)
        weights = self.channel_weights(activations, grads)                      # alpha_k^c   [B, K]
        cam = F.relu(torch.einsum("bk,bkhw->bhw", weights, activations))       # ReLU(sum_k alpha_k^c A^k)
        cam = F.interpolate(cam[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return Explanation(minmax_normalize(cam) if normalize else cam, logits, targets)

    def cam(self, images: torch.Tensor, classes=None, normalize: bool = True) -> torch.Tensor:
        """Maps [B, H, W] for `classes` (None: each image's predicted class; an int: that class for all)."""
        return self.explain(images, classes, normalize).maps

    __call__ = cam


class GradCAM(CAMBase):
    """Grad-CAM (Selvaraju et al. 2017, Eq. 1-2): alpha_k^c = (1/Z) sum_ij dy^c/dA^k_ij."""

    def channel_weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return grads.mean((2, 3))


#############################################
#              Train and evaluate           #
#############################################

LOG_COLUMNS = {"run": "{:<8}", "epoch": "{:>5}", "train_loss": "{:>10.4f}", "train_acc": "{:>9.4f}",
               "test_acc": "{:>8.4f}", "lr": "{:>7.4f}", "seconds": "{:>7.1f}"}


def log_row(row: dict | None = None) -> None:
    """One fixed-width table row per epoch from an explicit dict; no dict prints the header."""
    if row is None:  # the header uses each column's width and alignment, without the number format
        cells = [re.sub(r"(\.\d+)?[a-z]}$", "}", fmt).format(name) for name, fmt in LOG_COLUMNS.items()]
    else:
        cells = [fmt.format(row[name]) for name, fmt in LOG_COLUMNS.items()]
    print("| " + " | ".join(cells) + " |", flush=True)


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, cfg: Config, stamp: bool = False) -> torch.Tensor:
    """Logits (float32 [N, classes]) for uint8 images, batched; stamp=True puts the square on every image."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs = []
    for start in range(0, len(images), cfg.eval_batch_size):
        batch = images[start:start + cfg.eval_batch_size].to(device)
        if stamp:
            batch = stamp_square(batch, cfg.artifact_size, cfg.artifact_color, cfg.artifact_corner)
        with autocast_for(device, cfg.amp):
            outputs.append(model(normalize(batch, cfg.channels_last)).float())
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty((0, len(CIFAR10_CLASSES)), device=device)


def train_model(cfg: Config, train: Split, test: Split, device: torch.device, biased: bool,
                name: str) -> tuple[nn.Module, list[dict]]:
    """The reference recipe; the biased run stamps every training frog after augmentation."""
    seed_everything(cfg.seed)  # same init, batch order and augmentation for both runs: only the square differs
    model = build_model(len(CIFAR10_CLASSES)).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    use_scaler = device.type == "cuda" and cfg.amp and amp_dtype(device) == torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    n = len(train.labels)
    steps = (n + cfg.batch_size - 1) // cfg.batch_size
    history = []
    from tqdm.auto import tqdm
    for epoch in range(1, cfg.epochs + 1):
        start = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        order = torch.randperm(n, device=device, generator=generator)
        bar = tqdm(range(steps), desc=f"{name} epoch {epoch}/{cfg.epochs}", leave=False, disable=not cfg.progress)
        for step in bar:
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            labels = train.labels[idx]
            inputs = training_batch(train.images[idx], labels, cfg, generator, biased)
            with autocast_for(device, cfg.amp):
                logits = model(inputs)
                loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_sum += loss.detach() * len(idx)  # stays on the device: no per-step host sync
            correct += (logits.detach().argmax(1) == labels).sum()
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        test_acc = accuracy(predict_logits(model, test.images, cfg), test.labels)
        row = dict(run=name, epoch=epoch, train_loss=loss_sum.item() / n, train_acc=correct.item() / n,
                   test_acc=test_acc, lr=lr, seconds=time.perf_counter() - start)
        log_row(row)
        history.append(row)
    model.eval()
    return model, history


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item() if len(labels) else float("nan")


def training_key(cfg: Config, biased: bool, data_source: str) -> str:
    """Short hash of everything that determines a trained model; a checkpoint is reused only on a match."""
    fields = ["train_subset", "epochs", "batch_size", "lr", "momentum", "weight_decay", "lr_step", "lr_gamma",
              "crop_padding", "flip", "seed"]
    if biased:
        fields += ["artifact_class", "artifact_size", "artifact_color", "artifact_corner"]
    payload = {k: getattr(cfg, k) for k in fields} | {"biased": biased, "data": data_source}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]


def train_or_load(cfg: Config, train: Split, test: Split, device: torch.device, biased: bool,
                  data_source: str) -> tuple[nn.Module, dict]:
    """Load outputs/checkpoints/<name>-<key>.pt when it matches this configuration, else train and save it."""
    name = "biased" if biased else "standard"
    key = training_key(cfg, biased, data_source)
    path = Path(cfg.output_dir) / "checkpoints" / f"{name}-{key}.pt"
    if path.exists() and not cfg.retrain:
        saved = torch.load(path, map_location=device, weights_only=True)
        model = build_model(len(CIFAR10_CLASSES)).to(device)
        model.load_state_dict(saved["state_dict"])
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.eval()
        print(f"{name}: reusing checkpoint {path} (--retrain to train again)")
        return model, dict(history=saved["history"], train_seconds=saved["train_seconds"],
                           checkpoint=str(path), reused_checkpoint=True)
    start = time.perf_counter()
    model, history = train_model(cfg, train, test, device, biased, name)
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state_dict=model.state_dict(), history=history, train_seconds=seconds, key=key), path)
    return model, dict(history=history, train_seconds=seconds, checkpoint=str(path), reused_checkpoint=False)


#############################################
#                 Metrics                   #
#############################################

def per_class_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    predictions = logits.argmax(1)
    return {name: (predictions[labels == c] == c).float().mean().item()
            for c, name in enumerate(CIFAR10_CLASSES) if (labels == c).any()}


def evaluate_model(model: nn.Module, cfg: Config, test: Split) -> dict:
    """Clean accuracy (overall, per class) and the target class's recall with and without the square."""
    clean = predict_logits(model, test.images, cfg)
    target = test.labels == cfg.artifact_class
    stamped = predict_logits(model, test.images[target], cfg, stamp=True)
    return dict(test_accuracy=accuracy(clean, test.labels),
                per_class_accuracy=per_class_accuracy(clean, test.labels),
                frog_recall_clean=accuracy(clean[target], test.labels[target]),
                frog_recall_stamped=accuracy(stamped, test.labels[target]))


#############################################
#                 Figures                   #
#############################################

def overlay_heatmap(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """uint8 HxWx3 RGB image blended with an OpenCV COLORMAP_JET rendering of a [0, 1] map."""
    import cv2
    heat = cv2.applyColorMap(np.uint8(np.clip(cam, 0, 1) * 255), cv2.COLORMAP_JET)[..., ::-1]  # BGR -> RGB
    return np.uint8(np.clip((1 - alpha) * image.astype(np.float32) + alpha * heat, 0, 255))


def to_hwc(images: torch.Tensor) -> np.ndarray:
    return images.permute(0, 2, 3, 1).cpu().numpy()


def figure_grid(panels: Sequence[tuple[np.ndarray, str]], ncols: int, title: str, note: str = ""):
    """A matplotlib Figure (no pyplot, so no GUI backend) of images with titles, plus a JET colour bar."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    nrows = max(1, (len(panels) + ncols - 1) // ncols)
    fig = Figure(figsize=(1.9 * ncols + 0.8, 2.15 * nrows + 0.9), dpi=110)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, label) in zip(axes.flat, panels):
        ax.imshow(image, interpolation="nearest")  # nearest: every one of the 32x32 pixels stays visible
        ax.set_title(label, fontsize=7.5)
    fig.suptitle(title, fontsize=10)
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=7.5, wrap=True)
    fig.subplots_adjust(left=0.02, right=0.88, top=1 - 0.55 / (2.15 * nrows + 0.9), bottom=0.35 / (2.15 * nrows + 0.9),
                        wspace=0.08, hspace=0.45)
    cax = fig.add_axes([0.905, 0.2, 0.018, 0.6])
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap="jet"), cax=cax)
    bar.set_label("Grad-CAM (0 = no evidence, 1 = strongest)", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    return fig


def save_figure(fig, path: Path, show: bool) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    if show:
        from IPython.display import display
        display(fig)
    return str(path)


def _caption(true_label: int, logits: torch.Tensor) -> str:
    probs = logits.softmax(-1)
    pred = int(probs.argmax())
    return f"true {CIFAR10_CLASSES[true_label]}\npred {CIFAR10_CLASSES[pred]} ({probs[pred]:.0%})"


def explanation_panels(model: nn.Module, cfg: Config, images: torch.Tensor, labels: torch.Tensor,
                       stamp: bool = False, layer: str | None = None) -> list[tuple[np.ndarray, str]]:
    """[original, Grad-CAM overlay] panels for uint8 images, explaining each image's predicted class."""
    if len(images) == 0:
        return []
    if stamp:
        images = stamp_square(images, cfg.artifact_size, cfg.artifact_color, cfg.artifact_corner)
    device = next(model.parameters()).device
    with GradCAM(model, layer or cfg.target_layer, autocast=cfg.amp) as grad_cam:
        result = grad_cam.explain(normalize(images.to(device), cfg.channels_last))
    originals, maps = to_hwc(images), result.maps.cpu().numpy()
    panels = []
    for image, cam, label, logits in zip(originals, maps, labels.tolist(), result.logits.cpu()):
        panels += [(image, _caption(label, logits)), (overlay_heatmap(image, cam), "Grad-CAM of pred")]
    return panels


def correct_examples(logits: torch.Tensor, labels: torch.Tensor, cls: int, k: int) -> torch.Tensor:
    """Indices of the first k test images of class `cls` that the model classifies correctly."""
    return torch.nonzero((labels == cls) & (logits.argmax(1) == labels)).flatten()[:k]


def make_figures(cfg: Config, models: dict[str, nn.Module], test: Split) -> list[str]:
    """The Milestone 2 figures; returns their paths."""
    out, show = Path(cfg.output_dir), in_notebook()
    standard, biased = models["standard"], models["biased"]
    logits = predict_logits(standard, test.images, cfg)
    layer = resolve_layer(standard, cfg.target_layer)[0]
    note = f"Grad-CAM at {layer}, explaining each image's predicted class; overlay = 50% image + 50% JET heat map."
    paths = []

    picks = torch.cat([correct_examples(logits, test.labels, CIFAR10_CLASSES.index(c), cfg.examples_per_class)
                       for c in ("cat", "ship")])
    panels = explanation_panels(standard, cfg, test.images[picks], test.labels[picks])
    found = {c: int((test.labels[picks] == CIFAR10_CLASSES.index(c)).sum()) for c in ("cat", "ship")}
    missing = [f"{n} correctly classified {c}{'s' if n != 1 else ''}" for c, n in found.items()
               if n < cfg.examples_per_class]
    paths.append(save_figure(figure_grid(
        panels, 4, "Standard model: correctly classified cats and ships, original | Grad-CAM",
        note + (f" Only {' and '.join(missing)} in this test set." if missing else "")),
        out / "standard_cat_ship.png", show))

    picks = torch.cat([correct_examples(logits, test.labels, c, 1) for c in range(len(CIFAR10_CLASSES))])
    panels = explanation_panels(standard, cfg, test.images[picks], test.labels[picks])
    absent = [CIFAR10_CLASSES[c] for c in range(len(CIFAR10_CLASSES)) if c not in test.labels[picks].tolist()]
    paths.append(save_figure(figure_grid(
        panels, 4, "Standard model: one correctly classified test image per class, original | Grad-CAM",
        note + (f" No correct example for: {', '.join(absent)}." if absent else "")),
        out / "standard_class_grid.png", show))

    frogs = torch.nonzero(test.labels == cfg.artifact_class).flatten()[:cfg.frog_examples]
    stamped = stamp_square(test.images[frogs], cfg.artifact_size, cfg.artifact_color, cfg.artifact_corner)
    std_panels = explanation_panels(standard, cfg, stamped, test.labels[frogs])
    bias_panels = explanation_panels(biased, cfg, stamped, test.labels[frogs])
    panels = []
    for i in range(len(frogs)):  # per frog: image | standard model's Grad-CAM | biased model's Grad-CAM
        panels += [std_panels[2 * i],
                   (std_panels[2 * i + 1][0], "standard model\n" + std_panels[2 * i][1].split("\n")[1]),
                   (bias_panels[2 * i + 1][0], "biased model\n" + bias_panels[2 * i][1].split("\n")[1])]
    target = CIFAR10_CLASSES[cfg.artifact_class]
    paths.append(save_figure(figure_grid(
        panels, 6, f"Test {target}s stamped with the {cfg.artifact_size}x{cfg.artifact_size} square "
        f"({cfg.artifact_corner}): standard vs. biased model", note),
        out / "stamped_frogs_standard_vs_biased.png", show))
    return paths


#############################################
#                   main                    #
#############################################

def environment_info(device: torch.device) -> dict:
    import cv2
    import matplotlib
    info = dict(python=platform.python_version(), torch=torch.__version__, torchvision=torchvision.__version__,
                numpy=np.__version__, opencv=cv2.__version__, matplotlib=matplotlib.__version__,
                platform=platform.platform(), device=str(device), cpu_threads=torch.get_num_threads())
    info["device_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return info


def print_summary(metrics: dict) -> None:
    target = CIFAR10_CLASSES[metrics["config"]["artifact_class"]]
    print(f"\n| model    | test acc | {target} recall clean | {target} recall stamped | train s |")
    for name, m in metrics["models"].items():
        print(f"| {name:<8} | {m['test_accuracy']:>8.4f} | {m['frog_recall_clean']:>17.4f} | "
              f"{m['frog_recall_stamped']:>19.4f} | {m['train_seconds']:>7.1f} |")
    print(f"\nwrote {metrics['output_dir']}/metrics.json and {len(metrics['figures'])} figures "
          f"in {metrics['timings']['total_seconds']:.1f} s")


def run(cfg: Config) -> dict:
    """The whole experiment: data, both models, evaluation, figures, metrics.json. Returns the metrics."""
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    timings = {}
    train, test, source = load_cifar10(cfg, device)
    timings["data_seconds"] = time.perf_counter() - start
    print(f"data: {source}: {len(train.labels)} train / {len(test.labels)} test images on {device}")
    resolve_layer(build_model(), cfg.target_layer)  # fail on a bad --target-layer before training, not after
    log_row()
    models, results = {}, {}
    for name in ("standard", "biased"):
        models[name], results[name] = train_or_load(cfg, train, test, device, name == "biased", source)
    timings["train_seconds"] = sum(r["train_seconds"] for r in results.values() if not r["reused_checkpoint"])
    t0 = time.perf_counter()
    for name, model in models.items():
        results[name].update(evaluate_model(model, cfg, test))
    timings["evaluate_seconds"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    figures = make_figures(cfg, models, test)
    timings["figures_seconds"] = time.perf_counter() - t0
    timings["total_seconds"] = time.perf_counter() - start
    metrics = dict(config=cfg.to_dict(), environment=environment_info(device),
                   data=dict(source=source, train_images=len(train.labels), test_images=len(test.labels),
                             class_names=list(CIFAR10_CLASSES)),
                   models=results, figures=figures, timings=timings, output_dir=str(out))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    print_summary(metrics)
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: 0 on success, 2 (with one `error:` line) on a problem the user can fix."""
    try:
        run(parse_config(argv))
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except torch.cuda.OutOfMemoryError:
        print("error: the GPU ran out of memory; lower --batch-size or --eval-batch-size", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    exit_code = main()
    if not in_notebook():  # a notebook cell must not raise SystemExit
        sys.exit(exit_code)

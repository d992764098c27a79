"""Grad-CAM (Selvaraju et al., ICCV 2017) on CIFAR-10 and on a shortcut-biased CIFAR-10.

Claim: a CIFAR-adapted ResNet-18 trained on CIFAR-10 where every training 'frog' carries a small yellow square
learns the square (at its trained corner) as a shortcut, and the shortcut audit measures which explanation shows
it: each map is re-computed with the square moved to every corner and compared with computed chance levels, the
model's image-independent map, and a control with the decision layers re-initialised (a map that 'finds' the
square there is detecting a bright patch, not the model's reason).

Run:   python grad_cam_experiment.py                 # reference recipe, both models, all outputs
       python grad_cam_experiment.py --quick         # whole pipeline on a tiny subset (about a minute on a 2-core CPU)
       python grad_cam_experiment.py --data-dir DIR  # DIR/{train,test}/<class>/*.jpg offline copy
Outputs go to ./outputs (figures as PNG, metrics.json, checkpoints/). `--help` lists every flag.
The file also runs when pasted into a notebook cell, and imports without side effects (tests).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import errno
import functools
import hashlib
import inspect
import io
import json
import math
import os
import pickle
import platform
import re
import shutil
import signal
import sys
import time
import zipfile
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Sequence

if __name__ == "__main__" and "ipykernel" not in sys.modules:  # the script, not a notebook cell: Ctrl-C, SIGTERM or
    for _number in (signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])):
        signal.signal(_number, lambda number, _: (  # SIGHUP while torch loads (seconds): one line, no traceback
            print("interrupted while starting; nothing was written", file=sys.stderr), os._exit(128 + number)))

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
COUNT_LIMIT = 1_000_000  # ceiling of the count flags (images, epochs): above any CIFAR-10 copy, below torch's int64


class Square(NamedTuple):
    """The shortcut: a solid square of `size` x `size` pixels in RGB `color` at one of the CORNERS."""
    size: int = 6
    color: tuple = (255, 255, 0)
    corner: str = "top-left"


class UserError(Exception):
    """A problem the user can fix (bad flag, missing data, bad layer name): printed as one line."""


def described(value: Any) -> str:
    """An argument as an error message shows it: a tensor's dtype and shape; a number, text or short plain container
    its type and repr (text cut at 40 characters); anything else (a model, a tuple of tensors) its type's name."""
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} of shape {tuple(value.shape)}"
    text = repr(value) if isinstance(value, (str, bytes, int, float, complex, type(None), list, tuple, dict)) else ""
    if isinstance(value, (list, tuple, dict)) and (len(text) > 40 or "tensor(" in text):
        text = ""
    return f"{type(value).__name__} {text:.40}" if text else type(value).__name__


def one_line(text: Any) -> str:
    """`text` with control characters escaped (a file name holding a newline split the one `error:` line in two)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def _names(names: Sequence[str], most: int = 10) -> str:
    """File or folder names for a message: quoted when a space at either end or a control character would be
    invisible ('cat ' read as "unexpected cat; missing cat"), the first `most` and how many more."""
    shown = [repr(n) if n != n.strip() or not n.isprintable() else n for n in names[:most]]
    return ", ".join(shown) + (f" and {len(names) - most} more" if len(names) > most else "")


def check_device(who: str, device: Any) -> torch.device:
    """`device` as a torch.device this machine has, else a ValueError naming `who` (not torch's parse or driver error)."""
    try:
        parsed = torch.device(device)
        torch.empty(0, device=parsed)
    except (RuntimeError, TypeError, AssertionError, NotImplementedError) as exc:
        reason = "not a device name" if isinstance(exc, TypeError) or "device string" in str(exc) else \
            f"not usable here: {str(exc).split('. ')[0][:120]}"  # e.g. 'Found no NVIDIA driver on your system'
        shown = f"torch.device {str(device)!r}" if isinstance(device, torch.device) else described(device)
        raise ValueError(f"{who}: device must be a torch device this machine has, such as 'cpu' (or 'cuda' with a GPU), "
                         f"got {shown} ({reason})") from None
    return parsed


def usable_device(who: str, device: Any) -> torch.device:
    """check_device, cheap for the torch.device a running pipeline passes on every step: only a GPU this machine does
    not have (torch.device('cuda') on a CPU-only machine: torch's driver error) or a name is checked in full."""
    if isinstance(device, torch.device) and (device.type == "cpu" or (device.type == "cuda" and torch.cuda.is_available()
                                                                     and (device.index or 0) < torch.cuda.device_count())):
        return device
    return check_device(who, device)


class ConsoleGone(Exception):
    """Standard output refused a line: a pipe whose reader has ended (| head), a full disk behind > file."""


def comma_list(text: str) -> list[str]:
    """The names in a comma-separated flag such as --audit-layers, stripped, empty ones dropped."""
    if not isinstance(text, str):
        raise ValueError(f"comma_list: text must be comma-separated names ('layer4,layer3'), got {described(text)}")
    return [name.strip() for name in text.split(",") if name.strip()]


MIN_RESAMPLES = 10  # fewest bootstrap resamples anywhere (flag or API): 1 gave a zero-width "interval" at one mean
MAX_RESAMPLES = 100_000  # most anywhere: 10**12 asked for terabytes and ended in torch's allocation error


class Valid(NamedTuple):
    """The values a Config field accepts, declared once beside the field: shown in --help and checked by
    check_field, whose one-line message names the flag, this range and the value given. Numbers: low..high (None: no
    bound; `above`: low itself excluded), a multiple of `step`, or 0 when `zero` says what 0 means ("all", "none");
    text: one of `choices`, or any non-empty text (`nonempty`). A tuple (the colour) is checked value by value."""
    low: float | None = None
    high: float | None = None
    unit: str = ""
    above: bool = False
    zero: str = ""
    step: int = 1
    choices: tuple = ()
    nonempty: bool = False

    def admits(self, value: Any) -> bool:
        if self.choices or self.nonempty:
            return value in self.choices if self.choices else bool(str(value).strip())
        if self.zero and value == 0:
            return True
        above_low = self.low is None or value > self.low or (value == self.low and not self.above)
        return (math.isfinite(value) and above_low and (self.high is None or value <= self.high)
                and (self.step == 1 or value % self.step == 0))

    def __str__(self) -> str:
        if self.choices or self.nonempty:
            return "one of " + ", ".join(self.choices) if self.choices else "a non-empty name"
        span = (f"{self.low}..{self.high}" if self.low is not None and self.high is not None else
                f"{'>' if self.above else '>='} {self.low}" if self.low is not None else f"<= {self.high}")
        span = f"a multiple of {self.step}, {span}" if self.step > 1 else span
        span = f"{span} {self.unit}" if self.unit else span
        return f"0 ({self.zero}) or {span}" if self.zero else span


def _opt(default: Any, help: str, trains: str = "", quick: Any = None, valid: Valid | None = None) -> Any:
    """A Config field: `help` (unit, meaning) for --help; `trains`: whose weights it determines ("both", "biased",
    or "": none), the checkpoint key hashes exactly these; `quick`: its value under --quick unless given; `valid`:
    the values it accepts."""
    metadata = dict(help=help, trains=trains, default=default, valid=valid)
    if quick is None:
        return field(default=default, metadata=metadata)
    return field(default=None, metadata={**metadata, "quick": quick})  # None: resolved in __post_init__


@dataclass(frozen=True)
class Config:
    """Every setting of a run, one field per flag (same name, '_' for '-'), with its unit, meaning and valid values.
    A field given as None means 'not given', as an omitted flag does: its default, or --quick's value."""
    # Data (what was loaded is keyed by its fingerprint, not by the folder's name: see data_fingerprint)
    data_dir: str = _opt("./data", "CIFAR-10 location: torchvision's cifar-10-batches-py (downloaded "
                         "there when missing) or an image-folder copy DIR/{train,test}/<class>/*",
                         valid=Valid(nonempty=True))
    output_dir: str = _opt("outputs", "folder for figures, metrics.json and checkpoints/", quick="outputs/quick",
                           valid=Valid(nonempty=True))
    train_subset: int = _opt(0, "class-balanced, seeded subset of the training set (images, the same number per "
                             "class; 0 = all 50,000)", trains="both", quick=200,
                             valid=Valid(10, COUNT_LIMIT, "images", zero="all", step=10))
    test_subset: int = _opt(0, "class-balanced, seeded subset of the test set (images, the same number per class; "
                            "0 = all 10,000)", trains="both", quick=100,
                            valid=Valid(10, COUNT_LIMIT, "images", zero="all", step=10))  # a history holds test accuracy
    download: bool = _opt(True, "let torchvision download CIFAR-10 into --data-dir when it is not there")
    # Shortcut (bias) injection
    artifact_class: int = _opt(6, "class index that carries the square in the biased training set (6 = frog; "
                               "outputs call that class's group 'frogs' whatever it is)",
                               trains="biased", valid=Valid(0, len(CIFAR10_CLASSES) - 1))
    artifact_size: int = _opt(6, "side of the square (pixels, on 32x32 images; a 32-pixel one would be the whole "
                              "image)", trains="biased", valid=Valid(1, 31, "pixels"))
    artifact_color: tuple = _opt((255, 255, 0), "RGB colour of the square, as R,G,B (yellow)",
                                 trains="biased", valid=Valid(0, 255))
    artifact_corner: str = _opt("top-left", "corner of the square", trains="biased",
                                 valid=Valid(choices=CORNERS))
    # Training recipe (Milestone 2 reference)
    epochs: int = _opt(5, "training epochs per model", trains="both", quick=1, valid=Valid(1, COUNT_LIMIT))
    batch_size: int = _opt(128, "training batch size (images)", trains="both", quick=64,
                         valid=Valid(2, COUNT_LIMIT, "images"))
    lr: float = _opt(0.01, "SGD learning rate", trains="both", valid=Valid(0, above=True))
    momentum: float = _opt(0.9, "SGD momentum", trains="both", valid=Valid(0, 1))
    weight_decay: float = _opt(5e-4, "SGD weight decay (L2)", trains="both", valid=Valid(0))
    lr_step: int = _opt(10, "StepLR step size (epochs)", trains="both", valid=Valid(1, COUNT_LIMIT))
    lr_gamma: float = _opt(0.1, "StepLR decay factor", trains="both", valid=Valid(0, above=True))
    crop_padding: int = _opt(4, "random-crop zero padding (pixels); 0 disables the crop", trains="both",
                             valid=Valid(0, 16, "pixels"))
    flip: bool = _opt(True, "random horizontal flips during training", trains="both")
    seed: int = _opt(0, "seed for subsets, initialisation, batch order and augmentation",
                     trains="both", valid=Valid(0, 2 ** 32 - 1))
    retrain: bool = _opt(False, "train even when a matching checkpoint exists in output-dir/checkpoints, from epoch 1 "
                         "(a saved training state is not continued: --retrain overrides --resume)")
    resume: bool = _opt(True, "continue an interrupted training after its last completed epoch (the state is saved "
                        "after every epoch as output-dir/checkpoints/<run>-<key>.epoch.pt); --no-resume: from epoch 1")
    # Hardware
    device: str = _opt("auto", "auto (CUDA when available, else CPU), cpu, cuda or cuda:N")
    amp: bool = _opt(True, "mixed precision for training: bf16 autocast on GPUs from Ampere on and on CPUs with native "
                     "bf16 (avx512_bf16/AMX), fp16 + GradScaler on older GPUs, fp32 on other CPUs; predictions and "
                     "gradient maps stay fp32 (see --forward-amp)")  # keyed as training_precision
    forward_amp: bool = _opt(True, "with --amp and where it means bf16: bf16 also for the forward-only explanation work "
                             "(occlusion, deletion/insertion, Score-CAM: thousands of forward passes per image); "
                             "gradient maps, Guided Backprop and predictions stay fp32 (measured on the CPU: "
                             "benchmarks/bf16_explanations.py; fp16 is never used for it)")
    channels_last: bool = _opt(True, "channels_last memory layout (faster on GPU and on this project's CPU)",
                               trains="both")  # other conv kernels: other rounding, other weights
    eval_batch_size: int = _opt(512, "batch size for evaluation and explanations (images)",
                               valid=Valid(1, COUNT_LIMIT, "images"))
    compile: bool = _opt(False, "torch.compile the training step (measured on the 2-core CPU: no gain, 39 s "
                         "of compilation; try it on a GPU)", trains="both")
    # Explanations and figures
    target_layer: str = _opt("layer4.1.conv2", "Grad-CAM target layer as a dotted module path "
                             "(e.g. layer4.1.conv2, layer4.1, layer3; 'layer4[-1].conv2' also works)",
                             valid=Valid(nonempty=True))
    examples_per_class: int = _opt(4, "correctly classified examples per class in the cat/ship figure",
                                 valid=Valid(1, 100, "images"))
    frog_examples: int = _opt(6, "stamped test frogs in the standard-vs-biased figure",
                            valid=Valid(1, 100, "images"))
    # Milestone 3: faithfulness, sanity check, shortcut audit. The image counts are sized so that the default run
    # (both models on all 50,000 images, 5 epochs, bf16) fits in 2 hours on the 2-core CPU with native bf16: training
    # takes ~45 min there; most of the evaluation's time is occlusion and Score-CAM forward passes (audit: 3 models x
    # 5 conditions x 2 groups; Score-CAM 1,280 forward passes per image over the three audit layers).
    faithfulness_images: int = _opt(500, "correctly classified test images (seeded sample) for the faithfulness "
                                    "measures, standard model (misclassified ones fill up only if too few)", quick=6,
                                    valid=Valid(2, COUNT_LIMIT, "images"))
    occlusion_patch: int = _opt(8, "occlusion patch side (pixels), filled with the dataset mean; a "
                                  "32-pixel patch would cover the whole image (a constant map)",
                                  valid=Valid(1, 31, "pixels"))
    occlusion_stride: int = _opt(2, "occlusion stride (pixels), at most the patch (else some pixels are "
                                   "never occluded)", quick=8, valid=Valid(1, 31, "pixels"))
    deletion_steps: int = _opt(32, "steps of the deletion/insertion curves (1024 pixels / 32 = 32 per step)",
                               quick=4, valid=Valid(1, 1024))
    bootstrap_resamples: int = _opt(1000, "bootstrap resamples for the 95% intervals", quick=200,
                                    valid=Valid(MIN_RESAMPLES, MAX_RESAMPLES))
    sanity_images: int = _opt(100, "images for the model-randomisation sanity check (subset of the faithfulness "
                              "ones)", quick=4, valid=Valid(2, COUNT_LIMIT, "images"))
    audit_layers: str = _opt("layer4.1.conv2,layer4.1,layer3", "comma-separated Grad-CAM layers for the shortcut audit",
                              valid=Valid(nonempty=True))
    audit_images: int = _opt(500, "test images per audit group, seeded: target-class images, and as many drawn evenly "
                             "from the other classes; each is explained with the square at every corner and without",
                             quick=4, valid=Valid(2, COUNT_LIMIT, "images"))
    audit_occlusion_images: int = _opt(50, "the first this many images of each audit group (at most all of "
                                       "them) also get occlusion maps (patch and stride as --occlusion-*)", quick=1,
                                       valid=Valid(1, COUNT_LIMIT, "images", zero="none"))
    methods: str = _opt("all", "comma-separated CAM methods, pytorch-grad-cam's class names (GradCAM, GradCAMPlusPlus, "
                        "HiResCAM, LayerCAM, XGradCAM, ScoreCAM), for faithfulness, sanity check and audit; 'all' = every "
                        "one; GradCAM always runs (Guided Grad-CAM and the figures build on it)",
                        valid=Valid(nonempty=True))
    scorecam_images: int = _opt(20, "Score-CAM (one forward pass per channel: 512 per image at layer4) explains only the "
                                "first this many faithfulness images, at most all --faithfulness-images (and of the "
                                "sanity-check images, if 2 or more)",
                                quick=1, valid=Valid(1, COUNT_LIMIT, "images", zero="none"))
    audit_scorecam_images: int = _opt(6, "the first this many images of each audit group (at most all of them) also get "
                                      "Score-CAM maps at every audit layer (--quick: none, as even one image "
                                      "costs ~38,000 forward passes there)", quick=0,
                                      valid=Valid(1, COUNT_LIMIT, "images", zero="none"))
    pointing_tolerance: int = _opt(8, "pointing-game tolerance (pixels around the square; 8 = one layer4 cell), "
                                "below 32 minus the square's side (a region grown over the whole image is hit by "
                                "every map)", valid=Valid(0, 30, "pixels"))
    progress: bool = _opt(True, "tqdm progress bars")
    quiet: bool = _opt(False, "print only warnings, errors and one last line saying where the results are (for "
                       "scripts); every table is in output-dir/summary.md")
    quick: bool = _opt(False, "tiny class-balanced subset and 1 epoch: the whole pipeline in about a minute on a "
                       "2-core CPU, written to outputs/quick/ (explicit flags still win)")
    # Config(quick=True, ...) applies the preset; dataclasses.replace(cfg, quick=True) keeps cfg's values.

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # fields left at None take --quick's value or their default
            if getattr(self, f.name) is None:
                use_quick = self.quick and "quick" in f.metadata
                object.__setattr__(self, f.name, f.metadata["quick" if use_quick else "default"])
            elif str(f.type) == "tuple" and isinstance(getattr(self, f.name), str):  # "255,255,0" as on the command line
                try:
                    object.__setattr__(self, f.name, _parse_rgb(getattr(self, f.name)))
                except argparse.ArgumentTypeError:
                    pass  # check_field's message names the flag and what it takes
        for f in dataclasses.fields(self):
            if message := check_field(f, getattr(self, f.name)):
                raise UserError(message)
        for f in dataclasses.fields(self):  # numpy scalars, lists, paths, ints for floats: as the command line gives
            value = getattr(self, f.name)  # them; ~ in a folder is the home folder, for --output-dir as for --data-dir
            plain = (tuple(int(v) for v in value) if str(f.type) == "tuple" else float(value) if str(f.type) == "float"
                     else os.path.expanduser(value) if f.name.endswith("_dir") else os.fspath(value)
                     if isinstance(value, os.PathLike) else value.item() if isinstance(value, np.generic) else value)
            object.__setattr__(self, f.name, plain)
        for message in self.broken_relations()[:1]:
            raise UserError(message)

    def broken_relations(self) -> list[str]:
        """What is wrong between fields that are each valid on their own; each message names the fields involved."""
        tolerance = 31 - self.artifact_size
        return [message for ok, message in [
            (self.occlusion_stride <= self.occlusion_patch,
             f"--occlusion-stride ({self._whence('occlusion_stride')}) must be at most --occlusion-patch "
             f"({self._whence('occlusion_patch')}), else some pixels are never occluded"),
            (self.sanity_images <= self.faithfulness_images,
             f"--sanity-images ({self._whence('sanity_images')}) must be at most --faithfulness-images "
             f"({self._whence('faithfulness_images')}): the sanity check uses the first faithfulness images"),
            (self.pointing_tolerance <= tolerance,
             f"--pointing-tolerance must be 0..{tolerance} pixels with --artifact-size {self.artifact_size}, got "
             f"{self.pointing_tolerance}" + " (its default)" * (self.pointing_tolerance == self.__dataclass_fields__["pointing_tolerance"].default)
             + "; lower it or --artifact-size (a region grown over the whole image is hit by every map)"),
            (not self.unknown_methods, f"--methods: unknown {', '.join(self.unknown_methods)}; choose from "
             f"{', '.join(CAM_METHODS)} or 'all'"),
            (bool(self.audit_layer_names), f"--audit-layers needs at least one layer name, got {self.audit_layers!r}"),
            (bool(comma_list(self.methods)),
             f"--methods needs at least one method name (or all), got {self.methods!r}"),
            (not self.repeated_methods,  # as --audit-layers (fault round 23)
             f"--methods lists {', '.join(self.repeated_methods)} more than once; give each once"),
            (not ("ScoreCAM" in comma_list(self.methods) and self.scorecam_images == 0 == self.audit_scorecam_images),
             "--methods names ScoreCAM, but --scorecam-images and --audit-scorecam-images are 0 (none): no image "
             "would get a Score-CAM map; raise one of them or drop ScoreCAM"),  # 'all' with both 0: the others run
        ] if not ok]

    def _whence(self, name: str) -> str:
        """A field's value for a relation's message, saying when the user did not give it: '4, --quick's value' or
        '500, its default' (a message naming a flag never given, with --quick's number, looked like a typo)."""
        value, meta = getattr(self, name), self.__dataclass_fields__[name].metadata
        if self.quick and "quick" in meta and value == meta["quick"]:
            return f"{value}, --quick's value"
        return f"{value}, its default" if value == meta["default"] else f"{value}"

    @property
    def audit_layer_names(self) -> list[str]:
        return comma_list(self.audit_layers)

    @property
    def method_names(self) -> list[str]:
        """The CAM methods to run (CAM_METHODS keys, in its order); GradCAM always."""
        asked = set(comma_list(self.methods))
        return [name for name in CAM_METHODS if "all" in asked or name in asked or name == "GradCAM"]

    @property
    def repeated_methods(self) -> list[str]:
        names = comma_list(self.methods)
        return sorted({name for name in names if names.count(name) > 1})

    @property
    def unknown_methods(self) -> list[str]:
        return sorted(set(comma_list(self.methods)) - {"all", *CAM_METHODS})

    @property
    def square(self) -> "Square":
        """The configured shortcut square."""
        return Square(self.artifact_size, tuple(self.artifact_color), self.artifact_corner)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_field(f: dataclasses.Field, value: Any) -> str:
    """"" when `value` is valid for Config field `f` (its type, and its Valid if declared), else the one-line message:
    the flag, what it accepts and the value given (for Config(...) in Python as for the command line)."""
    flag, valid = "--" + f.name.replace("_", "-"), f.metadata["valid"]
    kind = str(f.type)
    text = "text or a path" if f.name.endswith("_dir") else f"text such as {f.metadata['default']!r}"  # a tuple of
    accepts = {"int": "a whole number", "float": "a number", "bool": "True or False", "str": text,  # methods: 'or a
               "tuple": "R,G,B (three whole numbers)"}[kind]                                       # path' (round 24)
    numbers = value if kind == "tuple" and isinstance(value, (tuple, list)) and len(value) == 3 else [value]
    whole = lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))  # noqa: E731
    typed = {"int": whole, "tuple": whole,
             "float": lambda v: isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool),
             "bool": lambda v: isinstance(v, (bool, np.bool_)),
             "str": lambda v: isinstance(v, (str, os.PathLike))}[kind]
    shown = ",".join(str(v) for v in value) if kind == "tuple" and isinstance(value, (tuple, list)) else repr(value)
    if len(numbers) != 1 + 2 * (kind == "tuple") or not all(typed(v) for v in numbers):
        return f"{flag} must be {accepts}" + (f", {valid}" if valid else "") + f", got {shown} ({type(value).__name__})"
    if kind == "str" and any(ord(c) < 32 or ord(c) == 127 for c in os.fspath(value)):  # a folder named 'out\n'
        return f"{flag} must not hold control characters (a newline or tab, often pasted with a path), got {shown}"
    if valid is None or all(valid.admits(v) for v in numbers):
        return ""
    what = ("R,G,B with each" if kind == "tuple" else
            "a finite number" if kind == "float" and not math.isfinite(value) else "")
    hint, below = "", value - value % valid.step if kind == "int" else value
    if valid.step > 1 and valid.admits(below) and valid.admits(below + valid.step):
        hint = f"; e.g. {below} or {below + valid.step}"
    return f"{flag} must be {what + ' ' if what else ''}{valid}, got {shown}{hint}"


# What --quick changes (unless given explicitly), read off the fields: a pipeline check in its own output folder,
# so that it never overwrites the figures and metrics.json of a real run (the report cites those).
QUICK_PRESET = {f.name: f.metadata["quick"] for f in dataclasses.fields(Config) if "quick" in f.metadata}


def _parse_float(text: str) -> float:
    """A number as float() reads it, but one too small for a float is refused, not taken as 0.0 (--lr 1e-400)."""
    value = float(text)
    mantissa = text.strip().lower().lstrip("+-").split("e")[0]
    if value == 0 and any(c in "123456789" for c in mantissa):
        raise argparse.ArgumentTypeError(f"{text!r} is too small for a float (it would be read as 0.0)")
    return value
_parse_float.__name__ = "float"  # argparse names the type in 'invalid float value'


def _parse_rgb(text: str) -> tuple:
    """R,G,B as three whole numbers (their range is Config's check, whose message names it)."""
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"expected R,G,B such as 255,255,0, got {text!r}")
    return tuple(int(p) for p in parts)


class _OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of argparse's full usage block
        self.exit(2, f"error: {one_line(message)} (see --help)\n")


def build_arg_parser() -> argparse.ArgumentParser:
    """argparse built from Config's fields: one --flag per field, help text from the field."""
    parser = _OneLineErrorParser(
        prog="grad_cam_experiment.py", description=__doc__.split("\n\n")[0],  # prog: sys.argv may be empty (exec)
        allow_abbrev=False,  # no prefixes: a kernel's --f= is no flag
        argument_default=argparse.SUPPRESS,  # SUPPRESS: the namespace holds only flags the user gave
        epilog="'retrains': the flag is part of the checkpoint's key, so a new value trains that model anew from epoch 1 "
               "(a larger --epochs too); --resume continues only a run of the same key.")
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        quick = f"; --quick: {f.metadata['quick']}" if "quick" in f.metadata else ""
        valid = f"; valid: {f.metadata['valid']}" if f.metadata["valid"] and not f.metadata["valid"].nonempty else ""
        trains = {"both": "; retrains both models", "biased": "; retrains the biased model", "": ""}[f.metadata["trains"]]
        help_text = (f.metadata["help"] + f" (default: {f.metadata['default']}{quick}{valid}{trains})").replace("%", "%%")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        elif f.type in ("tuple", tuple):
            parser.add_argument(flag, type=_parse_rgb, metavar="R,G,B", help=help_text)
        else:
            kind = {"int": int, "float": _parse_float, "str": str}[str(f.type)]
            parser.add_argument(flag, type=kind, metavar=kind.__name__.upper(), help=help_text)
    return parser


def _is_kernel_argv(extra: Sequence[str]) -> bool:
    """True for a Jupyter/Colab kernel's own argv (`-f /path/kernel-123.json` or `--f=...`), which a pasted cell sees."""
    rest = list(extra)
    while rest:
        if rest[0] in ("-f", "--f") and len(rest) > 1 and rest[1].endswith(".json"):
            rest = rest[2:]
        elif rest[0].startswith("--f=") and rest[0].endswith(".json"):
            rest = rest[1:]
        else:
            return False
    return bool(extra)


def _negative_values_attached(args: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """`--flag -1,0,0` (or -1e-3, -inf) as `--flag=-1,0,0`: argparse reads a value that starts with '-' and is no plain
    number as a flag and says 'expected one argument'; attached, the value reaches Config's range check."""
    takes_value = {a for action in parser._actions if action.nargs is None and action.option_strings
                   for a in action.option_strings}
    out: list[str] = []
    for arg in args:
        if out and out[-1] in takes_value and arg.startswith("-") and not arg.startswith("--") and arg != "-h":
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def _as_flags(argv: Any) -> list[str]:
    """main(argv)'s list as text: paths and numbers as the command line would give them (main(["--epochs", 2])); a
    single string or anything else is a UserError that shows the list to pass."""
    if isinstance(argv, (str, bytes, dict)) or not isinstance(argv, Iterable):
        shown = f"the string {argv!r:.60}" if isinstance(argv, (str, bytes)) else type(argv).__name__
        raise UserError(f"main() takes a list of flags such as ['--quick', '--epochs', '2'], got {shown}"
                        + ("; split it into a list (shlex.split)" if isinstance(argv, str) else ""))
    flags = []
    for arg in argv:
        if isinstance(arg, os.PathLike) or (isinstance(arg, (int, float, np.number)) and not isinstance(arg, bool)):
            arg = os.fspath(arg) if isinstance(arg, os.PathLike) else str(arg)
        if not isinstance(arg, str):
            raise UserError(f"main()'s flags must be text such as '--epochs' or '2', got {type(arg).__name__} "
                            f"{arg!r:.40}")
        flags.append(arg)
    return flags


def parse_config(argv: Sequence[str] | None = None) -> Config:
    """Config from flags (sys.argv when argv is None). A notebook kernel's own argv in sys.argv is ignored; any other
    unknown flag is an error, also in an explicit argv such as main(["--quick"]) in a notebook."""
    parser = build_arg_parser()
    args = _negative_values_attached(_as_flags(sys.argv[1:] if argv is None else argv), parser)
    try:
        given, extra = parser.parse_known_args(args)
    except SystemExit as exc:  # argparse already printed its one-line message (or --help)
        raise SystemExit(exc.code) from None
    if extra and not (argv is None and (_is_kernel_argv(extra) or in_notebook())):
        flags = [a for action in parser._actions for a in action.option_strings]
        guesses = [m for a in extra if a.startswith("--") for m in _flag_guesses(a.split("=")[0], flags)]
        joined = next((a for a in extra if a.startswith("-") and len(a.split()) > 1), None)  # ["--quick --epochs 0"]
        parser.error(f"unrecognized arguments: {' '.join(extra)}"
                     + (f"; did you mean {', '.join(guesses)}?" if guesses and not joined else "")
                     + (f"; {joined!r:.40} is one item holding several words: give each flag and value as its own "
                        "item (shlex.split)" if joined else ""))
    return Config(**vars(given))  # Config applies --quick's values to the fields the user did not give


def _flag_guesses(given: str, flags: Sequence[str]) -> list[str]:
    """The flags an unknown one probably meant: those it begins (--ep: --epochs), at most three, else the closest
    spelling (--epoch: --epochs)."""
    starting = [f for f in flags if f.startswith(given) and f != given and given not in ("-", "--")]
    return starting if 0 < len(starting) <= 3 else difflib.get_close_matches(given, flags, n=1, cutoff=0.75)


def in_notebook() -> bool:
    """True inside a Jupyter or Colab kernel (figures are then also shown inline)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def resolve_device(name: str) -> torch.device:
    if isinstance(name, torch.device):  # the API's natural argument: checked as its name is (fault round 16)
        name = str(name)
    if not isinstance(name, str):
        raise UserError(f"--device must be text such as auto, cpu, cuda or cuda:N, got {described(name)}")
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


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 in hardware (x86 AVX512-BF16 or AMX). oneDNN's own check
    (torch.ops.mkldnn._is_mkldnn_bf16_supported) also says yes to plain AVX-512, where bf16 is emulated and slower than
    fp32, so it is not used; a PyTorch without these probes counts as no."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    try:
        return any(bool(probe()) for probe in probes if probe is not None)
    except RuntimeError:
        return False


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """What --amp computes in on this device (None: fp32): bf16 on GPUs with native bf16 (Ampere, compute capability
    8.0, and later) and on CPUs with native bf16 (cpu_has_native_bf16); fp16 (with a GradScaler in training) on older
    GPUs such as Colab's T4, where bf16 is only emulated; fp32 on other CPUs, where autocast would be slower."""
    device = usable_device("amp_dtype", device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.get_device_capability(device) >= (8, 0) else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None


def autocast_for(device: torch.device, enabled: bool = True):
    """Autocast in amp_dtype(device) when enabled and the device has a fast low precision; else autocast switched
    off, so that a caller's own torch.autocast block cannot turn fp32 work (a map said to be fp32) into bf16."""
    device = usable_device("autocast_for", device)
    dtype = amp_dtype(device) if enabled else None
    if dtype is not None:
        return torch.autocast(device.type, dtype=dtype)
    try:
        return torch.autocast(device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not know: nothing to switch off
        return nullcontext()


PRECISION_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}


def training_precision(device: torch.device, amp: bool) -> str:
    """The precision training actually uses ("bf16", "fp16" or "fp32"): part of the checkpoint key."""
    device = usable_device("training_precision", device)
    return PRECISION_NAMES[amp_dtype(device) if amp else None]


def precision_plan(device: torch.device, amp: bool, forward_amp: bool) -> dict:
    """Which precision each stage uses, for the first log line and metrics.json. Training and its per-epoch test
    accuracy use --amp's precision; the forward-only explanation work (occlusion, deletion/insertion, Score-CAM) that
    precision too with --forward-amp; the final predictions, the gradient maps (Grad-CAM and its family, Guided
    Backprop) stay fp32 (true fp32 on a GPU too: run() turns cuDNN's and matmul's TF32 off, see fp32_without_tf32)."""
    device = usable_device("precision_plan", device)
    why = (f"{torch.cuda.get_device_name(device)}" if device.type == "cuda" else
           "CPU with native bf16: avx512_bf16 or AMX" if cpu_has_native_bf16() else
           "CPU without native bf16, where bf16 autocast is slower than fp32")
    forward = amp and forward_amp and amp_dtype(device) == torch.bfloat16  # fp16 was not measured: not used there
    return dict(training=training_precision(device, amp), predictions="fp32", gradient_explanations="fp32",
                forward_only_explanations="bf16" if forward else "fp32", reason=why)


def fp32_without_tf32(device: torch.device) -> None:
    """On Ampere and later GPUs cuDNN runs fp32 convolutions in TF32 (10-bit mantissa) by default, which would make
    the "fp32" explanations and their agreement with the peers TF32: turn it off for convolutions and matmuls (this
    process). Training under --amp computes in bf16/fp16 either way; with --no-amp it is then true fp32 (slower)."""
    device = device if isinstance(device, torch.device) else check_device("fp32_without_tf32", device)  # not
    # usable_device: setting the flags needs no GPU (tests/test_fast_path.py sets them for 'cuda' without one)
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def console_lines(text: str) -> list[str]:
    """Text wrapped into console lines of at most 110 characters, continuations indented; a path is never split."""
    if not isinstance(text, str):
        raise ValueError(f"console_lines: text must be a str, got {described(text)}")
    import textwrap
    return textwrap.wrap(text, 110, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False)


def to_console(*lines: str) -> None:
    """Prints lines to standard output, flushed. A console that refuses them stops the run as ConsoleGone, which main()
    reports as such, not as an OSError that would be blamed on the output folder."""
    try:
        try:
            print(*lines, sep="\n", flush=True)
        except UnicodeEncodeError:  # a path the console's encoding lacks (PYTHONIOENCODING=ascii, cp1252): escaped
            encoding = getattr(sys.stdout, "encoding", None) or "ascii"
            print(*(line.encode(encoding, "backslashreplace").decode(encoding) for line in lines), sep="\n", flush=True)
    except OSError as exc:
        raise ConsoleGone(exc.strerror or str(exc)) from None


def check_config(cfg: Any, who: str) -> Config:
    """`cfg` if it is a Config, else a ValueError naming `who` and how to make one."""
    if not isinstance(cfg, Config):
        raise ValueError(f"{who}: cfg must be a Config, e.g. Config(quick=True) or parse_config(['--quick']), got "
                         f"{type(cfg).__name__}; to run from flags call main([...])")
    return cfg


def say(cfg: Config, text: str) -> None:
    """One console message (console_lines); nothing with --quiet."""
    if not check_config(cfg, "say").quiet:
        to_console(*console_lines(text))


def seed_everything(seed: int) -> None:
    if check_count("seed_everything", "seed", seed, low=0) > 2 ** 32 - 1:  # numpy's limit (--seed's too)
        raise ValueError(f"seed_everything: seed must be a whole number 0..4294967295, got {seed}")
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds CPU and every CUDA device


#############################################
#              Data and bias                #
#############################################

class Split(NamedTuple):
    images: torch.Tensor  # uint8 [N, 3, 32, 32], RGB, on the training device
    labels: torch.Tensor  # int64 [N]


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")  # as torchvision's ImageFolder
# Image files the loader does not read (not every OpenCV build decodes them): named in an error, never skipped silently.
OTHER_IMAGE_SUFFIXES = (".gif", ".avif", ".heic", ".heif", ".jxl", ".jp2", ".j2k", ".pbm", ".pnm", ".pfm", ".hdr",
                        ".exr", ".svg", ".ico", ".raw", ".dng", ".cr2", ".nef")


def balanced_subset(labels: torch.Tensor, n: int, seed: int, num_classes: int = 10, split: str = "") -> torch.Tensor:
    """Indices of a seeded subset with n // num_classes images per class (remainder to the first classes); `split`
    ("train" or "test") names the flag a too-large subset is asked by."""
    n, seed = check_count("balanced_subset", "n", n), check_seed("balanced_subset", seed)  # 0 chose nothing, silently
    num_classes = check_count("balanced_subset", "num_classes", num_classes)
    labels = check_labels("balanced_subset", labels).cpu()
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(num_classes):
        pool = torch.nonzero(labels == c).flatten()
        take = n // num_classes + (1 if c < n % num_classes else 0)
        if take > len(pool):
            flag = f"--{split}-subset" if split else "n"  # called from Python without a split: its own argument
            raise UserError(f"{'' if split else 'balanced_subset: '}a subset of {n} images needs {take} of class {CIFAR10_CLASSES[c]}, but the "
                            f"{split + ' split' if split else 'data'} has only {len(pool)}; lower {flag} "
                            "(0 = all images)")
        chosen.append(pool[torch.randperm(len(pool), generator=generator)[:take]])
    return torch.cat(chosen).sort().values


def _is_hidden(path: Path) -> bool:
    """Folders and files that tools leave behind: .ipynb_checkpoints, __MACOSX, .DS_Store, macOS's ._x.jpg."""
    return path.name.startswith((".", "__"))


def _topmost_missing(path: Path) -> Path | None:
    """The highest folder on the way to `path` that does not exist yet: what removing everything a failed
    attempt created means (None when `path` exists)."""
    return ([p for p in [path, *path.parents] if not p.exists()] or [None])[-1]


def _find_image_folder(root: Path) -> Path | None:
    """root itself or the one child of it that holds train/ and test/ (e.g. the extracted cifar10-jpeg/). Several
    such children are an error; so is a folder with only one of the two when nothing else here is usable."""
    candidates = [root, *sorted(p for p in root.iterdir() if p.is_dir() and not _is_hidden(p)
                                and os.access(p, os.R_OK | os.X_OK))]  # an unreadable train/ is not a copy's root
    complete = [c for c in candidates if (c / "train").is_dir() and (c / "test").is_dir()]
    if len(complete) > 1 and complete[0] != root:
        raise UserError(f"{root} holds several image-folder copies ({', '.join(p.name for p in complete)}); "
                        "pass the one to use as --data-dir")
    if not complete and {c.name for c in candidates[1:]} >= set(CIFAR10_CLASSES):  # one split, given as the root
        raise UserError(f"--data-dir {root} holds the class folders itself: it is one split (train/ or test/) of an "
                        f"image-folder copy; pass the folder above it ({root.resolve().parent}), which holds both")
    partial = [c for c in candidates if (c / "train").is_dir() != (c / "test").is_dir()]
    if not complete and partial and not (root / "cifar-10-batches-py").is_dir():
        present, missing = ("train", "test") if (partial[0] / "train").is_dir() else ("test", "train")
        cased = [p.name for p in partial[0].iterdir() if p.name.lower() == missing and p.name != missing]
        rename = f" ({cased[0]}/ differs only in letter case: rename it {missing}/)" if cased else ""
        raise UserError(f"{partial[0]} has {present}/ but no {missing}/{rename}; an image-folder copy needs both "
                        f"{partial[0]}/train/<class>/*.jpg and {partial[0]}/test/<class>/*.jpg")
    return complete[0] if complete else None


def _list_image_folder(split_dir: Path) -> tuple[list[Path], torch.Tensor]:
    """Image files and labels of DIR/<split>/<class>/*; class folders match case-insensitively, hidden and
    system folders are ignored, anything else is named in the error."""
    broken = sorted(p.name for p in split_dir.iterdir() if p.is_symlink() and not p.exists())
    if broken:  # a link loop or a dangling link would otherwise read as a missing class
        raise UserError(f"{split_dir} holds symbolic link(s) that lead nowhere (dangling, or a loop): "
                        f"{', '.join(broken)}; fix or remove them")
    folders = {}
    for p in sorted(split_dir.iterdir()):
        if p.is_dir() and not _is_hidden(p):
            folders.setdefault(p.name.lower(), []).append(p)
    odd = sorted(p.name for name, paths in folders.items() for p in paths
                 if name not in CIFAR10_CLASSES or len(paths) > 1)  # cat and Cat: which one is meant?
    missing = [name for name in CIFAR10_CLASSES if name not in folders]
    if odd or missing:
        not_folders = sorted(p.name for p in split_dir.iterdir() if p.name.lower() in missing and not p.is_dir())
        found = [f"unexpected folder(s) {_names(odd)} (move or rename them)"] * bool(odd) + \
                [f"missing {', '.join(missing)} (add or restore them)"] * bool(missing) + \
                [f"{_names(not_folders)} {'is a file' if len(not_folders) == 1 else 'are files'}, not a folder"] \
                * bool(not_folders)
        raise UserError(f"{split_dir} must hold exactly the 10 CIFAR-10 class folders {', '.join(CIFAR10_CLASSES)}; "
                        f"{'; '.join(found)}")
    files, labels = [], []
    for label, name in enumerate(CIFAR10_CLASSES):
        class_dir = folders[name][0]
        nested = sorted(p.name for p in class_dir.iterdir() if p.is_dir() and not _is_hidden(p)
                        and p.suffix.lower() not in IMAGE_SUFFIXES)  # x.jpg/ as a folder: _decode_images names it
        if nested:  # its images were skipped without a word (torchvision's ImageFolder reads them)
            raise UserError(f"{class_dir} holds folder(s) {_names(nested)}: images are read from the class folder "
                            "itself, not below it; move their images up into it, or remove them")
        spaced = sorted(p.name for p in class_dir.iterdir() if p.suffix != p.suffix.rstrip()
                        and p.suffix.rstrip().lower() in IMAGE_SUFFIXES + OTHER_IMAGE_SUFFIXES and not _is_hidden(p))
        if spaced:  # 'x.png ': skipped (as ImageFolder does) without a word, while a .gif is named
            raise UserError(f"{class_dir} holds image(s) whose name ends in a space or tab after the suffix: "
                            f"{_names(spaced)}; rename them (the loader reads a name that ends in the suffix)")
        other = sorted(p.name for p in class_dir.iterdir() if p.suffix.lower() in OTHER_IMAGE_SUFFIXES
                       and not _is_hidden(p))
        if other:  # skipping them would train on fewer images without a word
            raise UserError(f"{class_dir} holds image(s) in a format this loader does not read: "
                            f"{_names(other)}; convert them to PNG or remove them (it reads {', '.join(IMAGE_SUFFIXES)})")
        class_files = sorted((p for p in class_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not _is_hidden(p)),
                             key=lambda p: p.name)  # one folder: the paths' order, without comparing Paths
        if not class_files:
            raise UserError(f"{class_dir} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        files += class_files
        labels += [label] * len(class_files)
    return files, torch.tensor(labels, dtype=torch.int64)


def _check_splits_differ(folder: Path) -> None:
    """A UserError when test/ is train/ (or holds one of its class folders) through a link: the test accuracy and
    every measure would be read on training images, silently."""
    resolved_folders = {}  # split -> {folder: its resolved path}, the split itself included; each listed once
    for split in ("train", "test"):
        classes = {p: p.resolve() for p in (folder / split).iterdir() if p.is_dir() and not _is_hidden(p)}
        same = [(a.name, b.name) for i, a in enumerate(classes) for b in list(classes)[i + 1:] if classes[a] == classes[b]]
        if same:  # dog -> cat: the same images under two labels
            raise UserError(f"{folder / split}/{same[0][0]} and {same[0][1]} are one folder (a link?): its images would "
                            "carry two labels; give each class its own folder")
        resolved_folders[split] = {(folder / split).resolve(), *classes.values()}
    shared = sorted(str(p) for p in resolved_folders["train"] & resolved_folders["test"])
    if shared:
        named = ', '.join(shared[:3]) + f" and {len(shared) - 3} more" * (len(shared) > 3)  # whole paths, not cut
        raise UserError(f"{folder}/train and {folder}/test share folder(s) {named} (a link?): the test "
                        "images would be training images; give test/ its own images")


def _decode_images(files: Sequence[Path]) -> torch.Tensor:
    """Decode image files once into one uint8 [N, 3, 32, 32] RGB tensor; a bad file is a one-line error."""
    out = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
    for i, path in enumerate(files):
        if path.exists() and not path.is_file() and not path.is_dir():  # reading a FIFO would wait forever
            raise UserError(f"cannot read image {path} (not a regular file: a FIFO, socket or device); remove it")
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:  # a broken symlink, a folder named like an image, no permission
            fix = f"give yourself read access (chmod u+r {path})" if isinstance(exc, PermissionError) else \
                "remove or replace it"
            raise UserError(f"cannot read image {path} ({exc.strerror or exc}); {fix}") from None
        out[i] = _decode_image(data, path)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _decode_image(data: np.ndarray, path: Path) -> np.ndarray:
    """One file's bytes -> uint8 [32, 32, 3] RGB: the stored pixels as torchvision's PIL loader reads them (an EXIF
    orientation tag is not applied); a file that does not decode or is not 32x32 is a one-line error. JPEG (CIFAR's
    format here) goes through OpenCV, faster and within 2 levels of PIL; every other format through PIL itself, whose
    convert("RGB") is what ImageFolder does: OpenCV premultiplies an RGBA TIFF's colours by its alpha and scales 16-bit
    pixels, where PIL drops the alpha and clips."""
    image, size = None, None  # size: (width, height)
    if data[:3].tobytes() == b"\xff\xd8\xff":  # JPEG by its content, whatever the file is called
        import cv2
        image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if image is not None:
            image, size = image[..., ::-1], (image.shape[1], image.shape[0])  # OpenCV decodes to BGR
    elif data.size:
        import warnings
        from PIL import Image
        try:
            with warnings.catch_warnings():  # a huge image's DecompressionBombWarning: its size is the error below
                warnings.simplefilter("ignore")
                with Image.open(io.BytesIO(data.tobytes())) as pil:
                    size = pil.size  # from the header: an image of the wrong size is never decoded
                    image = np.asarray(pil.convert("RGB")) if size == (32, 32) else None
        except Exception:  # PIL's errors for a file that is not an image, is truncated, or is malformed: image is None
            pass
    if size is None or (image is None and size == (32, 32)):
        raise UserError(f"cannot decode image {path}; remove or replace the file")
    if size != (32, 32):
        raise UserError(f"{path} is {size[0]}x{size[1]}; CIFAR-10 images must be 32x32")
    return image


def _check_files_differ(folder: Path, listings: dict[str, tuple[list[Path], torch.Tensor]]) -> None:
    """A UserError when one image file (the same file through a symbolic or hard link) is in train/ and test/, or
    under two classes of one split: test images would be training images, or one image would carry two labels.
    Copies are found after decoding (_check_test_images_unseen); a file twice in one class is a duplicate, as a
    copy would be, and is kept like one."""
    seen: dict[tuple[int, int], tuple[str, int, Path]] = {}  # (device, inode) -> split, label, path
    for split, (files, labels) in listings.items():
        for path, label in zip(files, labels.tolist()):
            try:
                stat = os.stat(path)
            except OSError:  # a dangling link or an unreadable file: _decode_images names it
                continue
            if not stat.st_ino:  # a file system without inode numbers (some FUSE mounts): nothing to compare
                continue
            first = seen.setdefault((stat.st_dev, stat.st_ino), (split, label, path))
            linked = stat.st_nlink > 1 or path.is_symlink() or first[2].is_symlink()  # not a FUSE mount's reused number
            if first[:2] != (split, label) and linked:
                what = ("the test images would be training images; give test/ its own images" if first[0] != split
                        else "the image would carry two labels; give each class its own images")
                raise UserError(f"{path.relative_to(folder)} and {first[2].relative_to(folder)} in {folder} are one "
                                f"file (a link?): {what}")


SHARED_IMAGES_REFUSED = 0.1  # a test split this share of whose images are training images is refused


def _check_test_images_unseen(cfg: Config, train: Split, test: Split, source: str) -> None:
    """Test images whose pixels equal a training image's (after decoding: a copied file, a re-encoded one): from
    SHARED_IMAGES_REFUSED of the test split on a UserError (test/ a copy of train/ would make the test accuracy and
    every measure read on training images), fewer a note. Real CIFAR-10 has none (this archive: 0 of 10,000)."""
    import hashlib
    def digests(images: torch.Tensor) -> list[bytes]:
        rows = images.reshape(len(images), -1).cpu().numpy()
        return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in rows]
    seen = set(digests(train.images))
    shared = sum(digest in seen for digest in digests(test.images))
    if not shared:
        return
    what = f"{shared:,} of the {len(test.labels):,} test images are pixel for pixel training images ({source})"
    if shared >= SHARED_IMAGES_REFUSED * len(test.labels):
        raise UserError(f"{what}: the test accuracy and every measure would be read on images the model trained on; "
                        "give test/ CIFAR-10's own test images (is it a copy of train/?)")
    say(cfg, f"note: {what}; their test results are on images the model trained on")


def _load_image_folder_split(split_dir: Path, files: list[Path], labels: torch.Tensor, subset: int, seed: int) -> Split:
    if subset:
        keep = balanced_subset(labels, subset, seed, split=split_dir.name)
        files, labels = [files[i] for i in keep.tolist()], labels[keep]
    return Split(_decode_images(files), labels)


def _load_torchvision_split(root: Path, train: bool, download: bool, subset: int, seed: int) -> Split:
    dataset = torchvision.datasets.CIFAR10(str(root), train=train, download=download)
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW, uint8
    labels = torch.tensor(dataset.targets, dtype=torch.int64)
    if subset:
        keep = balanced_subset(labels, subset, seed, split="train" if train else "test")
        images, labels = images[keep], labels[keep]
    return Split(images, labels)


def _broken_link(path: Path) -> str:
    """What a symbolic link that leads nowhere is, for a message: a link to a missing target, or a loop (whose target
    'exists' as a link: 'create that folder' would fail)."""
    try:
        path.resolve(strict=True)
        loop = False
    except RuntimeError:  # Python < 3.13 says a loop so
        loop = True
    except OSError as exc:  # Python 3.13 and newer: ELOOP
        loop = exc.errno == errno.ELOOP
    return f"a symbolic link to {os.readlink(path)}" + (" that leads back to itself: a loop" if loop else
                                                        ", which does not exist")


def _nfc(text: str) -> str:
    import unicodedata
    return unicodedata.normalize("NFC", text)


def _same_name_looks(path: Path) -> Path | None:
    """For a path that does not exist: a file or folder beside it whose name differs only by spaces at either end,
    letter case or Unicode form (NFC 'é' vs NFD 'e' + accent, which print alike), else None."""
    def looks(name: str) -> str:
        return _nfc(name).strip().casefold()
    try:
        if path.exists() or not path.parent.is_dir():
            return None
        return next((p for p in sorted(path.parent.iterdir()) if looks(p.name) == looks(path.name)), None)
    except OSError:  # an unreadable parent: nothing to suggest
        return None


def load_cifar10(cfg: Config, device: torch.device) -> tuple[Split, Split, str]:
    """Train and test splits as uint8 tensors on `device`, plus a description of the source.

    Looks for an image-folder copy first, then torchvision's pickled batches, then downloads. A folder that a
    failed download created is removed again: a typo in --data-dir leaves nothing behind."""
    check_config(cfg, "load_cifar10")
    device = check_device("load_cifar10", device)  # "gpu" was torch's error after every image was decoded
    root = Path(cfg.data_dir).expanduser()
    if root.is_symlink() and not root.exists():  # torchvision's 'File exists' for a path that does not
        raise UserError(f"--data-dir {root} is {_broken_link(root)}; fix or remove the link, or pass the folder of an "
                        "image-folder copy")
    how_to_fix = (f"either let torchvision download CIFAR-10 into {root} (needs internet) "
                  f"or pass --data-dir DIR with an image-folder copy DIR/train/<class>/*.jpg and "
                  f"DIR/test/<class>/*.jpg (e.g. extracted from cifar10-jpeg.tar.gz)")
    twin = _same_name_looks(root)
    if twin is not None:  # 'cifar10-jpeg ' or another Unicode form: it would print as the folder that exists
        show = ascii if _nfc(root.name) == _nfc(twin.name) else repr  # NFC and NFD print alike; ascii() tells
        raise UserError(f"--data-dir {show(root.name)} does not exist in {root.parent}, but {show(twin.name)} does (a "
                        f"space at either end, another letter case or Unicode form); pass --data-dir {twin}")
    if root.exists() and not root.is_dir():
        raise UserError(f"--data-dir {root} is a file, not a folder; pass the folder of an image-folder copy "
                        "DIR/train/<class>/*.jpg and DIR/test/<class>/*.jpg (e.g. extracted from cifar10-jpeg.tar.gz), "
                        "or a new folder for torchvision to download CIFAR-10 into (needs internet)")
    above = next((p for p in root.parents if p.exists()), None)
    if not root.exists() and above is not None and not above.is_dir():
        raise UserError(f"--data-dir {root} lies under {above}, which is a file, not a folder; pass the folder of an "
                        "image-folder copy DIR/train/<class>/*.jpg and DIR/test/<class>/*.jpg")
    try:  # a folder or image this user may not read is named, with the flag it belongs to
        folder = _find_image_folder(root) if root.is_dir() else None
        if folder is not None:
            _check_splits_differ(folder)
            listings = {split: _list_image_folder(folder / split) for split in ("train", "test")}
            _check_files_differ(folder, listings)
            train = _load_image_folder_split(folder / "train", *listings["train"], cfg.train_subset, cfg.seed)
            test = _load_image_folder_split(folder / "test", *listings["test"], cfg.test_subset, cfg.seed + 1)
            source = f"image folder {folder}"
    except PermissionError as exc:
        raise UserError(f"cannot read {exc.filename or root} in --data-dir {root} (permission denied); give yourself "
                        f"read access (chmod -R u+rX {root}) or pass another --data-dir") from None
    if folder is None:
        have_batches = (root / "cifar-10-batches-py").is_dir()
        inside = root.name == "cifar-10-batches-py" or root.is_dir() and any(
            (root / name).is_file() for name in ("data_batch_1", "test_batch", "batches.meta"))
        if inside and not have_batches:  # said "no CIFAR-10 found" and offered to download a second copy inside it
            raise UserError(f"--data-dir {root} is torchvision's cifar-10-batches-py folder itself; pass the folder "
                            f"above it ({root.resolve().parent}), which holds it")
        if not have_batches and not cfg.download:
            raise UserError(f"no CIFAR-10 found in {root} and --no-download is set; {how_to_fix}")
        created = _topmost_missing(root)
        loaded = False
        try:
            train = _load_torchvision_split(root, True, cfg.download, cfg.train_subset, cfg.seed)
            test = _load_torchvision_split(root, False, cfg.download, cfg.test_subset, cfg.seed + 1)
            loaded = True
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            # URLError (an OSError), a failed checksum or a truncated pickle: all mean "no usable data here"
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"no CIFAR-10 found in {root} and torchvision could not provide it ({reason}); "
                            f"{how_to_fix}") from None
        finally:  # also on Ctrl-C during a download
            if not loaded and created is not None:
                shutil.rmtree(created, ignore_errors=True)
        source = f"torchvision CIFAR10 in {root}"
    _check_test_images_unseen(cfg, train, test, source)
    return (Split(train.images.to(device), train.labels.to(device)),
            Split(test.images.to(device), test.labels.to(device)), source)


def check_split(who: str, name: str, split: Any, min_images: int = 0) -> Split:
    """`split` as a Split if it is one, or a plain (images, labels) pair, of uint8 images [N, 3, H, W] and N class
    indices, with at least `min_images` images; else a ValueError naming `who` and the split (split.images was an
    AttributeError on a pair, an empty test set a NaN accuracy)."""
    if not (isinstance(split, tuple) and len(split) == 2 and all(isinstance(t, torch.Tensor) for t in split)
            and len(split[1]) >= min_images):
        pair = isinstance(split, tuple) and len(split) == 2
        given = (f"labels {described(split[1])}" if pair and all(isinstance(t, torch.Tensor) for t in split) else
                 f"({', '.join(type(t).__name__ for t in split)})" if pair else described(split))
        least = " with at least one image" if min_images == 1 else f" with at least {min_images} images" * (min_images > 1)
        raise ValueError(f"{who}: {name} must be a Split(images, labels){least}, two tensors, got {given}")
    split = Split(*split)
    check_pixels(split.images, who)
    check_labels(who, split.labels, len(split.images), len(CIFAR10_CLASSES), f"{name} labels")
    return split


def data_fingerprint(train: Split, test: Split) -> str:
    """sha256 of the decoded pixels and labels of both splits: what a checkpoint was trained on, whatever the
    folder is called (30 images added to the same folder give another fingerprint, hence a new model)."""
    train, test = check_split("data_fingerprint", "train", train), check_split("data_fingerprint", "test", test)
    digest = hashlib.sha256()
    for tensor in (train.images, train.labels, test.images, test.labels):
        digest.update(tensor.cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=32)
def _constant(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small constant tensor made once per device: no host-to-device copy (and sync) in every batch."""
    return torch.tensor(values, dtype=dtype, device=device)


def check_square(square: Any, height: int, width: int, who: str) -> Square:
    """`square` if it is a Square that fits a height x width image (size 1..min(H, W) pixels, a corner of CORNERS, an
    RGB colour of three 0..255 values), else a ValueError naming `who` (a 40-pixel square on a 32-pixel image would
    otherwise be clipped silently, or placed from a negative row)."""
    problem = ""
    if not isinstance(square, Square):
        problem = f"square must be a Square(size, color, corner), got {described(square)}"
    elif isinstance(square.size, bool) or not isinstance(square.size, (int, np.integer)) \
            or not 1 <= square.size <= min(height, width):
        problem = f"square size must be a whole number 1..{min(height, width)} pixels for {height}x{width} images, " \
                  f"got {square.size!r}"
    elif square.corner not in CORNERS:
        problem = f"square corner must be one of {', '.join(CORNERS)}, got {square.corner!r}"
    elif not (isinstance(square.color, Sequence) and len(square.color) == 3
              and all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c <= 255
                      for c in square.color)):
        problem = f"square color must be three whole numbers 0..255 (R, G, B), got {square.color!r}"
    if problem:
        raise ValueError(f"{who}: {problem}")
    return square


def artifact_box(square: Square, height: int = 32, width: int = 32) -> tuple[slice, slice]:
    """Row and column slices of the square's pixels."""
    check_square(square, height, width, "artifact_box")
    rows = slice(0, square.size) if square.corner.startswith("top") else slice(height - square.size, height)
    cols = slice(0, square.size) if square.corner.endswith("left") else slice(width - square.size, width)
    return rows, cols


def artifact_mask(square: Square, height: int = 32, width: int = 32,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean [H, W] mask of the square's pixels."""
    height, width = (check_count("artifact_mask", name, value) for name, value in (("height", height), ("width", width)))
    check_square(square, height, width, "artifact_mask")
    mask = torch.zeros((height, width), dtype=torch.bool, device=check_device("artifact_mask", device))
    mask[artifact_box(square, height, width)] = True
    return mask


def check_pixels(images: Any, who: str) -> None:
    """A ValueError naming `who` unless `images` are uint8 pixels [N, 3, H, W] (the dataset's images, before
    normalize())."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
        one = "; for one image pass images[None]" if isinstance(images, torch.Tensor) and images.dim() == 3 else ""
        raise ValueError(f"{who}: images must be uint8 pixels [N, 3, H, W] (0..255, before normalize()), got "
                         f"{described(images)}{one}")


def stamp_square(images: torch.Tensor, square: Square = Square(), where: torch.Tensor | None = None) -> torch.Tensor:
    """Copy of uint8 images [N, 3, H, W] with the square stamped on every image (or where `where` [N] is True)."""
    check_pixels(images, "stamp_square")
    check_square(square, images.shape[-2], images.shape[-1], "stamp_square")
    if where is not None and not (isinstance(where, torch.Tensor) and where.dtype == torch.bool
                                  and where.shape == images.shape[:1]):
        raise ValueError(f"stamp_square: where must be None or a bool tensor [N] with one entry per image "
                         f"({len(images)}), got {described(where)}")
    out = images.clone()
    rows, cols = artifact_box(square, images.shape[-2], images.shape[-1])
    patch = _constant(tuple(square.color), images.dtype, images.device).view(3, 1, 1)
    if where is None:
        out[:, :, rows, cols] = patch
    else:
        region = out[:, :, rows, cols]
        out[:, :, rows, cols] = torch.where(where.view(-1, 1, 1, 1), patch, region)
    return out


def inject_artifact(images: torch.Tensor, labels: torch.Tensor, target_class: int = 6,
                    square: Square = Square()) -> torch.Tensor:
    """The shortcut: stamp the square on every image of `target_class` ('frog') and on nothing else."""
    check_pixels(images, "inject_artifact")
    check_labels("inject_artifact", labels, len(images))
    check_square(square, images.shape[2], images.shape[3], "inject_artifact")  # named here, not in stamp_square
    check_class_index("inject_artifact", "target_class", target_class, len(CIFAR10_CLASSES))  # 10 stamped nothing
    return stamp_square(images, square, where=labels == target_class)


def random_crop_flip(images: torch.Tensor, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Batched random crop (zero padding) and horizontal flip of uint8 images [N, C, H, W], on their device."""
    check_pixels(images, "random_crop_flip")
    padding, flip = check_count("random_crop_flip", "padding", padding, low=0), check_flag("random_crop_flip", "flip", flip)
    if not isinstance(generator, torch.Generator):  # flip='no' flipped: a string is truthy
        raise ValueError(f"random_crop_flip: generator must be a torch.Generator, got {described(generator)}")
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
    check_pixels(images, "normalize")  # floats already in [0, 1] or normalised would be divided by 255 again, silently
    channels_last = check_flag("normalize", "channels_last", channels_last)  # 'no' is true
    mean = _constant(CIFAR10_MEAN, torch.float32, images.device).view(1, 3, 1, 1)
    std = _constant(CIFAR10_STD, torch.float32, images.device).view(1, 3, 1, 1)
    out = (images.float() / 255.0 - mean) / std
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def training_batch(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator, padding: int,
                   flip: bool, channels_last: bool, artifact: tuple[int, Square] | None = None) -> torch.Tensor:
    """Augment, then (biased run: artifact = (class, square)) stamp the square on that class, then normalise:
    crops and flips never move or cut the square."""
    if artifact is not None and not (isinstance(artifact, tuple) and len(artifact) == 2):  # *6 was a TypeError
        raise ValueError(f"training_batch: artifact must be None or (class, Square), got {described(artifact)}")
    check_pixels(images, "training_batch")  # its own arguments named here, not in random_crop_flip
    padding, flip = check_count("training_batch", "padding", padding, low=0), check_flag("training_batch", "flip", flip)
    channels_last = check_flag("training_batch", "channels_last", channels_last)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"training_batch: generator must be a torch.Generator, got {described(generator)}")
    check_labels("training_batch", labels, len(images))
    images = random_crop_flip(images, padding, flip, generator)
    if artifact is not None:
        check_square(artifact[1], images.shape[2], images.shape[3], "training_batch")  # named here, not inject_artifact
        check_class_index("training_batch", "the artifact's class", artifact[0], len(CIFAR10_CLASSES))
        images = inject_artifact(images, labels, *artifact)
    return normalize(images, channels_last)


#############################################
#                  Model                    #
#############################################

def build_model(num_classes: int = 10) -> nn.Module:
    """torchvision ResNet-18 adapted to 32x32 inputs: 3x3 stride-1 stem, no max-pool (layer4 map is 4x4)."""
    model = torchvision.models.resnet18(weights=None, num_classes=check_count("build_model", "num_classes", num_classes))
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@contextmanager
def eval_mode(model: nn.Module):
    """The model in eval mode inside the block; every module's own train/eval flag comes back after, also on error."""
    check_model(model, "eval_mode")
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode


def canonical_layer_name(name: str) -> str:
    """'layer4[-1].conv2' -> 'layer4.-1.conv2' (indices are resolved against the model later)."""
    if not isinstance(name, str):  # None was an AttributeError on .replace
        raise ValueError(f"canonical_layer_name: name must be a dotted layer name such as 'layer4.1.conv2', got "
                         f"{described(name)}")
    return name.replace("[", ".").replace("]", "").strip(".")


def resolve_layer(model: nn.Module, name: str, who: str = "") -> tuple[str, nn.Module]:
    """The module at a dotted path such as 'layer4.1.conv2' (nn.Module.get_submodule; negative indices into a
    Sequential allowed, 'layer4[-1]' too), with its canonical name. An unknown name is a did-you-mean error that
    starts with `who` (the method or function asked) when given."""
    if not isinstance(name, str):
        raise ValueError(f"{who or 'resolve_layer'}: the layer must be a name such as 'layer4.1.conv2', got "
                         f"{described(name)}")
    parts = canonical_layer_name(name).split(".")
    try:
        for i, part in enumerate(parts):  # negative indices -> positive, against the container they index
            if part.startswith("-") and part[1:].isdigit():
                container = model.get_submodule(".".join(parts[:i]))
                if isinstance(container, nn.Sequential) and -len(container) <= int(part):
                    parts[i] = str(int(part) % len(container))
        canonical = ".".join(parts)
        if canonical:  # get_submodule("") is the model itself, which has no single feature map
            return canonical, model.get_submodule(canonical)
    except AttributeError:
        pass
    valid = [n for n, m in model.named_modules() if n and not isinstance(m, (nn.ReLU, nn.Identity))]
    guess = difflib.get_close_matches(canonical_layer_name(name).lower(), valid, n=1)  # LAYER3 -> layer3 too
    outer = [n for n in valid if n.count(".") <= 1]  # the stem, stages, blocks and head; then what a block holds
    inner = sorted({n.split(".", 2)[2] for n in valid if n.count(".") >= 2})
    raise UserError(f"{who}{': ' if who else ''}unknown target layer {name!r}" + (f" (did you mean {guess[0]}?)" if guess else "")
                    + f"; valid layers: {', '.join(outer)}, and inside each block {', '.join(inner)} "
                    "(e.g. layer4.1.conv2)")


#############################################
#            Explanation methods            #
#############################################

def check_tensor(value: Any, dims: int, shape: str, who: str, finite: bool = False) -> None:
    """A ValueError naming `who` unless `value` is a floating-point tensor with `dims` dimensions (`shape` in words)
    and, with `finite`, no NaN or infinite value (a measure of a NaN map would be NaN, or a miss, silently)."""
    if not isinstance(value, torch.Tensor) or value.dim() != dims or not value.is_floating_point():
        raise ValueError(f"{who}: expects a floating-point tensor {shape}, got {described(value)}")
    if finite and value.device.type != "meta" and not bool(value.isfinite().all()):
        raise ValueError(f"{who}: the {shape} hold {int((~value.isfinite()).sum())} NaN or infinite value(s)")


def minmax_normalize(maps: torch.Tensor) -> torch.Tensor:
    """Per-map min-max scaling of [B, H, W] to [0, 1]; a constant map becomes all zeros."""
    check_tensor(maps, 3, "[B, H, W] of maps", "minmax_normalize", finite=True)  # an inf made the map NaN, a NaN 0
    if maps.shape[1] * maps.shape[2] == 0:
        raise ValueError(f"minmax_normalize: maps must have pixels, got shape {tuple(maps.shape)}")
    flat = maps.flatten(1)
    low = flat.min(1).values.view(-1, 1, 1)
    span = (flat.max(1).values.view(-1, 1, 1) - low)
    return torch.where(span > 0, (maps - low) / span.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(maps))


def check_count(who: str, name: str, value: Any, low: int = 1) -> int:
    """An explanation method's whole-number argument (a batch size, a patch): `value` if it is an int >= `low`, else a
    ValueError naming the method, the argument and what was given (a float, a string or a bool would otherwise reach
    torch as a raw TypeError, or silently place occlusion windows between pixels)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{who}: {name} must be a whole number >= {low}, got {value!r}")
    if value >= 2 ** 63:  # torch's split, randperm and manual_seed overflow with a raw ValueError
        raise ValueError(f"{who}: {name} must be a whole number {low}..2**63-1, got {value!r}")
    return int(value)


def check_resamples(who: str, resamples: Any) -> int:
    """A bootstrap's resample count: MIN_RESAMPLES..MAX_RESAMPLES (--bootstrap-resamples' range), else a ValueError
    naming `who` (one resample gave an 'interval' of zero width at one resampled mean, which could turn an unclear
    verdict into a firm one; 10**12 ended in torch's allocation error)."""
    resamples = check_count(who, "resamples", resamples, low=MIN_RESAMPLES)
    if resamples > MAX_RESAMPLES:
        raise ValueError(f"{who}: resamples must be {MIN_RESAMPLES}..{MAX_RESAMPLES}, got {resamples}")
    return resamples


def check_number(who: str, name: str, value: Any, low: float = -math.inf, above: bool = False) -> float:
    """A real-number argument (a learning rate, a sigma, a margin): `value` as a float if it is a finite number >= `low`
    (> `low` with `above`), else a ValueError naming `who` and `name` (nan passed every comparison-free path silently;
    text reached a comparison as a raw TypeError)."""
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not number or not math.isfinite(value) or (value <= low if above else value < low):
        bound = "" if low == -math.inf else f" {'>' if above else '>='} {low:g}"
        raise ValueError(f"{who}: {name} must be a finite number{bound}, got {value!r}")
    return float(value)


def check_class_index(who: str, name: str, value: Any, classes: int) -> int:
    """`value` if it is a class index 0..classes-1, else a ValueError naming `who` and `name` (a class no image has
    would select nothing, silently)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < classes:
        raise ValueError(f"{who}: {name} must be a class index 0..{classes - 1}, got {value!r}")
    return int(value)


def check_labels(who: str, labels: Any, n: int | None = None, classes: int | None = None,
                 name: str = "labels") -> torch.Tensor:
    """`labels` if they are integer class indices: a 1-D integer tensor (not bool), `n` long (one per image) when given,
    each 0..classes-1 when `classes` is given; else a ValueError naming `who` and what was given (float labels matched
    no class, a short tensor was cut by zip, a class out of range was scored 0: silently)."""
    fits = (isinstance(labels, torch.Tensor) and labels.dim() == 1 and not labels.is_floating_point()
            and not labels.is_complex() and labels.dtype != torch.bool and (n is None or len(labels) == n))
    values = ""
    if fits and classes is not None and len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < classes:
        fits, values = False, f" with values {int(labels.min())}..{int(labels.max())}"
    if not fits:
        span = f" 0..{classes - 1}" if classes is not None else ""
        shape = f"[{n}], one per image" if n is not None else "[N]"
        raise ValueError(f"{who}: {name} must be integer class indices{span} {shape}, got {described(labels)}{values}")
    return labels


def check_seed(who: str, seed: Any) -> int:
    """A random seed: a whole number 0..2**63-1, else a ValueError naming `who` (torch's manual_seed answers a float, a
    string or a bool with its own RuntimeError, a larger number with an overflow)."""
    return check_count(who, "seed", seed, low=0)


def check_model(model: Any, who: str) -> nn.Module:
    """`model` if it is a torch nn.Module, else a ValueError (not an AttributeError deep inside a hook)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"{who}: model must be a torch nn.Module (e.g. build_model()), got {type(model).__name__}")
    return model


def check_flag(who: str, name: str, value: Any) -> bool:
    """An on/off argument (normalize, autocast): `value` if it is True or False, else a ValueError naming the method
    (a string such as 'no' is truthy: it would silently switch the option on)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{who}: {name} must be True or False, got {value!r}")
    return bool(value)


def target_layer_of(model: nn.Module, target_layer: Any, who: str) -> tuple[str, nn.Module]:
    """(name, module) of a CAM's target layer given as a dotted name ('layer4.1.conv2', 'layer4[-1]') or as one of the
    model's own modules; anything else is an error that names `who`."""
    if isinstance(target_layer, nn.Module):
        names = {m: n for n, m in model.named_modules()}
        if target_layer not in names:
            raise UserError(f"{who}: the target layer module is not part of this model; pass one of its own modules "
                            "(e.g. model.layer4[1].conv2) or a name such as 'layer4.1.conv2'")
        return names[target_layer], target_layer
    if isinstance(target_layer, (str, os.PathLike)):
        return resolve_layer(model, os.fspath(target_layer), who)
    raise ValueError(f"{who}: target_layer must be a dotted name such as 'layer4.1.conv2' or a module of the model, "
                     f"got {type(target_layer).__name__} {target_layer!r:.40}")


def as_class_indices(classes: Any, who: str = "") -> torch.Tensor | None:
    """None, one int, a list of ints or an integer tensor -> an int64 tensor (0-d or [B]) on the CPU or its own device;
    anything else (a class name, floats, a nested list, a tensor without data) is a ValueError saying what to pass."""
    if classes is None:
        return None
    problem = ""
    if isinstance(classes, torch.Tensor) and classes.device.type == "meta":
        problem = "a meta tensor (it holds no values)"
    else:
        try:
            classes = torch.as_tensor(classes)
        except (TypeError, ValueError, RuntimeError):  # a class name, a dict, ragged lists
            problem = described(classes)
    if not problem and (classes.is_floating_point() or classes.is_complex() or classes.dtype == torch.bool
                        or classes.dim() > 1):
        problem = described(classes)
    if problem:
        raise ValueError(f"{who}{': ' if who else ''}classes must be None (each image's predicted class), one int, or "
                         "integer class "
                         f"indices (one per image), got {problem}")
    return classes.long()


def _as_class_tensor(classes: int | Sequence[int] | torch.Tensor | None, logits: torch.Tensor,
                     who: str) -> torch.Tensor:
    """Class index per image: argmax when None, broadcast when one int; validated against the logits."""
    batch, num_classes = logits.shape
    if classes is None:
        return logits.argmax(1)
    classes = as_class_indices(classes, who).to(logits.device)
    classes = classes.expand(batch) if classes.dim() == 0 else classes
    if classes.shape != (batch,):
        raise ValueError(f"{who}: got {classes.numel()} class indices for {batch} images")
    bad = (classes < 0) | (classes >= num_classes)
    if bad.any():
        raise ValueError(f"{who}: class index {classes[bad][0].item()} out of range for a {num_classes}-class model "
                         f"(valid: 0..{num_classes - 1})")
    return classes


def check_images(model: nn.Module, images: Any, who: str) -> None:
    """The one input check of every explanation method (the CAM family, cam_family, Guided Backprop, occlusion), made
    before any forward pass: `images` must be a batch [B, C, H, W] of normalised floats in the model's dtype, with the
    channels its first convolution takes, on the model's device. A ValueError says what was given and what to pass."""
    weight = next(model.parameters(), None)
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    problem = ""
    if weight is not None and weight.device.type == "meta":  # .item() on its logits would fail deep inside torch
        problem = ("the model is on the meta device (it has no weights yet); materialise and load them first, e.g. "
                   "model.to_empty(device='cpu') then model.load_state_dict(...)")
    elif not isinstance(images, torch.Tensor):
        problem = f"images must be a torch.Tensor [B, 3, H, W], got {described(images)}"
    elif images.dim() != 4 or images.shape[0] == 0:
        problem = (f"images must be a non-empty batch [B, C, H, W], got shape {tuple(images.shape)}"
                   + ("; for one image pass images[None]" if images.dim() == 3 else ""))
    elif not images.is_floating_point():
        problem = (f"images must be normalised floats, got {images.dtype}; for uint8 pixels [B, 3, H, W] pass "
                   "normalize(images), the input the model was trained on")
    elif weight is not None and images.dtype != weight.dtype:
        problem = (f"images are {images.dtype} but the model's weights are {weight.dtype}; pass "
                   f"images.to({weight.dtype}) (or convert the model)")
    elif conv is not None and images.shape[1] != conv.in_channels:
        problem = (f"the model takes {conv.in_channels}-channel images, got {images.shape[1]} channel(s) (shape "
                   f"{tuple(images.shape)})" + ("; a grey image can be repeated: images.expand(-1, 3, -1, -1)"
                                                if images.shape[1] == 1 else ""))
    elif weight is not None and images.device != weight.device:
        problem = (f"images are on {images.device} but the model is on {weight.device}; pass "
                   f"images.to('{weight.device}')")
    elif images.device.type != "meta" and not bool(images.isfinite().all()):  # a NaN pixel: NaN logits, a map of 0
        problem = f"images hold {int((~images.isfinite()).sum())} NaN or infinite value(s); explain finite images"
    if problem:
        raise ValueError(f"{who}: {problem}")


def check_logits(output: Any, batch: int, who: str) -> torch.Tensor:
    """The model's output if it is one tensor of logits [B, classes] for the B images, else a ValueError naming `who`
    (a model returning a tuple or a dict, as some detection or HuggingFace models do, needs a wrapper)."""
    if not (isinstance(output, torch.Tensor) and output.dim() == 2 and output.shape[0] == batch
            and output.is_floating_point()):
        raise ValueError(f"{who}: the model must return one tensor of class scores [B, classes] for B images, got "
                         f"{described(output)}; wrap it in an nn.Module whose forward returns the logits (e.g. model(x)[0])")
    return output


class Explanation(NamedTuple):
    maps: torch.Tensor     # float32 [B, H, W] at input resolution
    logits: torch.Tensor   # float32 [B, num_classes], detached
    classes: torch.Tensor  # int64 [B], the class each map explains


# Every method is called the same way: method(images, classes=None) -> maps, where images are normalised
# [B, 3, H, W] model inputs and classes is None (each image's predicted class), one int, or one per image.
# `explain` gives the same maps with the logits and the explained classes.

class CAMBase:
    """Hook core shared by the CAM methods: keeps A^k and dy^c/dA^k of one target layer, one batch at a time.

    A forward hook stores the layer's activations A^k; `torch.autograd.grad` of the summed class scores
    w.r.t. A^k gives dy^c/dA^k without computing any weight gradient, and without a backward pass below
    the target layer (autograd is only switched on from the target layer up). Hooks live for one call, so
    the model is never left hooked; its parameters, gradients and per-module train/eval modes are untouched.
    A CAM variant overrides only how A^k and dy^c/dA^k become the map: `channel_weights` (one weight per
    channel, as Grad-CAM), or `combine` itself (element-wise weights, as HiResCAM and LayerCAM).
    `label` is the method's name in tables and figures; the class names are pytorch-grad-cam's.
    """
    label = "CAM"
    uses_gradients = True  # False: activations only, captured under torch.inference_mode (Score-CAM)

    def __init__(self, model: nn.Module, target_layer: str | nn.Module = "layer4.1.conv2", autocast: bool = False):
        self.model = check_model(model, type(self).__name__)
        self.layer_name, self.layer = target_layer_of(model, target_layer, type(self).__name__)
        self.autocast = check_flag(type(self).__name__, "autocast", autocast)

    def channel_weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """alpha_k^c, shape [B, K], from A^k and dy^c/dA^k (both [B, K, h, w])."""
        raise NotImplementedError(f"{type(self).__name__} overrides neither channel_weights nor combine")

    def combine(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        """The map [B, h, w] before its ReLU: sum_k alpha_k^c A^k."""
        return torch.einsum("bk,bkhw->bhw", self.channel_weights(activations, grads), activations)

    def _activations_and_grads(self, images: torch.Tensor, classes, who: str = "") -> tuple[torch.Tensor, ...]:
        """One forward and, when the method uses gradients, one (partial) backward for the whole batch:
        A^k, dy^c/dA^k (None without gradients), the logits and the explained classes. `who`: the name errors
        start with (default: the method's class)."""
        who = who or type(self).__name__
        check_images(self.model, images, who)
        if self.uses_gradients and torch.is_inference_mode_enabled():
            raise RuntimeError(f"{who} needs autograd; call it outside torch.inference_mode()")
        captured: list[torch.Tensor] = []

        def keep_activations(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
            if captured:
                raise UserError(f"{who}: target layer {self.layer_name!r} runs more than once per forward pass "
                                "(a shared module such as a block's ReLU); choose a conv or block output")
            if not isinstance(output, torch.Tensor) or output.dim() != 4:
                shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
                raise UserError(f"{who}: target layer {self.layer_name!r} outputs {shape}; a CAM needs a "
                                "[B, C, H, W] feature map (e.g. layer4.1.conv2, layer4.1, layer3)")
            if output.shape[-2:] == (1, 1):  # a 1x1 map has no 'where': the input is too small for this layer
                raise UserError(f"{who}: target layer {self.layer_name!r} gives a 1x1 feature map for "
                                f"{images.shape[-2]}x{images.shape[-1]} images, which locates nothing; choose a layer "
                                "with a larger map (for 32x32 images layer4.1.conv2 gives 4x4, layer3 8x8) or larger "
                                "images")
            if not self.uses_gradients:
                captured.append(output.clone())  # a copy: ResNet's in-place `out += identity` cannot change it
                return None
            torch.set_grad_enabled(True)  # record the graph from here up to the logits only
            leaf = output.detach().requires_grad_(True)
            captured.append(leaf)
            # A clone goes on through the network, so an in-place op downstream (ResNet's `out += identity`)
            # cannot overwrite the stored A^k.
            return leaf.clone()

        handle = self.layer.register_forward_hook(keep_activations)
        no_grad = torch.no_grad() if self.uses_gradients else torch.inference_mode()
        try:
            with no_grad, autocast_for(images.device, self.autocast), eval_mode(self.model):
                logits = check_logits(self.model(images), len(images), who)  # the input is only read, not modified
            if not captured:
                raise UserError(f"{who}: target layer {self.layer_name!r} did not run in the forward pass")
            targets = _as_class_tensor(classes, logits.detach(), who)
            grads = None
            if self.uses_gradients:
                # enable_grad: also inside a caller's no_grad block; the backward runs no module. The backward's
                # matrix products follow the same autocast as the forward (a caller's own autocast reaches them too).
                with torch.enable_grad(), autocast_for(images.device, self.autocast):
                    score = logits.gather(1, targets[:, None]).sum()  # images are independent in eval mode
                    (grads,) = torch.autograd.grad(score, captured[0])
        finally:
            handle.remove()
        return captured[0].detach(), grads, logits.detach().float(), targets

    def maps_from(self, activations: torch.Tensor, grads: torch.Tensor, size: Sequence[int],
                  normalize: bool = True) -> torch.Tensor:
        """ReLU(combine(A, dy/dA)) [B, h, w] -> maps [B, H, W] at the input's `size`, in fp32 (fp64 stays)."""
        dtype = torch.promote_types(activations.dtype, torch.float32)  # bf16/fp16 (autocast) -> fp32, fp64 stays
        with torch.autocast(activations.device.type, enabled=False):  # a caller's autocast must not make maps bf16
            cam = cam_upsample(F.relu(self.combine(activations.to(dtype), grads.to(dtype))), size)  # -> [B, H, W]
            return minmax_normalize(cam) if normalize else cam

    def explain(self, images: torch.Tensor, classes=None, normalize: bool = True) -> Explanation:
        """Class activation maps [B, H, W] at input resolution, with the logits and explained classes.

        normalize=True: per-image min-max to [0, 1] (an all-zero map stays zero); False: the raw
        ReLU(combine(A, dy/dA)), bilinearly upsampled, for measuring where the map's mass lies."""
        normalize = check_flag(type(self).__name__, "normalize", normalize)
        activations, grads, logits, targets = self._activations_and_grads(images, classes)
        return Explanation(self.maps_from(activations, grads, images.shape[-2:], normalize), logits, targets)

    def __call__(self, images: torch.Tensor, classes=None, normalize: bool = True) -> torch.Tensor:
        """Maps [B, H, W] for `classes` (None: each image's predicted class; an int: that class for all)."""
        return self.explain(images, classes, normalize).maps


# Forward-only work (Score-CAM, occlusion, deletion/insertion) on the CPU runs fastest in small batches: ResNet-18 on
# 32x32 inputs, 2 cores, measured 369 img/s at 64 images per forward vs 275 at 512 (cache); GPUs keep large batches.
CPU_FORWARD_BATCH = 64


def forward_batch(requested: int, device: torch.device) -> int:
    """Images per forward pass for forward-only work: `requested`, at most CPU_FORWARD_BATCH on the CPU."""
    requested, device = check_count("forward_batch", "requested", requested), check_device("forward_batch", device)
    return min(requested, CPU_FORWARD_BATCH) if device.type == "cpu" else requested


def cam_upsample(cams: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Maps [B, h, w] at a layer's resolution -> [B, H, W] at the input's: bilinear, align_corners=False (every CAM
    method's upsampling; the audit's chance levels are simulated through this same function)."""
    check_tensor(cams, 3, "[B, h, w] of maps", "cam_upsample")
    if isinstance(size, np.ndarray) and size.ndim == 1 and np.issubdtype(size.dtype, np.integer):
        size = size.tolist()  # np.array([32, 32]) is a size too
    if not (isinstance(size, Sequence) and len(size) == 2
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in size)):
        raise ValueError(f"cam_upsample: size must be (H, W), two whole numbers >= 1, got {size!r}")
    return F.interpolate(cams[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def feature_size(model: nn.Module, layer: str, height: int = 32, width: int = 32) -> tuple[int, int]:
    """Spatial size (h, w) of `layer`'s output for a height x width input: a CAM's native resolution."""
    height, width = (check_count("feature_size", name, value) for name, value in (("height", height), ("width", width)))
    module = target_layer_of(check_model(model, "feature_size"), layer, "feature_size")[1]
    weight = next(model.parameters())
    blank = torch.zeros(1, 3, height, width, device=weight.device, dtype=weight.dtype)
    activations = GradCAM(model, module)._activations_and_grads(blank, 0, "feature_size")[0]
    return tuple(activations.shape[-2:])


# The CAM family. With A^k the layer's activations and g^k_ij = dy^c/dA^k_ij their gradients, each map is
# ReLU(sum_k w^k_ij A^k_ij) with: Grad-CAM w = mean_ij g (constant per channel); Grad-CAM++ w = sum_ij a_ij ReLU(g_ij),
# a = g^2 / (2 g^2 + sum_ij A * g^3) (the paper's closed form for an exponential score, as pytorch-grad-cam uses it);
# XGrad-CAM w = sum_ij g A / sum_ij A; HiResCAM w_ij = g_ij; LayerCAM w_ij = ReLU(g_ij); Score-CAM w = softmax over
# channels of the class score of the input masked by each channel's upsampled, min-max scaled A^k (no gradients).

class GradCAM(CAMBase):
    """Grad-CAM (Selvaraju et al. 2017, Eq. 1-2): alpha_k^c = (1/Z) sum_ij dy^c/dA^k_ij."""
    label = "Grad-CAM"

    def channel_weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return grads.mean((2, 3))


class GradCAMPlusPlus(CAMBase):
    """Grad-CAM++ (Chattopadhay et al. 2018, Eq. 19): positive gradients weighted per position by a_ij."""
    label = "Grad-CAM++"

    def channel_weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        g2 = grads.square()
        a = g2 / (2 * g2 + activations.sum((2, 3), keepdim=True) * g2 * grads + 1e-6)
        return (torch.where(grads != 0, a, 0) * grads.clamp_min(0)).sum((2, 3))


class XGradCAM(CAMBase):
    """XGrad-CAM (Fu et al. 2020): gradients weighted by the normalised activations, summed per channel."""
    label = "XGrad-CAM"

    def channel_weights(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return (grads * activations).sum((2, 3)) / (activations.sum((2, 3)) + 1e-7)


class HiResCAM(CAMBase):
    """HiResCAM (Draelos & Carin 2020): element-wise gradient x activation, summed over channels (no averaging of
    the gradients over space, which can move evidence to where the model did not look)."""
    label = "HiResCAM"

    def combine(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return (grads * activations).sum(1)


class LayerCAM(CAMBase):
    """LayerCAM (Jiang et al. 2021): element-wise positive gradient x activation, summed over channels."""
    label = "LayerCAM"

    def combine(self, activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
        return (grads.clamp_min(0) * activations).sum(1)


class ScoreCAM(CAMBase):
    """Score-CAM (Wang et al. 2020) as pytorch-grad-cam computes it: each channel's activation map, upsampled
    (bilinear, align_corners=True) and min-max scaled to [0, 1], masks the input; the channel weights are the softmax
    over channels of the class score (logit) of the masked inputs. (The authors' code weights by p(class) instead.)
    No gradients: K + 1 forward passes per image (K = 512 at layer4, 256 at layer3), the masked inputs of all images
    and channels batched `images_per_forward` at a time, under torch.inference_mode."""
    label = "Score-CAM"
    uses_gradients = False

    def __init__(self, model: nn.Module, target_layer: str | nn.Module = "layer4.1.conv2", autocast: bool = False,
                 images_per_forward: int = 512):
        super().__init__(model, target_layer, autocast)
        self.images_per_forward = check_count("ScoreCAM", "images_per_forward", images_per_forward)

    @torch.inference_mode()
    def masked_scores(self, images: torch.Tensor, activations: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The class score of every image masked by each of its channels' scaled activation maps: [B, K]."""
        batch, channels = activations.shape[:2]
        flat = activations.flatten(0, 1).float()  # [B*K, h, w]: one mask per (image, channel), image-major
        scores = []
        with eval_mode(self.model):
            chunk = forward_batch(self.images_per_forward, images.device)
            for rows in torch.arange(batch * channels, device=images.device).split(chunk):
                masks = F.interpolate(flat[rows, None], size=images.shape[-2:], mode="bilinear", align_corners=True)
                low, high = masks.amin((2, 3), keepdim=True), masks.amax((2, 3), keepdim=True)
                masked = images[rows // channels] * ((masks - low) / (high - low + 1e-8)).to(images.dtype)
                if images.is_contiguous(memory_format=torch.channels_last):
                    masked = masked.contiguous(memory_format=torch.channels_last)
                with autocast_for(images.device, self.autocast):
                    logits = self.model(masked).float()
                scores.append(logits.gather(1, targets[rows // channels, None])[:, 0])
        return torch.cat(scores).view(batch, channels)

    def explain(self, images: torch.Tensor, classes=None, normalize: bool = True) -> Explanation:
        normalize = check_flag("ScoreCAM", "normalize", normalize)  # before K forward passes per image, not after
        activations, _, logits, targets = self._activations_and_grads(images, classes)
        weights = self.masked_scores(images, activations, targets).softmax(1)
        maps = self.maps_from(activations, weights[:, :, None, None].expand_as(activations), images.shape[-2:], normalize)
        return Explanation(maps, logits, targets)

    def combine(self, activations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return (weights * activations).sum(1)  # weights: the softmax of masked_scores, broadcast over positions


# --methods names (pytorch-grad-cam's classes) -> the class. Gradient methods share one forward and backward per layer
# (cam_family); Score-CAM costs K forward passes per image, so the pipeline gives it only --scorecam-images images.
CAM_METHODS = {cls.__name__: cls for cls in (GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM, ScoreCAM)}


def check_method_names(methods: Any, who: str) -> list[str]:
    """A non-empty list of CAM_METHODS names, each once; else a ValueError naming `who`."""
    if isinstance(methods, str) or not isinstance(methods, Sequence) or not methods:
        raise ValueError(f"{who}: methods must be a non-empty list of names such as ['GradCAM'], got {methods!r}")
    unknown = [str(name) for name in methods if name not in CAM_METHODS]
    if unknown:
        raise ValueError(f"{who}: unknown method(s) {', '.join(unknown)}; choose from {', '.join(CAM_METHODS)}"
                         + " ('all' is the --methods flag's word; from Python pass list(CAM_METHODS))" * ("all" in unknown))
    twice = sorted({name for name in methods if list(methods).count(name) > 1})
    if twice:  # one key per method: a second copy would append its maps to the first's (2B maps for B images)
        raise ValueError(f"{who}: method(s) listed more than once: {', '.join(twice)}; list each once")
    return list(methods)


def explained_classes(model: nn.Module, images: torch.Tensor, classes: Any, batch_size: int, who: str) -> torch.Tensor:
    """The class each image's maps explain, as int64 [B] on the images' device: the given one (one int for all, or
    one per image) or, for None, each image's predicted class (forward passes in eval mode, `batch_size` at a time);
    checked against the model's classes."""
    check_images(check_model(model, who), images, who)
    batch_size = check_count(who, "batch_size", batch_size)
    with torch.no_grad(), eval_mode(model):
        logits = (torch.cat([check_logits(model(x), len(x), who) for x in images.split(batch_size)]) if classes is None
                  else check_logits(model(images[:1]), 1, who).expand(len(images), -1)).float()
    return _as_class_tensor(classes, logits, who).to(images.device)


def cam_family(model: nn.Module, images: torch.Tensor, classes: int | Sequence[int] | torch.Tensor | None, layer: str,
               methods: Sequence[str], batch_size: int, normalize: bool = True) -> dict[str, torch.Tensor]:
    """Maps [B, H, W] of several gradient CAM methods (CAM_METHODS names) at one layer, keyed by label, `batch_size`
    images at a time, each batch with one shared forward and backward: the methods differ only in how A and dy/dA are
    combined (equal to calling each one; tested)."""
    check_images(check_model(model, "cam_family"), images, "cam_family")
    check_method_names(methods, "cam_family")
    layer = target_layer_of(model, layer, "cam_family")[1]
    normalize = check_flag("cam_family", "normalize", normalize)
    batch_size = check_count("cam_family", "batch_size", batch_size)
    classes = as_class_indices(classes, "cam_family")  # one int, a list or a tensor, as every method takes them
    if classes is not None:  # (each batch's part is checked against the logits)
        classes = classes.expand(len(images)) if classes.dim() == 0 else classes
        if classes.shape != (len(images),):
            raise ValueError(f"cam_family: got {classes.numel()} class indices for {len(images)} images")
    cams = [CAM_METHODS[name](model, layer) for name in methods]
    if any(not cam.uses_gradients for cam in cams):
        raise ValueError("cam_family shares one backward pass between gradient methods; call ScoreCAM on its own")
    maps: dict[str, list[torch.Tensor]] = {cam.label: [] for cam in cams}
    parts = classes.split(batch_size) if classes is not None else [None] * len(images.split(batch_size))
    for x, c in zip(images.split(batch_size), parts):
        activations, grads, _, _ = cams[0]._activations_and_grads(x, c, "cam_family")
        for cam in cams:
            maps[cam.label].append(cam.maps_from(activations, grads, x.shape[-2:], normalize))
    return {label: torch.cat(parts) for label, parts in maps.items()}


class _PositiveGradientOnly(torch.autograd.Function):
    """Identity forward; backward lets only positive gradients through (the 'guided' half of Guided Backprop)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()  # a new tensor, so later in-place ops on it are ordinary autograd ops

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)


def _guide_relu(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: the ReLU's output, wrapped so that its backward passes only positive gradients."""
    return _PositiveGradientOnly.apply(output)


class GuidedBackprop:
    """Guided Backpropagation (Springenberg et al. 2015): dy^c/dx where every ReLU's backward passes only
    positive gradients at positions where its forward input was positive. Its map is the saliency of the guided
    gradients (largest |.| over the colour channels); `gradients` gives them as they are, [B, 3, H, W].

    The model is not edited: for one call, a forward hook on each nn.ReLU module wraps its output in
    `_PositiveGradientOnly`, so the ReLU's own backward (mask: input > 0) followed by the clamp (gradient > 0)
    gives exactly the guided rule. Hooks fire on every call of a module, so torchvision's ResNet, which reuses
    one in-place ReLU twice per block, is handled; the hooks are removed and the modes restored afterwards.
    """

    def __init__(self, model: nn.Module):
        self.relus = [m for m in check_model(model, "GuidedBackprop").modules() if isinstance(m, nn.ReLU)]
        if not self.relus:
            raise UserError("Guided Backprop needs nn.ReLU modules; this model has none (functional ReLUs "
                            "cannot be guided without editing the model)")
        self.model = model

    def _backward(self, images: torch.Tensor, classes) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One guided forward and backward: gradients [B, 3, H, W] w.r.t. the input, logits, explained classes."""
        check_images(self.model, images, "GuidedBackprop")
        if torch.is_inference_mode_enabled():
            raise RuntimeError("GuidedBackprop needs autograd; call it outside torch.inference_mode()")
        handles = [relu.register_forward_hook(_guide_relu) for relu in self.relus]
        try:
            with eval_mode(self.model), torch.enable_grad(), autocast_for(images.device, False):  # fp32 gradients
                x = images.detach()  # a new leaf: the caller's tensor is not touched (nor, made in inference mode,
                x = (x.clone() if x.is_inference() else x).requires_grad_(True)  # refused)
                logits = check_logits(self.model(x), len(x), "GuidedBackprop")
                targets = _as_class_tensor(classes, logits.detach(), "GuidedBackprop")
                (grads,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), x)
        finally:
            for handle in handles:
                handle.remove()
        # a half or bf16 model's gradients in float32, as every method's maps; a float64 model's stay float64
        return grads.to(torch.promote_types(grads.dtype, torch.float32)), logits.detach().float(), targets

    def gradients(self, images: torch.Tensor, classes=None) -> torch.Tensor:
        """Guided gradients [B, 3, H, W] w.r.t. the input (what Guided Grad-CAM multiplies with Grad-CAM)."""
        return self._backward(images, classes)[0]

    def explain(self, images: torch.Tensor, classes=None) -> Explanation:
        grads, logits, targets = self._backward(images, classes)
        return Explanation(saliency(grads), logits, targets)

    def __call__(self, images: torch.Tensor, classes=None) -> torch.Tensor:
        """Saliency maps [B, H, W]."""
        return saliency(self.gradients(images, classes))


def saliency(gradients: torch.Tensor) -> torch.Tensor:
    """Input-space gradients [B, 3, H, W] as a map [B, H, W]: the largest absolute value over the channels."""
    check_tensor(gradients, 4, "[B, C, H, W] of input gradients", "saliency")
    return gradients.abs().amax(1)


def guided_grad_cam(guided_grads: torch.Tensor, cams: torch.Tensor) -> torch.Tensor:
    """Guided Grad-CAM (Selvaraju et al. 2017, Sec. 3.1): Guided Backprop [B, 3, H, W] times the upsampled
    Grad-CAM [B, H, W], pointwise; returned as a saliency [B, H, W] (max |.| over channels)."""
    check_tensor(guided_grads, 4, "[B, C, H, W] of guided gradients", "guided_grad_cam")
    check_tensor(cams, 3, "[B, H, W] of Grad-CAM maps at input resolution", "guided_grad_cam")
    if cams.shape != (guided_grads.shape[0], *guided_grads.shape[2:]):
        raise ValueError(f"guided_grad_cam: the maps {tuple(cams.shape)} must match the gradients' images "
                         f"{tuple(guided_grads.shape)} as [B, H, W] (Grad-CAM at input resolution, one per image)")
    return saliency(guided_grads * cams[:, None])


def check_stride(who: str, stride: Any, patch: int) -> int:
    """The occlusion stride if it is a whole number 1..patch, else a ValueError naming `who` (a larger stride leaves
    pixels that no window covers)."""
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or not 1 <= stride <= patch:
        why = "; a larger one leaves pixels that no window covers" if isinstance(stride, (int, np.integer)) \
            and stride > patch else ""  # a bool (True > patch is never so) falls through to no clause
        raise ValueError(f"{who}: stride must be a whole number 1..patch ({patch}), got {stride!r}{why}")
    return int(stride)


class Occlusion:
    """Occlusion sensitivity (Zeiler & Fergus 2014) [B, H, W]: the drop of p(class) when a patch x patch square,
    filled with the dataset mean (0 after normalisation), covers each position; a pixel's value is the mean
    drop over the windows that cover it (as Captum's Occlusion). The occluded copies are batched,
    `images_per_forward` at a time, under torch.inference_mode."""

    def __init__(self, model: nn.Module, patch: int = 8, stride: int = 2, images_per_forward: int = 512,
                 autocast: bool = False):
        check_model(model, "Occlusion")
        autocast = check_flag("Occlusion", "autocast", autocast)
        patch, images_per_forward = (check_count("Occlusion", name, value) for name, value in
                                     (("patch", patch), ("images_per_forward", images_per_forward)))
        stride = check_stride("Occlusion", stride, patch)
        self.model, self.patch, self.stride = model, patch, stride
        self.images_per_forward, self.autocast = images_per_forward, autocast

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, classes=None) -> torch.Tensor:
        check_images(self.model, images, "Occlusion")
        if self.patch >= min(images.shape[-2:]):  # as large as the image: one window, so one value everywhere
            raise ValueError(f"Occlusion: patch {self.patch} must be smaller than the {tuple(images.shape[-2:])} images "
                             "(a patch covering the whole image gives a constant map)")
        windows = occlusion_windows(*images.shape[-2:], self.patch, self.stride, images.device)  # [P, H, W]
        keep = (~windows).to(images.dtype)[:, None]                                          # [P, 1, H, W]
        per_forward = forward_batch(self.images_per_forward, images.device)
        per_chunk = max(1, per_forward // (len(windows) + 1))  # >= one image and its windows per pass
        drops = []
        with eval_mode(self.model):
            # One plain forward per image (1/(P+1) of the work) picks and checks the classes before any occluded pass.
            with autocast_for(images.device, self.autocast):
                logits = torch.cat([check_logits(self.model(x), len(x), "Occlusion")
                                    for x in images.split(self.images_per_forward)])
            targets = _as_class_tensor(classes, logits.float(), "Occlusion")
            for x, c in zip(images.split(per_chunk), targets.split(per_chunk)):
                batch = torch.cat([x, (x[:, None] * keep[None]).flatten(0, 1)])            # originals + occluded
                with autocast_for(images.device, self.autocast):
                    probs = self.model(batch).float().softmax(1)
                p = probs.gather(1, torch.cat([c, c.repeat_interleave(len(windows))])[:, None])[:, 0]
                drops.append(p[:len(x), None] - p[len(x):].view(len(x), len(windows)))      # [b, P]
        return occlusion_map(torch.cat(drops), windows)


def occlusion_windows(height: int, width: int, patch: int, stride: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean [P, H, W]: the pixels each occlusion window covers. Window corners every `stride` pixels; where they
    do not tile the image, one more window clipped at the border covers the last pixels (as Captum's Occlusion)."""
    height, width, patch = (check_count("occlusion_windows", name, value) for name, value in
                            (("height", height), ("width", width), ("patch", patch)))
    if patch > min(height, width):
        raise ValueError(f"occlusion_windows: patch {patch} is larger than the {height}x{width} image")
    stride, device = check_stride("occlusion_windows", stride, patch), check_device("occlusion_windows", device)
    tops = torch.arange(0, -(-(height - patch) // stride) * stride + 1, stride, device=device)
    lefts = torch.arange(0, -(-(width - patch) // stride) * stride + 1, stride, device=device)
    rows, cols = torch.arange(height, device=device), torch.arange(width, device=device)
    win_rows = (rows[None, :] >= tops[:, None]) & (rows[None, :] < tops[:, None] + patch)    # [Pt, H]
    win_cols = (cols[None, :] >= lefts[:, None]) & (cols[None, :] < lefts[:, None] + patch)  # [Pl, W]
    return (win_rows[:, None, :, None] & win_cols[None, :, None, :]).flatten(0, 1)


def occlusion_map(drops: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """Per-window values [B, P] -> maps [B, H, W]: each pixel's mean over the windows [P, H, W] that cover it (in the
    values' precision: a caller's autocast would make the einsum bf16)."""
    check_tensor(drops, 2, "[B, P] of per-window drops", "occlusion_map")
    if not (isinstance(windows, torch.Tensor) and windows.dim() == 3 and len(windows) == drops.shape[1]
            and windows.dtype == torch.bool):  # float windows weighted the drops silently
        raise ValueError(f"occlusion_map: windows must be bool [P, H, W] with P = {drops.shape[1]} (one per drop), got "
                         f"{described(windows)}; occlusion_windows(...) gives them")
    with autocast_for(drops.device, False):
        return torch.einsum("bp,phw->bhw", drops, windows.to(drops.dtype)) / windows.sum(0).to(drops.dtype)


def batched(method: Callable[..., torch.Tensor], images: torch.Tensor, classes: torch.Tensor, batch_size: int,
            **options: Any) -> torch.Tensor:
    """method(images, classes, **options) on `batch_size` images at a time, concatenated (classes: one per image, or
    None for each image's predicted class)."""
    batch_size = check_count("batched", "batch_size", batch_size)
    if not isinstance(images, torch.Tensor) or images.dim() == 0:
        raise ValueError(f"batched: images must be a tensor [B, ...], got {described(images)}")
    if classes is not None and not (isinstance(classes, torch.Tensor) and classes.shape[:1] == images.shape[:1]):
        raise ValueError(f"batched: classes must be None or a tensor with one class per image ({len(images)}), "
                         f"got {described(classes)}")
    parts = classes.split(batch_size) if classes is not None else [None] * len(images.split(batch_size))
    return torch.cat([method(x, c, **options) for x, c in zip(images.split(batch_size), parts)])


CASCADE = ("fc", "layer4", "layer3", "layer2", "layer1", "conv1+bn1")  # Adebayo et al.: from the logits down


def cascading_randomization(model: nn.Module, seed: int = 0) -> Iterable[tuple[str, nn.Module]]:
    """Yield (stage, model) with fc, then also layer4, ..., then also the stem re-initialised, on one deep copy (the
    caller's model is never touched). Re-initialised means: the weights of a freshly built, untrained model (the
    architecture's own initialisation, seeded per stage), made on the CPU so no device RNG is disturbed."""
    names, seed = dict(check_model(model, "cascading_randomization").named_modules()), check_seed(
        "cascading_randomization", seed)
    if not all(name in names for stage in CASCADE for name in stage.split("+")) or \
            not isinstance(names["fc"], nn.Linear):
        raise ValueError("cascading_randomization: expects this file's ResNet-18 (build_model()): modules "
                         f"{', '.join(CASCADE)} and a Linear fc")
    return _cascade(model, seed)  # checked now; a generator would check only at its first next()


def _cascade(model: nn.Module, seed: int) -> Iterable[tuple[str, nn.Module]]:
    randomized = copy.deepcopy(model)
    for i, stage in enumerate(CASCADE):
        with torch.random.fork_rng(devices=[]):
            # Seeds disjoint from the training seed: 'random' must never mean the model's own initial weights.
            torch.manual_seed(1_000_003 + 100 * seed + i)
            fresh = build_model(randomized.fc.out_features)
        for name in stage.split("+"):
            randomized.get_submodule(name).load_state_dict(fresh.get_submodule(name).state_dict())
        yield stage, randomized


def reinitialised(model: nn.Module, down_to: str, seed: int = 0) -> nn.Module:
    """A copy of the model with every CASCADE stage from the logits down to `down_to` re-initialised (the audit's
    control: the biased model with fc and layer4 random keeps the square's features only below layer4)."""
    if down_to not in CASCADE:
        raise ValueError(f"reinitialised: unknown stage {down_to!r}; one of {', '.join(CASCADE)}")
    seed = check_seed("reinitialised", seed)
    return next(randomized for stage, randomized in cascading_randomization(model, seed) if stage == down_to)


def cam_maps(model: nn.Module, images: torch.Tensor, classes: torch.Tensor, layer: str, methods: Sequence[str],
             batch_size: int, scorecam_images: int | None = None, normalize: bool = True,
             forward_amp: bool = False) -> dict[str, torch.Tensor]:
    """Maps [B, H, W] of every CAM of `methods` at `layer`, keyed by label, Grad-CAM (always) first: the gradient
    methods from cam_family's shared passes (fp32), then Score-CAM, when listed, of the first `scorecam_images` images
    (None: all; 0: none, as --scorecam-images 0) only (all its forward passes, activations included, under autocast
    with `forward_amp`)."""
    methods = check_method_names(methods, "cam_maps")
    classes = explained_classes(model, images, classes, batch_size, "cam_maps")
    scorecam_images = len(images) if scorecam_images is None else check_count("cam_maps", "scorecam_images",
                                                                               scorecam_images, low=0)
    gradient = ["GradCAM", *(m for m in methods if m != "GradCAM" and CAM_METHODS[m].uses_gradients)]
    maps = cam_family(model, images, classes, layer, gradient, batch_size, normalize)
    if "ScoreCAM" in methods and scorecam_images > 0:
        score_cam = ScoreCAM(model, layer, autocast=forward_amp, images_per_forward=batch_size)
        maps[ScoreCAM.label] = batched(score_cam, images[:scorecam_images],
                                       classes[:scorecam_images], batch_size, normalize=normalize)
    return maps


def explain_all(model: nn.Module, images: torch.Tensor, classes: torch.Tensor, layer: str, batch_size: int,
                methods: Sequence[str] = ("GradCAM",), scorecam_images: int | None = None,
                forward_amp: bool = False) -> dict[str, torch.Tensor]:
    """Maps [B, H, W] for the given classes, batched: Grad-CAM, Guided Backprop, Guided Grad-CAM, then every other CAM
    of `methods` at `layer` (cam_maps: Score-CAM of the first `scorecam_images` images only; None: all)."""
    methods, classes = check_method_names(methods, "explain_all"), explained_classes(model, images, classes, batch_size,
                                                                                    "explain_all")
    if scorecam_images is not None:  # named here, not in cam_maps
        check_count("explain_all", "scorecam_images", scorecam_images, low=0)
    cams = cam_maps(model, images, classes, layer, methods, batch_size, scorecam_images, forward_amp=forward_amp)
    grads = batched(GuidedBackprop(model).gradients, images, classes, batch_size).float()
    maps = {"Grad-CAM": cams.pop("Grad-CAM"), "Guided Backprop": saliency(grads)}
    maps["Guided Grad-CAM"] = guided_grad_cam(grads, maps["Grad-CAM"])
    maps.update(cams)
    return maps


#############################################
#              Train and evaluate           #
#############################################

def table_lines(headers: Sequence[str], rows: Sequence[Sequence[Any]] = (), header: bool = True,
                markdown: bool = True) -> list[str]:
    """A table's lines, columns as wide as their header or widest cell, the first left-aligned, the others
    right-aligned, floats with 4 decimals (pass a string for any other format): a markdown table, or (markdown=False)
    columns two spaces apart, for a narrow console. A line break in a cell becomes a space and, in markdown, a '|'
    is escaped: either would split the row."""
    def text(v: Any) -> str:
        v = " ".join((f"{v:.4f}" if isinstance(v, float) else str(v)).splitlines())
        return v.replace("|", "\\|") if markdown else v
    headers = [text(h) for h in headers]
    cells = [[text(v) for v in row] for row in rows]
    short = next((i for i, row in enumerate(cells) if len(row) != len(headers)), None)
    if short is not None:  # zip would drop the extra cells silently
        raise ValueError(f"table_lines: row {short} has {len(cells[short])} cells for {len(headers)} headers")
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        padded = [v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return "| " + " | ".join(padded) + " |" if markdown else "  ".join(padded)
    rule = ["| " + " | ".join((":" + "-" * (w - 1)) if i == 0 else ("-" * (w - 1) + ":")
                              for i, w in enumerate(widths)) + " |"] if markdown else []
    return ([line(headers), *rule] if header else []) + [line(r) for r in cells]


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]] = (), header: bool = True) -> None:
    """Prints table_lines (the epoch log, the benchmarks): a log that prints a row at a time keeps its columns
    aligned by choosing headers as wide as its cells (airbench's rule)."""
    to_console(*table_lines(headers, rows, header))


# The epoch log: one row per epoch, each header as wide as its cells.
EPOCH_LOG = ("run name", "epoch", "train_loss", "train_acc", "test_acc", "lr used", "seconds")


@torch.inference_mode()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int, amp: bool = False,
                   channels_last: bool = False, square: Square | None = None, progress: str = "") -> torch.Tensor:
    """Logits (float32 [N, classes]) for uint8 images, `batch_size` at a time; with a square, it is stamped on
    every image first. `progress`: a progress bar's title (none when empty)."""
    from tqdm.auto import tqdm
    check_pixels(images, "predict_logits")
    batch_size = check_count("predict_logits", "batch_size", batch_size)
    amp, channels_last = check_flag("predict_logits", "amp", amp), check_flag("predict_logits", "channels_last",
                                                                               channels_last)  # amp='no' was on
    device = next(check_model(model, "predict_logits").parameters()).device
    outputs = []
    with eval_mode(model):
        for batch in tqdm(images.split(batch_size), progress, leave=False, disable=not progress):
            batch = batch.to(device) if square is None else stamp_square(batch.to(device), square)
            with autocast_for(device, amp):
                outputs.append(model(normalize(batch, channels_last)).float())
    return torch.cat(outputs) if outputs else torch.empty((0, len(CIFAR10_CLASSES)), device=device)


def make_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float,
                   fused: bool = True) -> torch.optim.Optimizer:
    """The recipe's SGD; with `fused`, the fused kernel (one op for all parameters) where this PyTorch has it, else
    foreach. Not with a GradScaler: fused SGD allocates its momentum buffers uninitialised, and a step the scaler skips
    (fp16 overflow, typical for the first steps) leaves them so; the next step then moves weights by ~1e35."""
    model = check_model(model, "make_optimizer")  # None was an AttributeError on .parameters()
    lr, momentum, weight_decay = (check_number("make_optimizer", name, value, 0) for name, value in  # nan was taken
                                  (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)))
    if momentum > 1:  # --momentum's own range (2.0 was taken: the weights diverge)
        raise ValueError(f"make_optimizer: momentum must be a finite number 0..1, got {momentum}")
    fused = check_flag("make_optimizer", "fused", fused)
    kwargs = dict(lr=lr, momentum=momentum, weight_decay=weight_decay)
    if not fused:
        return torch.optim.SGD(model.parameters(), **kwargs)
    try:
        return torch.optim.SGD(model.parameters(), fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError):  # older PyTorch or a device without the fused kernel
        return torch.optim.SGD(model.parameters(), **kwargs)


def training_setup(cfg: Config, device: torch.device) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer,
                                                              torch.amp.GradScaler]:
    """The recipe's fresh model (channels_last where configured), the module the training step calls (compiled
    with --compile; explanations use the plain one), its SGD and the loss scaler (active only for fp16 on GPU).
    The caller seeds first: the model's initial weights come from the global RNG."""
    model = build_model(len(CIFAR10_CLASSES)).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if cfg.compile else model
    use_scaler = cfg.amp and amp_dtype(device) == torch.float16
    optimizer = make_optimizer(model, cfg.lr, cfg.momentum, cfg.weight_decay, fused=not use_scaler)
    return model, step_model, optimizer, torch.amp.GradScaler(device.type, enabled=use_scaler)


def training_step(step_model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                  inputs: torch.Tensor, labels: torch.Tensor, amp: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGD step of the recipe (cross-entropy, --amp's precision); returns the logits and the loss, still
    on the device: no host sync. benchmarks/bench.py times exactly this function."""
    with autocast_for(inputs.device, amp):
        logits = step_model(inputs)
        loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return logits, loss


def train_model(cfg: Config, train: Split, test: Split, device: torch.device, biased: bool, name: str,
                epoch_path: Path | None = None, key: str = "") -> tuple[nn.Module, list[dict]]:
    """The reference recipe; the biased run stamps every training frog after augmentation. A loss or weight that
    goes non-finite stops the run with an error (nothing is saved, and a saved training state is removed). With
    `epoch_path`, the whole training state (weights, SGD momentum, schedule, loss scale, the augmentation generator,
    history) is saved there after every epoch under `key`, and with --resume (not --retrain) a saved state of the same
    key is continued: on a CPU bit for bit the weights of a run that was never interrupted (tests/test_checkpoints.py);
    on a GPU, whose cuDNN kernels are not deterministic, the same state."""
    check_config(cfg, "train_model")
    seed_everything(cfg.seed)  # same init, batch order and augmentation for both runs: only the square differs
    model, step_model, optimizer, scaler = training_setup(cfg, device)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    artifact = (cfg.artifact_class, cfg.square) if biased else None
    n = len(train.labels)
    steps = (n + cfg.batch_size - 1) // cfg.batch_size
    history = []
    resume = epoch_path is not None and cfg.resume and not cfg.retrain and epoch_path.exists()
    saved = load_epoch_state(epoch_path, key, device) if resume else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        generator.set_state(saved["generator"].cpu())
        history = saved["history"]
        say(cfg, f"{name}: resuming after epoch {len(history)} of {cfg.epochs} from {epoch_path} (--no-resume to "
                 "start over)")
    from tqdm.auto import tqdm
    first_epoch = len(history) + 1
    for epoch in range(first_epoch, cfg.epochs + 1):
        start = time.perf_counter()
        lr = scheduler.get_last_lr()[0]  # this epoch's learning rate, after --lr-gamma's steps
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        order = torch.randperm(n, device=device, generator=generator)
        bar = tqdm(range(steps), desc=f"{name} epoch {epoch}/{cfg.epochs}", leave=False, disable=not cfg.progress)
        for step in bar:
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            labels = train.labels[idx]
            inputs = training_batch(train.images[idx], labels, generator, cfg.crop_padding, cfg.flip,
                                    cfg.channels_last, artifact)
            logits, loss = training_step(step_model, optimizer, scaler, inputs, labels, cfg.amp)
            loss_sum += loss.detach() * len(idx)  # stays on the device: no per-step host sync
            correct += (logits.detach().argmax(1) == labels).sum()
        train_loss = loss_sum.item() / n
        test_logits = predict_logits(model, test.images, cfg.eval_batch_size, cfg.amp, cfg.channels_last)
        finite_predictions = bool(test_logits.isfinite().all())
        if not (math.isfinite(train_loss) and finite_predictions):
            if epoch_path is not None:  # resuming would only diverge again
                epoch_path.unlink(missing_ok=True)
            raise UserError(f"{name} model diverged in epoch {epoch} (training loss {train_loss:.4g}, non-finite "
                            f"predictions: {not finite_predictions}); {divergence_advice(cfg, lr)}; no checkpoint "
                            "was written")
        scheduler.step()
        test_acc = accuracy(test_logits, test.labels)
        row = dict(run=name, epoch=epoch, train_loss=train_loss, train_acc=correct.item() / n,
                   test_acc=test_acc, lr=lr, seconds=time.perf_counter() - start)
        if not cfg.quiet:  # with its header above this model's first epoch (none when a checkpoint is reused)
            print_table(EPOCH_LOG, [[name, epoch, train_loss, row["train_acc"], test_acc, lr, f"{row['seconds']:.1f}"]],
                        header=epoch == first_epoch)
        history.append(row)
        if epoch_path is not None:
            save_atomically(dict(key=key, model=model.state_dict(), optimizer=optimizer.state_dict(),
                                 scheduler=scheduler.state_dict(), scaler=scaler.state_dict(),
                                 generator=generator.get_state(), history=history), epoch_path)
    model.eval()
    return model, history


def divergence_advice(cfg: Config, lr: float) -> str:
    """What to lower when training diverged at learning rate `lr`: every setting that scales the update, each with
    its value (--weight-decay 1e300 was blamed on --lr; a schedule that raised the rate showed the starting one)."""
    raised = f"; this epoch ran at lr {lr:.4g}, as --lr-gamma {cfg.lr_gamma:g} every --lr-step {cfg.lr_step} " \
             "epochs set it" if lr > cfg.lr else ""
    return (f"lower --lr (now {cfg.lr:g}), --momentum (now {cfg.momentum:g}) or --weight-decay (now "
            f"{cfg.weight_decay:g}){', or --lr-gamma to at most 1' if cfg.lr_gamma > 1 else ''}{raised}")


def load_epoch_state(path: Path, key: str, device: torch.device) -> dict | None:
    """The training state train_model saved after an epoch, if it is readable and of this key; else None, after a
    one-line warning (training then starts from epoch 1)."""
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
        if saved["key"] != key:
            raise ValueError(f"it belongs to key {saved['key']}, not {key}")
        missing = {"model", "optimizer", "scheduler", "scaler", "generator", "history"} - set(saved)
        if missing:
            raise ValueError(f"it lacks {', '.join(sorted(missing))}")
        build_model(len(CIFAR10_CLASSES)).load_state_dict(saved["model"])  # this architecture's weights
        return saved
    except Exception as exc:  # a cache entry: whatever is wrong with it, start over
        warn_ignored("training state", path, exc, "starting at epoch 1")
        return None


def check_logits_and_labels(logits: Any, labels: Any, who: str) -> None:
    """A ValueError naming `who` unless logits are floats [N, classes] and labels integers [N]."""
    if not (isinstance(logits, torch.Tensor) and isinstance(labels, torch.Tensor) and logits.dim() == 2
            and logits.is_floating_point() and labels.dim() == 1 and not labels.is_floating_point()
            and len(logits) == len(labels)):
        raise ValueError(f"{who}: expects float logits [N, classes] and integer labels [N], got {described(logits)} "
                         f"and {described(labels)}")
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < logits.shape[1]:  # scored 0.0 or {} silently
        raise ValueError(f"{who}: labels must be class indices 0..{logits.shape[1] - 1}, got {int(labels.min())}.."
                         f"{int(labels.max())}")
    if logits.device.type != "meta" and not bool(logits.isfinite().all()):  # argmax of NaN is class 0: a 'hit' for it
        raise ValueError(f"{who}: the logits hold {int((~logits.isfinite()).sum())} NaN or infinite value(s) (a "
                         "diverged model?); pass a trained model's logits")


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    check_logits_and_labels(logits, labels, "accuracy")
    if not len(labels):  # was NaN, which flowed into the metrics silently
        raise ValueError("accuracy: no images to score (logits [0, classes]); pass at least one")
    return (logits.argmax(1) == labels).float().mean().item()


CHECKPOINT_VERSION = 4  # bump when the code changes what a checkpoint means (model, recipe, data handling)


def training_fields(biased: bool) -> list[str]:
    """The Config fields that determine a model's weights (and its saved history), read off their declarations."""
    roles = ("both", "biased") if biased else ("both",)
    return [f.name for f in dataclasses.fields(Config) if f.metadata["trains"] in roles]


def training_key(config: dict, biased: bool, data: str, precision: str, device_type: str) -> str:
    """Short hash of everything that determines a trained model: the training fields of `config` (a
    Config.to_dict(), also as stored in a checkpoint), the data's fingerprint, the training precision, the device
    type (a CPU's and a GPU's kernels round differently: other weights) and the checkpoint version. A checkpoint is
    reused only on a match."""
    biased = check_flag("training_key", "biased", biased)
    for name, value in dict(data=data, precision=precision, device_type=device_type).items():  # None hashed silently
        if not (isinstance(value, str) and value.strip()):
            raise ValueError(f"training_key: {name} must be a non-empty string (data: data_fingerprint(train, test); "
                             f"precision: e.g. 'fp32'; device_type: e.g. 'cpu'), got {described(value)}")
    if precision not in PRECISION_NAMES.values():  # 'bf17' made a key no run could ever match
        raise ValueError(f"training_key: precision must be one of {', '.join(PRECISION_NAMES.values())} "
                         f"(training_precision(device, amp)), got {precision!r}")
    missing = [k for k in training_fields(biased) if not isinstance(config, dict) or k not in config]
    if missing:
        raise ValueError(f"training_key: config lacks {', '.join(missing)}; pass Config(...).to_dict() (or a "
                         "checkpoint's stored config)")
    payload = {k: config[k] for k in training_fields(biased)} | {
        "biased": biased, "data": data, "precision": precision, "device": device_type, "version": CHECKPOINT_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:10]


def load_checkpoint(path: Path, key: str, biased: bool, device: torch.device) -> tuple[nn.Module, dict] | None:
    """The model and contents of a checkpoint that is readable, holds this architecture's weights and whose stored
    configuration, data fingerprint and precision give the key in its name; otherwise None, after a one-line
    warning."""
    biased, device = check_flag("load_checkpoint", "biased", biased), check_device("load_checkpoint", device)
    try:
        try:
            saved = torch.load(path, map_location=device, weights_only=True)
        except Exception:  # not torch's message: its advice, weights_only=False, is unsafe for a file of unknown origin
            raise ValueError("torch cannot read it as plain weights: a damaged file, or not a checkpoint this program "
                             "wrote") from None
        stored_key = training_key(saved["config"], biased, saved["data_fingerprint"], saved["precision"],
                                  saved.get("device_type", "unrecorded"))
        if stored_key != key:
            raise ValueError(f"its stored configuration gives key {stored_key}, not {key}")
        if saved.get("key") != key:  # the configuration alone cannot tell the standard model's file from the biased one's
            raise ValueError(f"it is the checkpoint of key {saved.get('key')} (another model's file under this name), "
                             f"not of {key}")
        model = build_model(len(CIFAR10_CLASSES)).to(device)
        model.load_state_dict(saved["state_dict"])
        if not all(t.isfinite().all() for t in model.state_dict().values() if t.is_floating_point()):
            raise ValueError("it holds non-finite weights")
        return model, saved
    except Exception as exc:  # a cache entry: whatever is wrong with it (truncated, garbage, other weights), retrain
        warn_ignored("checkpoint", path, exc, "a run trains the model again and saves it under this name, replacing "
                     "the file")
        return None


def warn_ignored(what: str, path: Path, exc: Exception, consequence: str) -> None:
    """The one-line warning for a cached file (checkpoint, training state) that cannot be trusted and is ignored."""
    reason = (str(exc).strip().splitlines() or [""])[0][:200]
    print(f"warning: ignoring {what} {path} ({type(exc).__name__}: {reason}); {consequence}", file=sys.stderr)


def write_atomically(path: Path, write: Callable[[Path], Any]) -> str:
    """write(a temporary path), then rename it to `path`: a write that is interrupted (Ctrl-C, SIGTERM) or fails (full
    disk) never leaves a partial file under the real name, and the file it replaces stays whole until the rename; two
    runs that write the same file leave one whole version. Returns the path."""
    path = Path(path)
    partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
    try:
        write(partial)
        os.replace(partial, path)
    except OSError as exc:  # name the file the user knows, not the temporary one
        exc.filename = str(path) if exc.filename in (str(partial), None) else exc.filename
        raise
    finally:
        partial.unlink(missing_ok=True)
    return str(path)


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed to exactly `path` (given a name, numpy appends .npz) and closed before it is renamed."""
    with Path(path).open("wb") as file:
        np.savez_compressed(file, **arrays)


def save_atomically(contents: dict, path: Path) -> None:
    """torch.save by write_atomically: an interrupted save never leaves a file the next run trusts."""
    write_atomically(path, functools.partial(torch.save, contents))


# What training writes at most at once: the saved training state (weights + SGD momentum, ~90 MB for ResNet-18), its
# temporary copy during a save, and the final checkpoint (~45 MB); with the figures and tables, 300 MB is ample.
TRAINING_DISK_BYTES = 300 * 2 ** 20


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """A full disk found before the work that would fill it, not after it (a UserError naming the folder)."""
    folder = next(p for p in [Path(folder), *Path(folder).parents] if p.exists())  # what will hold it
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise UserError(f"only {free / 2 ** 20:.0f} MB free in {folder}; {what} writes up to {needed / 2 ** 20:.0f} MB "
                        "there: free some space or pass another --output-dir")


def checkpoint_path(cfg: Config, device: torch.device, biased: bool, fingerprint: str) -> tuple[Path, str]:
    """output-dir/checkpoints/<standard|biased>-<key>.pt and its key (training_key); the training state of an
    unfinished training is the same path with .epoch.pt."""
    key = training_key(cfg.to_dict(), biased, fingerprint, training_precision(device, cfg.amp), device.type)
    return Path(cfg.output_dir) / "checkpoints" / f"{'biased' if biased else 'standard'}-{key}.pt", key


def train_or_load(cfg: Config, train: Split, test: Split, device: torch.device, biased: bool,
                  fingerprint: str, training: Callable[[], Any] | None = None) -> tuple[nn.Module, dict]:
    """Load output-dir/checkpoints/<name>-<key>.pt when it matches this configuration and data, else train (resuming
    from <name>-<key>.epoch.pt after an interruption) and save it, with the full configuration inside; `training()`,
    if given, is called when it turns out the model must be trained (run() records the stage)."""
    check_config(cfg, "train_or_load")  # and every argument, before a path is built from them ('cpu' was an
    device, biased = check_device("train_or_load", device), check_flag("train_or_load", "biased", biased)  # error there)
    train, test = check_split("train_or_load", "train", train, 1), check_split("train_or_load", "test", test, 1)
    if not isinstance(fingerprint, str) or not fingerprint:
        raise ValueError(f"train_or_load: fingerprint must be data_fingerprint(train, test), got {described(fingerprint)}")
    if training is not None and not callable(training):
        raise ValueError(f"train_or_load: training must be None or a function of no arguments, got {described(training)}")
    name = "biased" if biased else "standard"
    precision = training_precision(device, cfg.amp)
    path, key = checkpoint_path(cfg, device, biased, fingerprint)
    epoch_path = path.with_suffix(".epoch.pt")
    loaded = load_checkpoint(path, key, biased, device) if path.is_file() and not cfg.retrain else None
    if loaded is not None:
        model, saved = loaded
        if cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        epoch_path.unlink(missing_ok=True)  # a state left by a run killed between saving the model and removing it
        say(cfg, f"{name}: reusing checkpoint {path} (--retrain to train again)")
        return model.eval(), dict(history=saved["history"], train_seconds=saved["train_seconds"],
                                  checkpoint=str(path), reused_checkpoint=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    check_free_space(path.parent, TRAINING_DISK_BYTES, f"training the {name} model")
    for target in (path, epoch_path):  # found before training, which would end by failing to save there
        if target.is_dir():
            raise UserError(f"{target} is a folder where the {name} model's checkpoint goes; move it away")
    if training is not None:
        training()
    model, history = train_model(cfg, train, test, device, biased, name, epoch_path, key)
    seconds = sum(row["seconds"] for row in history)  # every epoch's, those before an interruption included
    save_atomically(dict(state_dict=model.state_dict(), history=history, train_seconds=seconds, key=key,
                         config=cfg.to_dict(), data_fingerprint=fingerprint, precision=precision,
                         device_type=device.type), path)
    epoch_path.unlink(missing_ok=True)
    return model, dict(history=history, train_seconds=seconds, checkpoint=str(path), reused_checkpoint=False)


#############################################
#                 Metrics                   #
#############################################

def per_class_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    check_logits_and_labels(logits, labels, "per_class_accuracy")
    if not len(labels):  # was {}, silently
        raise ValueError("per_class_accuracy: no images to score (logits [0, classes]); pass at least one")
    predictions = logits.argmax(1)
    return {name: (predictions[labels == c] == c).float().mean().item()
            for c, name in enumerate(CIFAR10_CLASSES) if (labels == c).any()}


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..L along dim 1 of [B, L], ties sharing their average rank (as scipy.stats.rankdata)."""
    check_tensor(values, 2, "[B, L] of values", "average_ranks", finite=True)  # NaN was ranked highest, silently
    b, length = values.shape
    sorted_values, order = values.sort(1)
    starts = torch.ones_like(sorted_values, dtype=torch.bool)
    starts[:, 1:] = sorted_values[:, 1:] != sorted_values[:, :-1]
    group = (starts.cumsum(1) - 1) + torch.arange(b, device=values.device)[:, None] * length  # unique per row
    position = torch.arange(1, length + 1, device=values.device, dtype=torch.float64).expand(b, length)
    sums = torch.zeros(b * length, device=values.device, dtype=torch.float64).index_add_(0, group.flatten(), position.flatten())
    counts = torch.zeros(b * length, device=values.device, dtype=torch.float64).index_add_(
        0, group.flatten(), torch.ones_like(position).flatten())
    mean_rank = (sums / counts.clamp_min(1))[group]
    return torch.empty_like(mean_rank).scatter_(1, order, mean_rank)


def spearman(maps_a: torch.Tensor, maps_b: torch.Tensor) -> torch.Tensor:
    """Per-image Spearman rank correlation of two sets of maps [B, H, W] -> [B] (float64).
    A constant map carries no ranking: its correlation is reported as 0."""
    check_tensor(maps_a, 3, "[B, H, W] of maps", "spearman", finite=True)
    check_tensor(maps_b, 3, "[B, H, W] of maps", "spearman", finite=True)
    if maps_a.shape != maps_b.shape:
        raise ValueError(f"spearman: the two sets of maps must have one shape, got {tuple(maps_a.shape)} and "
                         f"{tuple(maps_b.shape)}")
    if maps_a.shape[1] * maps_a.shape[2] == 0:  # no pixels, no ranking: was 0 under the constant-map rule
        raise ValueError(f"spearman: maps must have pixels, got shape {tuple(maps_a.shape)}")
    ra, rb = average_ranks(maps_a.flatten(1).double()), average_ranks(maps_b.flatten(1).double())
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    denominator = (ra.square().sum(1) * rb.square().sum(1)).sqrt()
    return torch.where(denominator > 0, (ra * rb).sum(1) / denominator.clamp_min(1e-300), torch.zeros_like(denominator))


def mean_with_ci(values: torch.Tensor, resamples: int = 1000, seed: int = 0) -> dict:
    """Mean over images with a percentile-bootstrap 95% interval (images resampled with replacement). One value gives
    a zero-width interval (nothing to resample): read `n` with it."""
    if not isinstance(values, torch.Tensor) or values.dim() != 1 or len(values) == 0 or values.is_complex():
        raise ValueError(f"mean_with_ci: values must be a non-empty 1-D tensor (one number per image), got "
                         f"{described(values)}")
    resamples, seed = check_resamples("mean_with_ci", resamples), check_seed("mean_with_ci", seed)
    if not bool(values.isfinite().all()):  # the mean and its interval would be NaN
        raise ValueError(f"mean_with_ci: values hold {int((~values.isfinite()).sum())} NaN or infinite value(s)")
    v = values.detach().double().cpu()
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(v), (resamples, len(v)), generator=generator)
    means = v[idx].mean(1)
    return dict(mean=v.mean().item(), ci95=[means.quantile(0.025).item(), means.quantile(0.975).item()], n=len(v))


def importance_order(maps: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Pixel indices [B, H*W] from most to least important; ties broken by a seeded random permutation
    (a plain stable sort would break them by position and favour the top-left corner)."""
    check_tensor(maps, 3, "[B, H, W] of maps", "importance_order", finite=True)
    seed, flat = check_seed("importance_order", seed), maps.flatten(1)
    shuffle = torch.randperm(flat.shape[1], generator=torch.Generator().manual_seed(seed)).to(maps.device)
    return shuffle[flat[:, shuffle].argsort(dim=1, descending=True, stable=True)]


@torch.inference_mode()
def deletion_insertion(model: nn.Module, images: torch.Tensor, classes: torch.Tensor, maps: torch.Tensor,
                       steps: int = 32, images_per_forward: int = 512, autocast: bool = False,
                       seed: int = 0) -> dict[str, torch.Tensor]:
    """Deletion and insertion curves (Petsiuk et al. 2018, RISE) and their areas, per image.

    Deletion: pixels, most important first, are replaced by the dataset mean (0 after normalisation) in
    `steps` equal steps; insertion: they are copied, most important first, onto a blurred copy of the image
    (Gaussian, kernel 11, sigma 5, as RISE). The curve is p(class) at the steps + 1 stages; the area is its
    trapezoidal integral over the fraction of pixels [0, 1]. Lower deletion and higher insertion are better."""
    from torchvision.transforms.functional import gaussian_blur
    check_images(check_model(model, "deletion_insertion"), images, "deletion_insertion")
    check_tensor(maps, 3, "[B, H, W] of maps, one per image", "deletion_insertion", finite=True)
    if maps.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f"deletion_insertion: maps {tuple(maps.shape)} must be one [H, W] map per image "
                         f"{tuple(images.shape)}")
    steps, images_per_forward = (check_count("deletion_insertion", name, value) for name, value in
                                 (("steps", steps), ("images_per_forward", images_per_forward)))
    autocast, seed = check_flag("deletion_insertion", "autocast", autocast), check_seed("deletion_insertion", seed)
    if classes is None:
        raise ValueError("deletion_insertion: classes must be given: the class each map explains, one per image (e.g. "
                         "the classes of method.explain(images))")
    with eval_mode(model):  # one image's logits: the number of classes to check the indices against
        logits = check_logits(model(images[:1]), 1, "deletion_insertion").float()
        classes = _as_class_tensor(classes, logits.expand(len(images), -1), "deletion_insertion")
    b, c, h, w = images.shape
    if steps > h * w:  # more steps than pixels repeat stages: the cost grows, the curve does not
        raise ValueError(f"deletion_insertion: steps must be 1..{h * w} (at most one per pixel of the {h}x{w} images), "
                         f"got {steps}")
    order = importance_order(maps, seed)
    position = torch.empty_like(order).scatter_(1, order, torch.arange(h * w, device=images.device).expand(b, -1))
    counts = torch.round(torch.linspace(0, h * w, steps + 1, device=images.device)).long()
    blurred = gaussian_blur(images, kernel_size=[11, 11], sigma=[5.0, 5.0])
    curves = {"deletion": [], "insertion": []}
    per_forward = forward_batch(images_per_forward, images.device)
    per_chunk = max(1, per_forward // (2 * (steps + 1)))  # images whose 2 (steps + 1) stages fit one forward pass
    with eval_mode(model):
        for start in range(0, b, per_chunk):
            x, x_blur = images[start:start + per_chunk], blurred[start:start + per_chunk]
            chosen = (position[start:start + per_chunk, None, :] < counts[None, :, None]).view(len(x), steps + 1, 1, h, w)
            deleted = torch.where(chosen, torch.zeros((), device=x.device, dtype=x.dtype), x[:, None])
            inserted = torch.where(chosen, x[:, None], x_blur[:, None])
            batch = torch.cat([deleted, inserted]).flatten(0, 1)
            with autocast_for(images.device, autocast):  # at most per_forward stages per pass, also for one image
                logits = torch.cat([model(part).float() for part in batch.split(per_forward)])
            probs = logits.softmax(1).view(2, len(x), steps + 1, -1)
            target = classes[start:start + per_chunk].view(1, -1, 1, 1).expand(2, -1, steps + 1, 1)
            p = probs.gather(3, target)[..., 0]
            curves["deletion"].append(p[0])
            curves["insertion"].append(p[1])
    out = {}
    for name, parts in curves.items():
        curve = torch.cat(parts)                                     # [B, steps + 1]
        out[f"{name}_curve"] = curve
        out[f"{name}_auc"] = (curve[:, 1:] + curve[:, :-1]).sum(1) / (2 * steps)
    return out


def gaussian_prior(batch: int, height: int, width: int, sigma: float, device) -> torch.Tensor:
    """The centred-Gaussian baseline map: 'objects are in the middle'."""
    batch, height, width = (check_count("gaussian_prior", name, value) for name, value in
                            (("batch", batch), ("height", height), ("width", width)))
    sigma = check_number("gaussian_prior", "sigma (pixels)", sigma, 0, above=True)  # np.float32 is a number too
    device = check_device("gaussian_prior", device)
    y = torch.arange(height, device=device, dtype=torch.float32) - (height - 1) / 2
    x = torch.arange(width, device=device, dtype=torch.float32) - (width - 1) / 2
    g = torch.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma ** 2))
    return g.expand(batch, height, width)


def check_maps_and_mask(maps: Any, mask: Any, who: str) -> None:
    """A ValueError naming `who` unless maps are floats [B, H, W] and mask a bool [H, W] or [K, H, W] of their size."""
    check_tensor(maps, 3, "[B, H, W] of maps", who, finite=True)
    if maps.device.type == "meta" or isinstance(mask, torch.Tensor) and mask.device.type == "meta":
        raise ValueError(f"{who}: maps and mask must hold values, got a tensor on the meta device")
    if not (isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and mask.dim() in (2, 3)
            and mask.shape[-2:] == maps.shape[-2:]):
        raise ValueError(f"{who}: mask must be a bool tensor [H, W] or [K, H, W] of the maps' size "
                         f"{tuple(maps.shape[-2:])} (e.g. artifact_mask(square)), got {described(mask)}")
    empty = (~mask.flatten(-2).any(-1)).nonzero().flatten().tolist() if mask.dim() == 3 else [] if mask.any() else [0]
    if empty:  # nothing to point at or to hold mass: always a caller's slip, and every map would score a miss or 0
        raise ValueError(f"{who}: the mask selects no pixel" + (f" (masks {empty} of {len(mask)})" if mask.dim() == 3
                                                                  else "") + "; pass the square's pixels, e.g. "
                         "artifact_mask(square)")


def check_non_negative(maps: torch.Tensor, who: str) -> None:
    """A ValueError naming `who` when a map has a negative value: mass shares and distributions need maps >= 0."""
    if maps.device.type != "meta" and bool((maps < 0).any()):
        raise ValueError(f"{who}: maps must be non-negative (a CAM after its ReLU, a saliency), got a minimum of "
                         f"{maps.min().item():.3g}")


def artifact_attention_share(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fraction of each non-negative map's mass [B, H, W] inside the square's pixels (mask [H, W] -> [B]; a stack of
    masks [K, H, W] -> [B, K]); 0 for an all-zero map. A map that ignores the square scores about the area prior
    mask.mean()."""
    check_maps_and_mask(maps, mask, "artifact_attention_share")
    mask = mask.to(maps.device)
    check_non_negative(maps, "artifact_attention_share")
    maps = maps.float() if maps.dtype in (torch.float16, torch.bfloat16) else maps  # an fp16 sum overflows at 65504
    total = maps.flatten(1).sum(1)[:, None]
    inside = (maps[:, None] * mask.view(-1, *mask.shape[-2:])).flatten(2).sum(2)
    share = torch.where(total > 0, inside / total.clamp_min(torch.finfo(maps.dtype).tiny), torch.zeros_like(inside))
    return share if mask.dim() == 3 else share[:, 0]


def dilate(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """The mask [H, W] (or each of [K, H, W]) grown by `pixels` in every direction (Chebyshev distance)."""
    pixels = check_count("dilate", "pixels", pixels, low=0)
    if not (isinstance(mask, torch.Tensor) and mask.dtype == torch.bool and mask.dim() in (2, 3)):
        raise ValueError(f"dilate: mask must be a bool tensor [H, W] or [K, H, W] (e.g. artifact_mask(square)), got "
                         f"{described(mask)}")
    if pixels == 0:
        return mask
    grown = F.max_pool2d(mask.view(-1, 1, *mask.shape[-2:]).float(), 2 * pixels + 1, stride=1, padding=pixels)
    return grown.view(mask.shape) > 0


def pointing_game(maps: torch.Tensor, mask: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Per map [B, H, W]: True when a maximum of the map lies within `tolerance` pixels of the mask's region (mask
    [H, W] -> [B]; a stack of masks [K, H, W] -> [B, K]). A constant map (e.g. all zero) points nowhere: a miss."""
    check_maps_and_mask(maps, mask, "pointing_game")
    if maps.dtype in (torch.float16, torch.bfloat16):  # 8 or 11 bits: many pixels tie at the maximum, each tie a hit
        raise ValueError(f"pointing_game: maps must be float32 or float64, got {maps.dtype} (its rounding ties many "
                         "pixels at the maximum, and any tied pixel by the square counts as a hit); compute them in fp32")
    tolerance = check_count("pointing_game", "tolerance", tolerance, low=0)
    regions = dilate(mask, tolerance).reshape(-1, mask.shape[-2] * mask.shape[-1])
    flat = maps.flatten(1)
    top = flat.max(1).values[:, None]
    inside = torch.where(regions.to(flat.device), flat[:, None], flat.new_tensor(-math.inf)).amax(2)
    hit = (inside >= top) & (top > flat.min(1).values[:, None])
    return hit if mask.dim() == 3 else hit[:, 0]


def evaluate_model(model: nn.Module, cfg: Config, test: Split) -> tuple[dict, dict[str, torch.Tensor]]:
    """Clean accuracy (overall, per class), the target class's recall with and without the square, and the
    shortcut rate: the share of other-class test images called the target class once stamped (and clean).
    Also returns the clean and stamped logits, so later steps need no second pass over the test set. In fp32 whatever
    --amp says: the examples later picked as "correctly classified" from these logits are then exactly the ones the
    fp32 explanations and their captions call correct."""
    check_config(cfg, "evaluate_model")
    test = check_split("evaluate_model", "test", test, min_images=1)  # before two passes over the images
    bar = "evaluate: {}" if cfg.progress else ""
    clean = predict_logits(model, test.images, cfg.eval_batch_size, False, cfg.channels_last,  # fp32, as the maps
                           progress=bar.format("clean"))
    stamped = predict_logits(model, test.images, cfg.eval_batch_size, False, cfg.channels_last, cfg.square,
                             bar.format("stamped"))
    target, frogs = cfg.artifact_class, test.labels == cfg.artifact_class
    metrics = dict(test_accuracy=accuracy(clean, test.labels),
                   per_class_accuracy=per_class_accuracy(clean, test.labels),
                   frog_recall_clean=called_share(clean[frogs], target),
                   frog_recall_stamped=called_share(stamped[frogs], target),
                   shortcut_rate_clean=called_share(clean[~frogs], target),
                   shortcut_rate_stamped=called_share(stamped[~frogs], target))
    return metrics, dict(clean=clean, stamped=stamped)


def called_share(logits: torch.Tensor, target: int) -> float:
    """Share of the images whose prediction is `target`."""
    check_tensor(logits, 2, "[N, classes] of logits", "called_share", finite=True)
    target = check_class_index("called_share", "target", target, logits.shape[1])
    if len(logits) == 0:  # the share of nothing is NaN
        raise ValueError("called_share: logits hold no image (e.g. the test split has none of a group); a share needs "
                         "at least one")
    return (logits.argmax(1) == target).float().mean().item()


def correct_first(indices: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
    """The indices, correctly classified ones first, each part in its given order: the one rule by which every
    sample of examples is made (misclassified ones only fill up when too few are correct)."""
    if not (isinstance(correct, torch.Tensor) and correct.dtype == torch.bool and correct.dim() == 1
            and isinstance(indices, torch.Tensor) and indices.dim() == 1 and not indices.is_floating_point()):
        raise ValueError(f"correct_first: expects integer indices [K] and a bool mask [N] (logits.argmax(1) == labels), "
                         f"got {described(indices)} and {described(correct)}")  # a 0/1 int mask indexes, not masks
    if len(indices) and not 0 <= int(indices.min()) <= int(indices.max()) < len(correct):  # torch's IndexError
        raise ValueError(f"correct_first: indices must be positions 0..{len(correct) - 1} of the mask [N] (one entry per "
                         f"image), got {described(indices)}")
    return torch.cat([indices[correct[indices]], indices[~correct[indices]]])


def pick_examples(labels: torch.Tensor, classes: Iterable[int], k: int,
                  logits: torch.Tensor | None = None) -> torch.Tensor:
    """Indices of k test images of each class, in test-set order: with logits, correct_first (figures of a barely
    trained model then show errors, with captions that say so, rather than nothing); without, simply the first k."""
    k, classes = check_count("pick_examples", "k", k, low=0), list(classes)
    check_labels("pick_examples", labels)
    if logits is not None:
        check_logits_and_labels(logits, labels, "pick_examples")
    for c in classes:  # a class no label has gave an empty pick, silently
        check_class_index("pick_examples", "classes", c, len(CIFAR10_CLASSES))
    correct = logits.argmax(1) == labels if logits is not None else torch.ones_like(labels, dtype=torch.bool)
    return torch.cat([correct_first(torch.nonzero(labels == c).flatten(), correct)[:k] for c in classes])


# The shortcut audit. Its question, per method and layer: does the map of the target class move to the square exactly
# where the model uses the square? The same seeded images are explained without the square and with it at each corner
# in turn, by the standard model, the biased model and a control (the biased model with fc and layer4 re-initialised),
# and every map is scored at every corner. The estimand, per image and corner c: delta_c = score of the map with the
# square at c, scored at c, minus score of the clean map at c (paired: a map's default location cancels out).

AUDIT_MODELS = ("standard", "biased", "control")
AUDIT_CONDITIONS = ("none", *CORNERS)  # the same images without the square, then with it at each corner
# point_px: a maximum within --pointing-tolerance px of the square; point_cell / point_near_cell: the cell of the
# method's native grid with the most mass is one the square touches / within one cell of those; share: mass inside it.
AUDIT_MEASURES = ("point_px", "point_cell", "point_near_cell", "share")
CHANCE_SAMPLES = 4000  # random maps per method for the simulated chance levels


def audit_groups(labels: torch.Tensor, target: int, n: int, seed: int,
                 num_classes: int = len(CIFAR10_CLASSES)) -> dict[str, torch.Tensor]:
    """Seeded audit images: up to n of the target class ('frogs'), and n drawn evenly from the other classes
    ('nonfrogs': n // (classes - 1) each, one more for the first remainder classes), interleaved class by class so
    that every prefix (e.g. the occlusion subset) is stratified too."""
    num_classes, n = check_count("audit_groups", "num_classes", num_classes, 2), check_count("audit_groups", "n", n)
    target = check_class_index("audit_groups", "target", target, num_classes)
    check_labels("audit_groups", labels)
    generator = torch.Generator().manual_seed(check_seed("audit_groups", seed))
    others = [c for c in range(num_classes) if c != target]
    quotas = {target: n, **{c: n // len(others) + (1 if i < n % len(others) else 0) for i, c in enumerate(others)}}
    picked = {}
    for c, quota in quotas.items():
        pool = torch.nonzero(labels.cpu() == c).flatten()
        picked[c] = pool[torch.randperm(len(pool), generator=generator)[:quota]].sort().values
    rounds = [picked[c][i:i + 1] for i in range(max(len(picked[c]) for c in others)) for c in others]
    return dict(frogs=picked[target].to(labels.device), nonfrogs=torch.cat(rounds).to(labels.device))


def corner_masks(size: int, height: int = 32, width: int = 32, device: torch.device | str = "cpu") -> torch.Tensor:
    """Boolean [4, H, W]: the square's pixels at each of the CORNERS."""
    check_square(Square(size), height, width, "corner_masks")
    device = check_device("corner_masks", device)
    return torch.stack([artifact_mask(Square(size, (0, 0, 0), corner), height, width, device) for corner in CORNERS])


def similarity(maps_a: torch.Tensor, maps_b: torch.Tensor) -> torch.Tensor:
    """SIM, the histogram intersection of two non-negative maps [B, H, W] as distributions (Swain & Ballard 1991;
    Bylinskii et al. 2019): sum_i min(p_i, q_i) -> [B] in [0, 1]; 1 = the same distribution, 0 = disjoint. A map with no
    mass (all zero: no evidence anywhere) carries no location and counts as the uniform distribution."""
    for maps in (maps_a, maps_b):
        check_tensor(maps, 3, "[B, H, W] of maps", "similarity", finite=True)
        check_non_negative(maps, "similarity")
    if maps_a.shape != maps_b.shape:
        raise ValueError(f"similarity: both sets of maps must have one shape, got {tuple(maps_a.shape)} and "
                         f"{tuple(maps_b.shape)}")

    def distribution(maps: torch.Tensor) -> torch.Tensor:
        flat = maps.flatten(1).double()
        total = flat.sum(1, keepdim=True)
        return torch.where(total > 0, flat / total.clamp_min(torch.finfo(flat.dtype).tiny), 1.0 / flat.shape[1])
    return torch.minimum(distribution(maps_a), distribution(maps_b)).sum(1)


def method_layer(key: str) -> tuple[str, str]:
    """An audited map's key -> (method, layer): 'Grad-CAM@layer3' -> ('Grad-CAM', 'layer3'); '-' for no layer."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"method_layer: key must be a method label such as 'Grad-CAM@layer3', got {described(key)}")
    method, _, layer = key.partition("@")
    return method, layer or "-"


def native_cell(key: str, grids: dict[str, tuple[int, int]], occlusion_stride: int, height: int = 32) -> int:
    """Side (pixels) of one cell of the method's native grid: a CAM's layer grid (4 px at layer3, 8 px at layer4 on
    32x32 inputs), occlusion's stride, one pixel for Guided Backprop and Guided Grad-CAM (a per-pixel product)."""
    method, layer = method_layer(key)
    if method == "Occlusion":
        return check_count("native_cell", "occlusion_stride", occlusion_stride)
    if method.startswith("Guided"):
        return 1
    rows = grids.get(layer, (0,))[0] if isinstance(grids, dict) else 0
    if layer not in grids or not isinstance(rows, (int, np.integer)) or not 1 <= rows <= height:
        raise ValueError(f"native_cell: {key} needs its layer's grid (1..{height} rows, e.g. feature_size(model, layer)) "
                         f"in grids, got {grids.get(layer) if isinstance(grids, dict) else described(grids)!r}")
    return height // int(rows)


def cell_pointing(maps: torch.Tensor, mask: torch.Tensor, cell: int, near: bool) -> torch.Tensor:
    """Per map [B, H, W] on a grid of cell x cell pixels: is the peak cell one the mask touches (near: within one cell
    of one)? A cell's value is the map at its centre (the mean of the 2x2 pixels there: a CAM's native value up to
    1/16 of its neighbours'), so a CAM's peak one 8x8 cell inward of a 6x6 square is 'near', not 'on'."""
    check_maps_and_mask(maps, mask, "cell_pointing")
    cell = check_count("cell_pointing", "cell", cell)
    if cell > min(maps.shape[-2:]):  # pooling left no cell, and the refusal named pointing_game
        raise ValueError(f"cell_pointing: cell must be 1..{min(maps.shape[-2:])} pixels (the maps' side), got {cell}")
    lo, hi = (cell - 1) // 2, cell // 2
    pooled = (maps[:, lo::cell, lo::cell] + maps[:, hi::cell, hi::cell] + maps[:, lo::cell, hi::cell]
              + maps[:, hi::cell, lo::cell]) / 4
    touched = F.max_pool2d(mask.view(-1, 1, *mask.shape[-2:]).float(), cell, ceil_mode=True) > 0
    return pointing_game(pooled, touched.view(*mask.shape[:-2], *touched.shape[-2:]), 1 if near else 0)


def score_at_corners(maps: torch.Tensor, masks: torch.Tensor, tolerance: int, cell: int) -> dict[str, torch.Tensor]:
    """Each AUDIT_MEASURE of non-negative maps [B, H, W] against the square at each corner (masks [4, H, W]) -> [B, 4]
    float64. Pointing counts a constant map as a miss; share of an all-zero map is 0."""
    cell = check_count("score_at_corners", "cell", cell)
    return {measure: scores.double() for measure, scores in dict(
        point_px=pointing_game(maps, masks, tolerance), point_cell=cell_pointing(maps, masks, cell, False),
        point_near_cell=cell_pointing(maps, masks, cell, True), share=artifact_attention_share(maps, masks)).items()}


def method_baselines(model: nn.Module, key: str, masks: torch.Tensor, tolerance: int, cell: int,
                     occlusion: tuple[int, int], seed: int) -> dict[str, dict[str, float]]:
    """Per AUDIT_MEASURE, computed at the method's native resolution through its own upsampling: `chance`, the mean
    score of random maps (uniform values on the native grid: a CAM's layer grid, occlusion's windows, pixels; Guided
    Grad-CAM: random guided gradients times a random CAM), and `ceiling`, the best any map of that resolution can
    score (the best single native unit: share is a ratio of linear functions, so its maximum is at a unit)."""
    cell = check_count("method_baselines", "cell", cell)
    generator = torch.Generator().manual_seed(check_seed("method_baselines", seed))
    method, layer = method_layer(key)
    masks = masks.cpu()
    height, width = masks.shape[-2:]
    if method == "Occlusion":
        windows = occlusion_windows(height, width, *occlusion)
        units = occlusion_map(torch.eye(len(windows)), windows)
    elif layer != "-" and method != "Guided Grad-CAM":
        h, w = feature_size(model, layer, height, width)
        units = cam_upsample(torch.eye(h * w).view(-1, h, w), (height, width))
    else:
        units = torch.eye(height * width).view(-1, height, width)
    random_maps = (torch.rand(CHANCE_SAMPLES, len(units), generator=generator) @ units.flatten(1)).view(-1, height, width)
    if method == "Guided Grad-CAM":
        h, w = feature_size(model, layer, height, width)
        cams = minmax_normalize(cam_upsample(torch.rand(CHANCE_SAMPLES, h, w, generator=generator), (height, width)))
        random_maps = guided_grad_cam(torch.rand(CHANCE_SAMPLES, 3, height, width, generator=generator) * 2 - 1, cams)
    chance = score_at_corners(random_maps, masks, tolerance, cell)
    best = score_at_corners(units, masks, tolerance, cell)
    return {m: dict(chance=chance[m].mean().item(), ceiling=best[m].amax(0).mean().item()) for m in AUDIT_MEASURES}


def audit_baselines(model: nn.Module, cells: dict[str, int], masks: torch.Tensor, tolerance: int,
                    occlusion: tuple[int, int], seed: int) -> list[dict]:
    """One record per audited method (key -> its native cell) with every measure's chance and ceiling
    (method_baselines). They depend on the method's resolution only (layer grids, occlusion's windows), not on weights,
    so every gradient CAM at one layer shares one simulation (the same samples: identical numbers)."""
    seed = check_seed("audit_baselines", seed)
    cells = {key: check_count("audit_baselines", f"the cell of {key}", cell) for key, cell in dict(cells).items()}
    simulated: dict[tuple, dict] = {}
    rows = []
    for key, cell in cells.items():
        method, layer = method_layer(key)
        kind = (method if method.startswith("Guided") or method == "Occlusion" else "CAM", layer, cell)
        if kind not in simulated:
            simulated[kind] = method_baselines(model, key, masks, tolerance, cell, occlusion, seed)
        rows.append(dict(method=method, layer=layer, cell_px=cell, **{
            f"{measure}_{name}": value for measure, levels in simulated[kind].items() for name, value in levels.items()}))
    return rows


def audit_maps(model: nn.Module, images: torch.Tensor, target: int, layers: Sequence[str], batch_size: int,
               occlusion: Occlusion | None, occlusion_images: int, methods: Sequence[str] = ("GradCAM",),
               scorecam_images: int = 0, forward_amp: bool = False) -> dict[str, torch.Tensor]:
    """Every audited method's non-negative map [B, H, W] of class `target` for normalised images: Guided Backprop
    (saliency); at each layer the raw maps of every CAM in `methods` (Score-CAM of the first `scorecam_images` images)
    and Guided Grad-CAM; and the occlusion drop (positive part) of the first `occlusion_images` images."""
    classes = torch.full((len(images),), target, device=images.device)
    grads = batched(GuidedBackprop(model).gradients, images, classes, batch_size).float()
    maps = {"Guided Backprop": saliency(grads)}
    for layer in layers:
        raw = cam_maps(model, images, classes, layer, methods, batch_size, scorecam_images, False, forward_amp)
        score_cam = raw.pop(ScoreCAM.label, None)  # after Guided Grad-CAM in the tables and figures
        maps.update({f"{label}@{layer}": m for label, m in raw.items()})
        maps[f"Guided Grad-CAM@{layer}"] = guided_grad_cam(grads, minmax_normalize(raw["Grad-CAM"]))
        if score_cam is not None:
            maps[f"{ScoreCAM.label}@{layer}"] = score_cam
    if occlusion is not None and occlusion_images > 0:
        maps["Occlusion"] = occlusion(images[:occlusion_images], classes[:occlusion_images]).clamp_min(0)
    return maps


def shortcut_audit(models: dict[str, nn.Module], cfg: Config, test: Split) -> tuple[dict, dict[str, np.ndarray]]:
    """Explain `target` on the audit groups (audit_groups) without the square and with it at each corner, for each model
    of AUDIT_MODELS and every method of audit_maps; score every map at every corner (score_at_corners). Returns the
    summary (audit_summary: records, predictions, verdicts) with each method's chance and ceiling and the Milestone 2
    hotspot check, and the per-image arrays it is computed from (audit_per_image.npz): scores/<model>/<method>/<layer>/
    <group>/clean/<measure> [B, 4] (the clean map at each corner), .../stamped/<measure> [B, 4] (column k: the map with
    the square at corner k, scored there), p_target/<model>/<group> [B, 5] (p(target), clean then each corner), and
    maps/<model>/<method>/<layer>/<group>/<condition> of each group's first image (the figures draw these)."""
    check_config(cfg, "shortcut_audit")
    from tqdm.auto import tqdm
    device, target, tolerance = test.images.device, cfg.artifact_class, cfg.pointing_tolerance
    masks = corner_masks(cfg.artifact_size, device=device)
    groups = audit_groups(test.labels, target, cfg.audit_images, cfg.seed)
    occlusion_setting = (cfg.occlusion_patch, cfg.occlusion_stride)
    grids = {layer: feature_size(models["standard"], layer) for layer in cfg.audit_layer_names}
    shown = cfg.audit_layer_names[0]  # the layer of the example maps and of the hotspot check
    per_image: dict[str, np.ndarray] = {f"indices/{g}": idx.cpu().numpy() for g, idx in groups.items()}
    hotspot: dict[str, torch.Tensor] = {}
    cells = {}
    bar = tqdm(total=len(groups) * len(models) * len(AUDIT_CONDITIONS), desc="audit", leave=False,
               disable=not cfg.progress)
    for group, idx in groups.items():
        for name, model in models.items():
            probabilities = []
            occlusion = Occlusion(model, *occlusion_setting, cfg.eval_batch_size, cfg.forward_amp)
            bar.set_description(f"audit: {group}, {name} model")
            for condition in AUDIT_CONDITIONS:
                images = test.images[idx]
                if condition != "none":
                    images = stamp_square(images, cfg.square._replace(corner=condition))
                probabilities.append(predict_logits(model, images, cfg.eval_batch_size, False,
                                                    cfg.channels_last).softmax(1)[:, target])
                maps = audit_maps(model, normalize(images, cfg.channels_last), target, cfg.audit_layer_names,
                                  cfg.eval_batch_size, occlusion, cfg.audit_occlusion_images, cfg.method_names,
                                  cfg.audit_scorecam_images, cfg.forward_amp)
                for key, m in maps.items():
                    method, layer = method_layer(key)
                    cells[key] = native_cell(key, grids, cfg.occlusion_stride)
                    scored = score_at_corners(m, masks, tolerance, cells[key])
                    for measure, values in scored.items():
                        path = f"scores/{name}/{method}/{layer}/{group}/"
                        if condition == "none":
                            per_image[path + f"clean/{measure}"] = values.float().cpu().numpy()
                        else:
                            k = CORNERS.index(condition)
                            column = per_image.setdefault(path + f"stamped/{measure}", np.zeros(values.shape, np.float32))
                            column[:, k] = values[:, k].cpu().numpy()
                    if layer in ("-", shown):
                        per_image[f"maps/{name}/{method}/{layer}/{group}/{condition}"] = m[0].half().cpu().numpy()
                    if (group, condition, key) == ("frogs", cfg.artifact_corner, f"Grad-CAM@{shown}"):
                        hotspot[name] = m
                bar.update()
            per_image[f"p_target/{name}/{group}"] = torch.stack(probabilities, 1).cpu().numpy()
    bar.close()
    report = dict(explained_class=CIFAR10_CLASSES[target], trained_corner=cfg.artifact_corner,
                  pointing_tolerance_px=tolerance, area_prior=masks[0].float().mean().item(),
                  groups={g: dict(images=len(idx), per_class={CIFAR10_CLASSES[c]: int((test.labels[idx] == c).sum())
                                                              for c in test.labels[idx].unique().tolist()})
                          for g, idx in groups.items()},
                  occlusion=dict(images={g: min(cfg.audit_occlusion_images, len(idx)) for g, idx in groups.items()},
                                 patch=cfg.occlusion_patch, stride=cfg.occlusion_stride),
                  scorecam_images={g: min(cfg.audit_scorecam_images, len(idx)) if "ScoreCAM" in cfg.method_names else 0
                                   for g, idx in groups.items()},
                  baselines=audit_baselines(models["standard"], cells, masks, tolerance, occlusion_setting, cfg.seed),
                  hotspot=hotspot_check(hotspot, masks[CORNERS.index(cfg.artifact_corner)],
                                                             tolerance, cfg.bootstrap_resamples, cfg.seed),
                  **audit_summary(per_image, cfg.bootstrap_resamples, cfg.seed))
    return report, per_image


def hotspot_check(maps: dict[str, torch.Tensor], mask: torch.Tensor, tolerance: int, resamples: int, seed: int) -> dict:
    """Milestone 2's prediction for stamped frogs (the square at its trained corner), from Grad-CAM maps of the same
    images by the standard and the biased model: does each hotspot sit by the square (a maximum within `tolerance` px),
    and does the biased model's follow the object? Its SIM with the standard model's map of the same image (whose
    hotspot follows the frog) minus its SIM with the standard model's map of another image (the next one): about 0
    when the biased hotspot carries nothing of where the object is."""
    if not isinstance(maps, dict) or not {"biased", "standard"} <= set(maps):
        raise ValueError(f"hotspot_check: maps must be a dict with 'biased' and 'standard' maps of the same images, got "
                         f"{sorted(maps) if isinstance(maps, dict) else described(maps)}")
    tolerance = check_count("hotspot_check", "tolerance", tolerance, low=0)  # named here, not in pointing_game
    resamples, seed = check_resamples("hotspot_check", resamples), check_seed("hotspot_check", seed)
    if len(maps["biased"]) < 2:  # the SIM with another image needs a second one
        return {}
    biased, standard = maps["biased"], maps["standard"]
    matched, shuffled = similarity(biased, standard), similarity(biased, standard.roll(1, 0))
    near = {name: mean_with_ci(pointing_game(m, mask, tolerance).double(), resamples, seed) for name, m in maps.items()}
    return dict(images=len(biased), near_square=near, sim_same_image=mean_with_ci(matched, resamples, seed),
                sim_other_image=mean_with_ci(shuffled, resamples, seed),
                sim_same_minus_other=mean_with_ci(matched - shuffled, resamples, seed))


# The verdict rule, fixed before the data it decides (see the README): a method reveals the shortcut when its map moves
# to the square wherever the model uses the square (reveals), stays where the model ignores it (selective), and stays
# where the standard model and the control ignore it at the corner the biased model uses (specific). Measured by the
# mean paired delta of VERDICT_MEASURE over images with its bootstrap 95% interval, against VERDICT_MARGIN: the interval
# entirely above the margin = moves, entirely below = stays, otherwise unclear. A corner counts as used by a model when
# the interval of its mean change of p(target) (square there minus clean) lies above the margin, ignored when below.
VERDICT_MEASURE = "point_px"
VERDICT_MARGIN = 0.2


def audit_summary(per_image: dict[str, np.ndarray], resamples: int, seed: int) -> dict:
    """Tidy records from the per-image arrays of shortcut_audit: `predictions`, one per (model, group, corner) with
    p(target) stamped and clean and the model's use of the square (their paired difference); `records`, one per
    (model, method, layer, group, corner, measure) with the stamped and clean levels and delta = stamped - clean (mean,
    paired bootstrap 95% interval); and `verdicts` (verdict_of) per (method, layer, group)."""
    resamples, seed = check_resamples("audit_summary", resamples), check_seed("audit_summary", seed)
    check_audit_arrays(per_image, "audit_summary")
    if not any(str(k).startswith("scores/") for k in per_image):  # {} gave an empty summary, silently
        raise ValueError("audit_summary: per_image holds no scores/... arrays (dict(np.load('audit_per_image.npz')) of "
                         "a run's shortcut audit)")
    predictions, records = [], []
    for key, values in per_image.items():
        parts = key.split("/")
        if parts[0] == "p_target":
            p = torch.from_numpy(values).double()
            predictions += [dict(model=parts[1], group=parts[2], corner=c, n=len(p), p_stamped=p[:, k + 1].mean().item(),
                                 p_clean=p[:, 0].mean().item(), use=mean_with_ci(p[:, k + 1] - p[:, 0], resamples, seed))
                            for k, c in enumerate(CORNERS)]
        elif parts[0] == "scores" and parts[5] == "stamped":
            stamped = torch.from_numpy(values).double()
            clean = torch.from_numpy(per_image[key.replace("/stamped/", "/clean/")]).double()
            records += [dict(model=parts[1], method=parts[2], layer=parts[3], group=parts[4], corner=c, measure=parts[6],
                             n=len(stamped), stamped=stamped[:, k].mean().item(), clean=clean[:, k].mean().item(),
                             delta=mean_with_ci(stamped[:, k] - clean[:, k], resamples, seed))
                        for k, c in enumerate(CORNERS)]
    return dict(predictions=predictions, records=records, verdicts=verdict_of(records, predictions))


def check_audit_arrays(per_image: Any, who: str) -> None:
    """A ValueError naming `who` and the array unless `per_image` is what shortcut_audit writes (audit_per_image.npz):
    p_target/<model>/<group> [N, 1 + corners] and scores/<model>/<method>/<layer>/<group>/<stamped|clean>/<measure>
    [N, corners], finite, each stamped array with its clean twin of the same shape, and every model and group that has
    scores with its p_target (a verdict read without it would silently lose that model's use of the square)."""
    if not isinstance(per_image, dict):
        raise ValueError(f"{who}: per_image must be a dict of arrays (dict(np.load('audit_per_image.npz'))), got "
                         f"{described(per_image)}")
    groups = set()
    for key, values in per_image.items():
        parts, kind = str(key).split("/"), str(key).split("/")[0]
        if kind not in ("p_target", "scores"):
            continue
        shape = (None, len(CORNERS) + (kind == "p_target"))
        expected = (f"p_target/<model>/<group> [N, {shape[1]}]" if kind == "p_target" else
                    f"scores/<model>/<method>/<layer>/<group>/<stamped|clean>/<measure> [N, {shape[1]}]")
        values = np.asarray(values)
        if not np.issubdtype(values.dtype, np.number):  # bool or text: no version wrote that, so not "an older run's"
            raise ValueError(f"{who}: {key} must hold numbers (probabilities or scores), got {values.dtype}; pass the "
                             "arrays shortcut_audit wrote, unchanged")
        if len(parts) != (3 if kind == "p_target" else 7) or (kind == "scores" and parts[5] not in ("stamped", "clean")) \
                or values.ndim != 2 or values.shape[1] != shape[1] or not np.issubdtype(values.dtype, np.number):
            raise ValueError(f"{who}: {key} must be {expected}, got {values.dtype} of shape {values.shape} (an older "
                             "run's file? rerun the audit with this version)")
        if not np.isfinite(values).all():
            raise ValueError(f"{who}: {key} holds {int((~np.isfinite(values)).sum())} NaN or infinite value(s)")
        if kind == "scores":
            groups.add((parts[1], parts[4]))
    for key in (k for k in per_image if str(k).startswith("scores/")):  # each array alone is sound: now the pairs
        parts = key.split("/")
        twin = "/".join([*parts[:5], "clean" if parts[5] == "stamped" else "stamped", parts[6]])
        if twin not in per_image or np.shape(per_image[twin]) != np.shape(per_image[key]):
            raise ValueError(f"{who}: {key} needs {twin} of the same shape {np.shape(per_image[key])} (stamped and "
                             f"clean are paired per image), got {np.shape(per_image[twin]) if twin in per_image else 'none'}")
    missing = sorted(f"p_target/{model}/{group}" for model, group in groups if f"p_target/{model}/{group}" not in per_image)
    if missing:
        raise ValueError(f"{who}: per_image lacks {', '.join(missing)} (each model and group with scores needs its "
                         "p(target), clean then at each corner)")


def check_interval(ci95: Any, who: str) -> None:
    """A ValueError naming `who` unless `ci95` is [low, high]: two numbers, low <= high."""
    if not (isinstance(ci95, (Sequence, np.ndarray)) and len(ci95) == 2 and all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in ci95)
            and ci95[0] <= ci95[1]):
        raise ValueError(f"{who}: each interval must be [low, high], got {described(ci95)}")


def interval_side(ci95: Sequence[float], margin: float = VERDICT_MARGIN) -> str:
    """'above' / 'below' the margin when the whole interval is, else 'unclear'."""
    check_interval(ci95, "interval_side")
    margin = check_number("interval_side", "margin", margin)
    return "above" if ci95[0] > margin else "below" if ci95[1] < margin else "unclear"


def judged_interval(summary: dict) -> Sequence[float]:
    """The interval the verdict rule reads from a mean_with_ci summary: its ci95, or (-inf, inf), which lies on no side
    of any margin, when it holds one image (its zero-width "interval" would be judged as if one value were certain)."""
    if not (isinstance(summary, dict) and {"ci95", "n"} <= summary.keys()):  # {} was a raw KeyError
        raise ValueError(f"judged_interval: summary must be a mean_with_ci result (with 'ci95' and 'n'), got "
                         f"{described(summary)}")
    return summary["ci95"] if summary["n"] >= 2 else (-math.inf, math.inf)


def judge(intervals: Sequence[Sequence[float]], should: str) -> str:
    """'pass' when every interval lies on the side it `should` ('above': the map moves; 'below': it stays), 'fail' when
    one lies wholly on the other side, 'unclear' otherwise, 'n/a' for none (intersection-union: every cell must pass,
    so no multiplicity correction is needed)."""
    if should not in ("above", "below"):
        raise ValueError(f"judge: should must be 'above' or 'below', got {should!r}")
    for ci in intervals:  # [0.5, 0.1] read as lying above 0.2 although [0.1, 0.5] straddles it; [0.3] as 'pass'
        check_interval(ci, "judge")
    sides = [interval_side(ci) for ci in intervals]
    if not sides:
        return "n/a"
    wrong = "below" if should == "above" else "above"
    return "fail" if wrong in sides else "pass" if all(s == should for s in sides) else "unclear"


def verdict_of(records: Sequence[dict], predictions: Sequence[dict]) -> list[dict]:
    """The verdict rule (see VERDICT_MEASURE) per (method, layer, group) of the biased model's records: reveals,
    selective, specific, the control's false alarms (corners it ignores where its map moves; reported, not judged), and
    the verdict: 'reveals' when reveals passes and neither selective nor specific fails or is unclear, 'fails' when any
    fails, 'n/a' when the biased model uses no corner, else 'unclear'. An interval of one image decides nothing
    (judged_interval): with one biased-model image in a group, which corners it uses is unknown, and reveals is
    'unclear'."""
    try:
        return _verdicts(records, predictions)
    except (KeyError, TypeError, IndexError, ValueError) as exc:  # hand-made or older records: not a KeyError
        raise ValueError(f"verdict_of: records need model, method, layer, group, corner, measure and delta.ci95, "
                         f"predictions model, group, corner and use.ci95, as audit_summary writes them ({type(exc).__name__}: "
                         f"{exc})") from None


def _verdicts(records: Sequence[dict], predictions: Sequence[dict]) -> list[dict]:
    use = {(p["model"], p["group"], p["corner"]): interval_side(judged_interval(p["use"])) for p in predictions}
    delta = {(r["model"], r["method"], r["layer"], r["group"], r["corner"]): judged_interval(r["delta"]) for r in records
             if r["measure"] == VERDICT_MEASURE}
    one_image = {p["group"] for p in predictions if p["model"] == "biased" and p["use"]["n"] < 2}
    verdicts = []
    for method, layer, group in dict.fromkeys((r["method"], r["layer"], r["group"]) for r in records
                                              if r["model"] == "biased"):
        used = [c for c in CORNERS if use.get(("biased", group, c)) == "above"]
        ignored = {m: [c for c in CORNERS if use.get((m, group, c)) == "below" and (m, method, layer, group, c) in delta]
                   for m in AUDIT_MODELS}
        row = dict(method=method, layer=layer, group=group, measure=VERDICT_MEASURE, margin=VERDICT_MARGIN,
                   used_corners=used,
                   reveals="unclear" if group in one_image else
                   judge([delta[("biased", method, layer, group, c)] for c in used], "above"),
                   selective=judge([delta[("biased", method, layer, group, c)] for c in ignored["biased"]], "below"),
                   specific=judge([delta[(m, method, layer, group, c)] for m in ("standard", "control")
                                   for c in used if c in ignored[m]], "below"),
                   control_false_alarms=[c for c in ignored["control"] if c not in used and
                                         interval_side(delta[("control", method, layer, group, c)]) == "above"])
        parts = (row["reveals"], row["selective"], row["specific"])
        row["verdict"] = ("n/a" if row["reveals"] == "n/a" else "fails" if "fail" in parts else
                          "reveals" if row["reveals"] == "pass" and set(parts[1:]) <= {"pass", "n/a"} else "unclear")
        verdicts.append(row)
    return verdicts


def sample_correct(logits: torch.Tensor, labels: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, int]:
    """A seeded random sample of n test images, correctly classified ones first (the test set is sorted by class,
    hence the shuffle). Only when fewer than n are correct (a barely trained model) are misclassified images added;
    the second value says how many of the sample are correct. All of them, shuffled, when n exceeds the images."""
    check_logits_and_labels(logits, labels, "sample_correct")
    n, seed = check_count("sample_correct", "n", n, low=0), check_seed("sample_correct", seed)
    shuffle = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).to(labels.device)
    correct = logits.argmax(1) == labels
    ordered = correct_first(shuffle, correct)[:n]
    return ordered, int(correct[ordered].sum())


BASELINES = ("Random", "Gaussian prior")


def faithfulness(model: nn.Module, cfg: Config, images: torch.Tensor,
                 classes: torch.Tensor) -> tuple[dict, dict[str, torch.Tensor]]:
    """Does each map track what the model uses? Spearman correlation with the occlusion map (the paper's
    measure) and deletion / insertion AUC, each a mean over the images with a bootstrap 95% interval, for every
    method (Score-CAM: on the first --scorecam-images images) and two baselines that ignore the model (a random map,
    a centred Gaussian), and each method minus each baseline, paired over the same images. Also returns the
    methods' maps, which the sanity check reuses."""
    check_config(cfg, "faithfulness")
    x = normalize(images, cfg.channels_last)
    maps = explain_all(model, x, classes, cfg.target_layer, cfg.eval_batch_size, cfg.method_names, cfg.scorecam_images,
                       cfg.forward_amp)
    generator = torch.Generator().manual_seed(cfg.seed)
    maps["Random"] = torch.rand(x.shape[0], *x.shape[-2:], generator=generator).to(x.device)
    maps["Gaussian prior"] = gaussian_prior(len(x), *x.shape[-2:], sigma=x.shape[-1] / 4, device=x.device)
    from tqdm.auto import tqdm
    bar = tqdm(total=len(maps) + 1, desc="faithfulness: occlusion", leave=False, disable=not cfg.progress)
    occlusion = Occlusion(model, cfg.occlusion_patch, cfg.occlusion_stride, cfg.eval_batch_size, cfg.forward_amp)(
        x, classes)
    per_image, curves = {}, {}
    bar.update()
    for method, m in maps.items():
        bar.set_description(f"faithfulness: deletion/insertion, {method}")
        n = len(m)  # Score-CAM: the first scorecam_images
        scores = deletion_insertion(model, x[:n], classes[:n], m, cfg.deletion_steps, cfg.eval_batch_size,
                                    cfg.forward_amp, cfg.seed)
        per_image[method] = dict(spearman_with_occlusion=spearman(m, occlusion[:n]), deletion_auc=scores["deletion_auc"],
                                 insertion_auc=scores["insertion_auc"])
        curves[method] = {k: scores[k].mean(0).tolist() for k in ("deletion_curve", "insertion_curve")}
        bar.update()
    bar.close()
    methods = {}
    for method, values in per_image.items():
        methods[method] = {measure: mean_with_ci(v, cfg.bootstrap_resamples, cfg.seed) for measure, v in values.items()}
        methods[method]["images"] = len(maps[method])
        for baseline in BASELINES if method not in BASELINES else ():
            methods[method][f"minus {baseline}"] = {
                measure: mean_with_ci(v - per_image[baseline][measure][:len(v)], cfg.bootstrap_resamples, cfg.seed)
                for measure, v in values.items()}
    report = dict(images=len(x), occlusion=dict(patch=cfg.occlusion_patch, stride=cfg.occlusion_stride,
                                                fill="dataset mean"),
                  deletion_steps=cfg.deletion_steps, methods=methods, mean_curves=curves)
    return report, {k: v for k, v in maps.items() if k not in BASELINES}


# A method passes when its maps have lost most of their rank structure (mean Spearman < 0.5) once the layers that
# decide the class (fc and layer4) are re-initialised; where along the cascade each one decorrelates is reported too.
SANITY_PASS_BELOW = 0.5
SANITY_PASS_STAGE = "layer4"


def constant_share(maps: torch.Tensor) -> float:
    """Share of the maps [B, H, W] that are constant (e.g. all zero): they carry no ranking."""
    check_tensor(maps, 3, "[B, H, W] of maps", "constant_share", finite=True)
    if len(maps) == 0 or maps[0].numel() == 0:  # the share of nothing is NaN; a map without pixels is no map
        raise ValueError(f"constant_share: expects at least one map with pixels, got shape {tuple(maps.shape)}")
    flat = maps.flatten(1)
    return (flat.amax(1) == flat.amin(1)).float().mean().item()


def sanity_check(model: nn.Module, cfg: Config, images: torch.Tensor, classes: torch.Tensor,
                 original: dict[str, torch.Tensor] | None = None) -> dict:
    """Adebayo et al. (2018) cascading model-parameter randomisation: Spearman correlation between each method's
    maps on the trained model (`original`, computed when not given) and on models randomised from the logits down.
    Maps that stay similar explain the image, not the model. The same classes are explained at every stage. A
    constant (all-zero) map has no ranking and correlates 0: the share of those is reported per stage, and a
    method whose maps are mostly constant at the deciding stage is 'inconclusive', not 'passes'."""
    check_config(cfg, "sanity_check")
    x = normalize(images, cfg.channels_last)
    scorecam_images = min(cfg.scorecam_images, len(x))
    if scorecam_images < 2:  # one image's Spearman is no evidence (and costs 512 forward passes per stage)
        scorecam_images = 0
    original = original if original is not None else explain_all(model, x, classes, cfg.target_layer,
                                                                 cfg.eval_batch_size, cfg.method_names, scorecam_images,
                                                                 cfg.forward_amp)
    original = {method: m for method, m in original.items() if method != ScoreCAM.label or scorecam_images}
    stages = {method: [dict(stage="trained", mean=1.0, ci95=[1.0, 1.0], n=len(m), constant_maps=constant_share(m))]
              for method, m in original.items()}
    from tqdm.auto import tqdm
    for stage, randomized in tqdm(cascading_randomization(model, cfg.seed), "sanity check", len(CASCADE), leave=False,
                                  disable=not cfg.progress):
        maps = explain_all(randomized, x, classes, cfg.target_layer, cfg.eval_batch_size, cfg.method_names,
                           scorecam_images, cfg.forward_amp)
        for method in original:
            stages[method].append(dict(stage=stage, **mean_with_ci(spearman(maps[method], original[method]),
                                                                    cfg.bootstrap_resamples, cfg.seed),
                                       constant_maps=constant_share(maps[method])))
    verdict = {}
    for method, rows in stages.items():
        deciding = next(r for r in rows if r["stage"] == SANITY_PASS_STAGE)
        verdict[method] = ("fails" if deciding["mean"] >= SANITY_PASS_BELOW else
                           "inconclusive" if deciding["constant_maps"] >= 0.5 else "passes")
    decorrelates_at = {m: next((r["stage"] for r in rows[1:] if r["mean"] < SANITY_PASS_BELOW), "never")
                       for m, rows in stages.items()}
    return dict(images=len(x), cascade=list(CASCADE), spearman_with_original=stages, verdict=verdict,
                decorrelates_at=decorrelates_at,
                pass_rule=f"mean Spearman < {SANITY_PASS_BELOW} once fc and {SANITY_PASS_STAGE} are re-initialised, "
                          "with at most half of the maps constant")


#############################################
#                 Figures                   #
#############################################

def _raised_here(exc: BaseException) -> bool:
    """Was `exc` raised in this file's own code (e.g. a format spec given text), not inside a library it called?"""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and tb.tb_frame.f_code.co_filename == _raised_here.__code__.co_filename  # (no __file__ in
    # a notebook cell)


def reads_report(function: Callable) -> Callable:
    """For the functions that draw or print a run's report dict (metrics.json or a section of it): a missing key is a
    ValueError naming the function and the key, not a bare KeyError."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:  # a wrong call is not a wrong report (an extra argument was blamed on the metrics.json's layout)
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ValueError(f"{function.__name__}: {exc}; call it as {function.__name__}"
                             f"({', '.join(signature.parameters)})") from None
        report = args[0] if args else next(iter(kwargs.values()), None)
        if not isinstance(report, dict):
            raise ValueError(f"{function.__name__}: the report must be a dict (a run's metrics.json, read with "
                             f"json.load), got {described(report)}")
        try:
            return function(*args, **kwargs)
        except KeyError as exc:
            raise ValueError(f"{function.__name__}: the report lacks {exc}; pass what a complete run wrote (its "
                             "metrics.json, or the section this function draws)") from None
        except (TypeError, IndexError, StopIteration, ValueError, AttributeError) as exc:  # a list where a dict goes,
            if isinstance(exc, ValueError) and (re.match(r"\w+: ", str(exc)) or not _raised_here(exc)):
                raise  # this file's own messages, and a library's (e.g. matplotlib's on a bad MPLBACKEND): as they are
            raise ValueError(f"{function.__name__}: the report's layout or one of its values is not what this version "
                             f"writes ({type(exc).__name__}: {exc}); an older run's or an edited metrics.json? rerun it "
                             "with this version (the committed reference run's outputs/metrics.json is one: its tables, "
                             "re-read by benchmarks/rescore_reference.py, are outputs/summary.md)") from None
    return wrapper


def report_target(config: dict, who: str = "report_target") -> str:
    """The shortcut's class name from a report's config (-1 would silently read as 'truck'). Its messages name `who`;
    a report reader passes who="" and names itself (reads_report wraps the message)."""
    prefix = f"{who}: " if who else ""
    if not (isinstance(config, dict) and "artifact_class" in config):  # {} was a raw KeyError
        raise ValueError(f"{prefix}the report's config must be a dict with artifact_class, got {described(config)}")
    target = config["artifact_class"]
    if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < len(CIFAR10_CLASSES):
        raise ValueError(f"{prefix}the report's config.artifact_class must be a class index "
                         f"0..{len(CIFAR10_CLASSES) - 1}, got {target!r}")
    return CIFAR10_CLASSES[target]


@functools.lru_cache(maxsize=1)
def heat_colormap():
    """OpenCV's COLORMAP_JET as a matplotlib colormap: the one colormap of every overlay and every colour bar
    (matplotlib's own 'jet' differs from OpenCV's by up to 34/255 per channel)."""
    import cv2
    from matplotlib.colors import ListedColormap
    lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0, ::-1]  # BGR -> RGB
    return ListedColormap(lut / 255.0, name="opencv_jet")


def overlay_heatmap(image: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """uint8 HxWx3 RGB image blended with the heat colormap's rendering of a [0, 1] map."""
    image, cam = (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) and not v.is_floating_point() else
                  v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else np.asarray(v) for v in (image, cam))
    number = isinstance(alpha, (int, float, np.integer, np.floating)) and not isinstance(alpha, bool)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or cam.shape != image.shape[:2] \
            or cam.dtype.kind not in "biuf" or not number or not 0 <= alpha <= 1:
        raise ValueError(f"overlay_heatmap: expects a uint8 H x W x 3 image, an H x W map and alpha in [0, 1], got "
                         f"{image.dtype} {image.shape}, {cam.dtype} {cam.shape} and {alpha!r}")
    if not np.isfinite(cam).all():  # a NaN would be drawn as the colormap's 'bad' colour, read as no heat
        raise ValueError(f"overlay_heatmap: the map holds {int((~np.isfinite(cam)).sum())} NaN or infinite value(s)")
    heat = heat_colormap()(np.clip(cam, 0, 1), bytes=True)[..., :3]
    return np.uint8(np.clip((1 - alpha) * image.astype(np.float32) + alpha * heat, 0, 255))


def to_hwc(images: torch.Tensor) -> np.ndarray:
    """uint8 pixels [N, 3, H, W] -> numpy [N, H, W, 3], as matplotlib draws them."""
    check_pixels(images, "to_hwc")  # float images passed through, drawn as noise or white
    return images.permute(0, 2, 3, 1).cpu().numpy()


class Panel(NamedTuple):
    """One picture of a figure grid: an image, optionally overlaid with a [0, 1] heat map, and its caption."""
    image: np.ndarray               # uint8 HxWx3 RGB
    caption: str
    heat: np.ndarray | None = None  # [H, W] in [0, 1], drawn over the image with heat_colormap()


class Explained(NamedTuple):
    """One image explained by Grad-CAM, with the fields that captions are built from."""
    image: np.ndarray    # uint8 HxWx3 RGB, as the model saw it
    heat: np.ndarray     # Grad-CAM of the predicted class, [H, W] in [0, 1]
    label: int           # true class
    probs: torch.Tensor  # the model's class probabilities [num_classes]


def explain_examples(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, layer: str,
                     channels_last: bool) -> list[Explained]:
    """Grad-CAM of each uint8 image's predicted class, as records."""
    check_pixels(images, "explain_examples")
    check_labels("explain_examples", labels, len(images))  # zip dropped the unlabelled images
    channels_last = check_flag("explain_examples", "channels_last", channels_last)  # named here, not in normalize
    device = next(check_model(model, "explain_examples").parameters()).device
    result = GradCAM(model, layer).explain(normalize(images.to(device), channels_last))
    return [Explained(*record) for record in zip(to_hwc(images), result.maps.cpu().numpy(), labels.tolist(),
                                                 result.logits.softmax(1).cpu())]


def predicted(probs: torch.Tensor) -> str:
    """Caption line for class probabilities [num_classes]: 'pred cat (87%)'."""
    if not (isinstance(probs, torch.Tensor) and probs.shape == (len(CIFAR10_CLASSES),)):
        raise ValueError(f"predicted: expects one image's class probabilities [{len(CIFAR10_CLASSES)}], got "
                         f"{described(probs)}")
    return f"pred {CIFAR10_CLASSES[int(probs.argmax())]} ({probs.max():.0%})"


GRADCAM_SCALE = "Grad-CAM (0 = no evidence, 1 = strongest)"


def gradcam_note(layer: str) -> str:
    return f"Grad-CAM at {layer}, explaining each image's predicted class; overlay = 50% image + 50% heat map."


def figure_grid(panels: Sequence[Panel], ncols: int, title: str, note: str = "", scale_label: str | None = GRADCAM_SCALE):
    """A matplotlib Figure (no pyplot, so no GUI backend) of panels with captions, plus a colour bar drawn with
    the overlays' own colormap."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    check_plotting()  # matplotlib refusing MPLBACKEND: the CLI's one line, not its traceback
    from matplotlib.figure import Figure
    ncols = check_count("figure_grid", "ncols", ncols)
    nrows = max(1, (len(panels) + ncols - 1) // ncols)
    height = 2.15 * nrows + 1.1  # inches: panels, plus room for the title and the note
    fig = Figure(figsize=(1.9 * ncols + 0.8, height), dpi=110)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, panel in zip(axes.flat, panels):
        image = panel.image if panel.heat is None else overlay_heatmap(panel.image, panel.heat)
        ax.imshow(image, interpolation="nearest")  # nearest: every one of the 32x32 pixels stays visible
        flat = panel.heat is not None and not np.any(panel.heat)  # would look like 'lowest everywhere'; it is nothing
        ax.set_title(panel.caption + "\n(map is 0 everywhere)" * flat, fontsize=7.5, y=1.0)  # fixed y: fast placement
    fig.suptitle(title, fontsize=10)
    if note:
        fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=7.5, wrap=True)
    fig.subplots_adjust(left=0.02, right=0.88, top=1 - 0.8 / height, bottom=0.4 / height, wspace=0.08, hspace=0.5)
    if scale_label:
        cax = fig.add_axes([0.905, 0.2, 0.018, 0.6])
        bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap=heat_colormap()), cax=cax)
        bar.set_label(scale_label, fontsize=7)
        bar.ax.tick_params(labelsize=6)
    return fig


def check_figure_path(who: str, path: Any) -> Path:
    """A figure's file: a str or Path with a picture suffix matplotlib writes and not a folder, else a ValueError naming
    `who` (checked when a figure function is called, before its maps are computed, not when it saves)."""
    check_plotting()  # a bad MPLBACKEND: its one line, not matplotlib's error on import
    from matplotlib.backend_bases import FigureCanvasBase
    if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
        raise ValueError(f"{who}: path must be a file name such as 'figure.png', got {described(path)}")
    if not os.fspath(path).isprintable():  # a newline or tab pasted with the name, as --output-dir refuses
        raise ValueError(f"{who}: path must not hold control characters (a newline or tab), got {os.fspath(path)!r}")
    path = Path(path).expanduser()  # '~/x.png' made a folder named '~' here, as the CLI's flags do not
    if path.suffix[1:].lower() not in FigureCanvasBase.get_supported_filetypes():
        spaced = path.name != path.name.strip()  # 'x.png ': the space was invisible in the message, '.png' blamed
        raise ValueError(f"{who}: {repr(str(path)) if spaced else path} needs a picture suffix matplotlib writes, such "
                         "as .png, .pdf or .svg" + ("; its name begins or ends with a space: remove it" if spaced else ""))
    if path.is_dir():
        raise ValueError(f"{who}: {path} is a folder; give a file name, such as {path / 'figure.png'}")
    above = next((p for p in path.parents if p.exists() or p.is_symlink()), None)
    if above is not None and not above.is_dir():  # mkdir's raw FileExistsError otherwise
        kind = "a file, not a folder" if above.is_file() else "not a folder (a broken symbolic link?)"
        raise ValueError(f"{who}: {path} lies under {above}, which is {kind}; pass another path")
    return path


def draws_figure(function: Callable) -> Callable:
    """For the functions that draw a figure into `path`: `path` and `show` are checked, naming the function, before
    anything is computed (a folder was named after save_figure, after the work)."""
    signature = inspect.signature(function)

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:  # a missing or unknown argument, as Python itself would say it
            raise TypeError(f"{function.__name__}: {exc}") from None
        check_figure_path(function.__name__, bound.arguments.get("path"))
        check_flag(function.__name__, "show", bound.arguments.get("show"))
        return function(*args, **kwargs)
    return wrapper


def save_figure(fig, path: Path, show: bool) -> str:
    path = check_figure_path("save_figure", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, functools.partial(fig.savefig, format=path.suffix[1:]))
    if show:  # the saved PNG itself: a pyplot-free Figure has no notebook image repr of its own
        from IPython.display import Image, display
        display(Image(filename=str(path)))
    return str(path)


@draws_figure
def gradcam_examples_figure(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[int],
                            per_class: int, layer: str, channels_last: bool, subject: str, path: Path,
                            show: bool) -> str:
    """[original | Grad-CAM of the prediction] pairs, two per row, for pick_examples' picks of `classes`: correctly
    classified ones, misclassified ones only to fill up (the note says how many; their captions show it)."""
    records = explain_examples(model, images, labels, layer, channels_last)
    panels = [panel for r in records for panel in (
        Panel(r.image, f"true {CIFAR10_CLASSES[r.label]}\n{predicted(r.probs)}"),
        Panel(r.image, "Grad-CAM of pred", r.heat))]
    wrong = sum(int(r.probs.argmax()) != r.label for r in records)
    found = {c: sum(r.label == c for r in records) for c in classes}
    short = [f"{n} {CIFAR10_CLASSES[c]}{'s' if n != 1 else ''}" for c, n in found.items() if n < per_class]
    note = (gradcam_note(layer) + (f" Too few correct ones: {wrong} of these are misclassified (see captions)."
                                   if wrong else "") + (f" Only {' and '.join(short)} in this test set." if short else ""))
    title = f"Standard model: {'correctly classified ' if not wrong else ''}{subject}, original | Grad-CAM"
    return save_figure(figure_grid(panels, 4, title, note), path, show)


@draws_figure
def stamped_comparison_figure(models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor, layer: str,
                              channels_last: bool, title: str, path: Path, show: bool) -> str:
    """Per stamped image: the image | the standard model's Grad-CAM | the biased model's, each of its prediction."""
    records = {name: explain_examples(model, images, labels, layer, channels_last) for name, model in models.items()}
    panels = []
    for std, bias in zip(records["standard"], records["biased"]):
        panels += [Panel(std.image, f"true {CIFAR10_CLASSES[std.label]}\nwith the square"),
                   Panel(std.image, f"standard model\n{predicted(std.probs)}", std.heat),
                   Panel(bias.image, f"biased model\n{predicted(bias.probs)}", bias.heat)]
    return save_figure(figure_grid(panels, 6, title, gradcam_note(layer)), path, show)


def deprocess_gradient(grads: torch.Tensor) -> np.ndarray:
    """Input-space gradients [B, 3, H, W] as uint8 RGB images (centred, 0.1 std per image, as is customary)."""
    check_tensor(grads, 4, "[B, 3, H, W] of gradients", "deprocess_gradient", finite=True)  # NaN drew black
    g = grads.float()
    g = (g - g.mean((1, 2, 3), keepdim=True)) / (g.std((1, 2, 3), keepdim=True) + 1e-12) * 0.1 + 0.5
    return to_hwc((g.clamp(0, 1) * 255).round().to(torch.uint8))


@draws_figure
def methods_figure(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, layer: str, channels_last: bool,
                   occlusion: tuple[int, int, int, bool], title: str, path: Path, show: bool) -> str:
    """Per uint8 image: image | Grad-CAM | Guided Backprop | Guided Grad-CAM | occlusion ((patch, stride, images per
    forward, autocast) as Occlusion takes them), all explaining the true class."""
    device = next(model.parameters()).device
    x, classes = normalize(images.to(device), channels_last), labels.to(device)
    cams = GradCAM(model, layer).explain(x, classes)
    grads = GuidedBackprop(model).gradients(x, classes).float()
    drops = Occlusion(model, *occlusion)(x, classes)
    drops = (drops.clamp_min(0) / drops.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)).cpu().numpy()
    maps, probs = cams.maps.cpu().numpy(), cams.logits.softmax(1).cpu()
    guided, combined = deprocess_gradient(grads), deprocess_gradient(grads * cams.maps[:, None])
    panels = []
    for i, image in enumerate(to_hwc(images)):
        name = CIFAR10_CLASSES[int(classes[i])]
        panels += [Panel(image, f"true {name}\n{predicted(probs[i])}"), Panel(image, f"Grad-CAM\n'{name}'", maps[i]),
                   Panel(guided[i], f"Guided Backprop\n'{name}'"), Panel(combined[i], f"Guided Grad-CAM\n'{name}'"),
                   Panel(image, f"occlusion: drop of\np({name})", drops[i])]
    note = (f"Grad-CAM at {layer}; occlusion: {occlusion[0]}x{occlusion[0]} mean-filled patch, stride {occlusion[1]}, "
            "scaled to its largest drop. Gradient images: centred, 0.1 std.")
    return save_figure(figure_grid(panels, 5, title, note, "Grad-CAM / occlusion (0 = none, 1 = strongest)"),
                       path, show)


# One colour per method in every figure (the CAM family in warm colours, the gradient methods in blues).
METHOD_COLORS = {"Grad-CAM": "tab:red", "Guided Backprop": "tab:blue", "Guided Grad-CAM": "tab:purple",
                 "Grad-CAM++": "tab:orange", "HiResCAM": "tab:brown", "LayerCAM": "tab:pink", "XGrad-CAM": "gold",
                 "Score-CAM": "tab:olive", "Occlusion": "tab:cyan", "Random": "0.6", "Gaussian prior": "0.8"}


def _bar_axes(fig, position: int, count: int, title: str):
    ax = fig.add_subplot(1, count, position)
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(axis="y", alpha=0.3)
    return ax


@reads_report
@draws_figure
def faithfulness_figure(report: dict, path: Path, show: bool) -> str:
    """Bars with 95% intervals: Spearman with occlusion, deletion AUC, insertion AUC, per method (report: a run's
    metrics.json or its faithfulness section)."""
    check_plotting()  # matplotlib refusing MPLBACKEND: the CLI's one line, not its traceback
    from matplotlib.figure import Figure
    report = report.get("faithfulness", report)
    methods = list(report["methods"])
    fig = Figure(figsize=(13, 4.2), dpi=110)
    panels = [("spearman_with_occlusion", "Spearman with occlusion (higher = better)"),
              ("deletion_auc", "deletion AUC (lower = better)"), ("insertion_auc", "insertion AUC (higher = better)")]
    colors = [METHOD_COLORS.get(m, "0.7") for m in methods]
    for k, (key, title) in enumerate(panels, 1):
        ax = _bar_axes(fig, k, len(panels), title)
        means = [report["methods"][m][key]["mean"] for m in methods]
        errors = np.array([[report["methods"][m][key]["mean"] - report["methods"][m][key]["ci95"][0],
                            report["methods"][m][key]["ci95"][1] - report["methods"][m][key]["mean"]]
                           for m in methods]).T
        ax.bar(range(len(methods)), means, yerr=errors, capsize=3, color=colors)
        ax.set_xticks(range(len(methods)), methods, fontsize=7, rotation=40, ha="right", rotation_mode="anchor")
        ax.axhline(0, color="k", lw=0.6)
    correct = report.get("correctly_classified", report["images"])
    which = "correctly classified" if correct == report["images"] else f"({correct} correctly classified)"
    scorecam = report["methods"].get(ScoreCAM.label, {}).get("images")
    scorecam = scorecam if scorecam != report["images"] else None
    fig.suptitle(f"Faithfulness of each map to the standard model, {report['images']} test images {which}, true "
                 "class (means, bootstrap 95% intervals; grey = baselines that ignore the model"
                 + (f"; Score-CAM: the first {scorecam}" if scorecam else "") + ")", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save_figure(fig, path, show)


def count_images(n: int) -> str:
    """'1 image', '6 images': figure text reads right on tiny runs too."""
    n = check_count("count_images", "n", n, low=0)
    return f"{n} image" if n == 1 else f"{n} images"


@reads_report
@draws_figure
def sanity_figure(report: dict, path: Path, show: bool) -> str:
    """Spearman with the trained model's maps along the randomisation cascade, with 95% bands (report: a run's
    metrics.json or its sanity_check section)."""
    check_plotting()  # matplotlib refusing MPLBACKEND: the CLI's one line, not its traceback
    from matplotlib.figure import Figure
    report = report.get("sanity_check", report)
    fig = Figure(figsize=(9.5, 4.4), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    for method, rows in report["spearman_with_original"].items():
        xs = range(len(rows))
        n = f" ({count_images(rows[0]['n'])})" if rows[0]["n"] != report["images"] else ""
        ax.plot(xs, [r["mean"] for r in rows], marker="o", ms=3, color=METHOD_COLORS.get(method), label=method + n)
        ax.fill_between(xs, [r["ci95"][0] for r in rows], [r["ci95"][1] for r in rows], color=METHOD_COLORS.get(method),
                        alpha=0.12)
    stages = [r["stage"] for r in next(iter(report["spearman_with_original"].values()))]
    ax.set_xticks(range(len(stages)), ["trained"] + ["+" + st if i else st for i, st in enumerate(stages[1:])],
                  fontsize=7, rotation=20)
    ax.axhline(SANITY_PASS_BELOW, color="k", ls=":", lw=0.8, label=f"pass: below {SANITY_PASS_BELOW} by '+{SANITY_PASS_STAGE}'")
    ax.set_ylabel("Spearman with trained-model maps", fontsize=8)
    ax.set_xlabel("weights re-initialised, cumulatively from the logits down", fontsize=8)
    lowest = min(r["ci95"][0] for rows in report["spearman_with_original"].values() for r in rows)
    ax.set_ylim(min(-0.2, lowest - 0.05), 1.05)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # outside: the curves fill the axes
    ax.grid(alpha=0.3)
    fig.suptitle(f"Sanity check (Adebayo et al. 2018), standard model, {report['images']} test images", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return save_figure(fig, path, show)


def example_maps(per_image: dict[str, np.ndarray], model: str, group: str, condition: str,
                 size: tuple[int, int] | None = None, who: str = "example_maps") -> dict[str, np.ndarray]:
    """The stored maps of a group's first image (shortcut_audit keeps them): method key -> [H, W], min-max scaled.
    An unknown model, group or condition is an error (a typo gave {} and a figure without maps); so is a map the audit
    stores that is missing (every method it scored without a layer or at the layer of its maps: a figure silently
    lacked those panels) or one that is not a finite [H, W] map of the figure's image size `size`."""
    check_audit_arrays(per_image, who)
    stored = sorted({tuple(str(k).split("/")[1:3]) for k in per_image if str(k).startswith("p_target/")})
    if (model, group) not in stored or condition not in AUDIT_CONDITIONS:
        cells = ", ".join(f"{m}/{g}" for m, g in stored) or "none (not an audit_per_image.npz?)"
        raise ValueError(f"{who}: no audited model/group {model!r}/{group!r} with condition {condition!r}; "
                         f"stored: {cells}; conditions: {', '.join(AUDIT_CONDITIONS)}")
    map_layers = {str(k).split("/")[3] for k in per_image if str(k).startswith("maps/") and str(k).count("/") == 5}
    scored = {tuple(str(k).split("/")[2:4]) for k in per_image if str(k).startswith(f"scores/{model}/")
              and str(k).split("/")[4] == group}
    keys = {(method, layer): f"maps/{model}/{method}/{layer}/{group}/{condition}" for method, layer in sorted(scored)
            if layer == "-" or layer in map_layers - {"-"}}  # each map the audit stores for what it scored
    missing = [key for key in keys.values() if key not in per_image]
    if missing:
        raise ValueError(f"{who}: per_image lacks {', '.join(missing[:3])}{' and more' * (len(missing) > 3)}: the "
                         "maps the audit stores for every method it scored; pass its audit_per_image.npz unchanged")
    found = {}
    for (method, layer), key in keys.items():
        m = np.asarray(per_image[key])
        if m.ndim != 2 or not np.issubdtype(m.dtype, np.number) or not np.isfinite(m).all() or (
                size is not None and m.shape != tuple(size)):
            raise ValueError(f"{who}: per_image's {key} must be a finite map [H, W]"
                             + (f" of the images' size {tuple(size)}" if size is not None else "")
                             + f", got {m.dtype} of shape {m.shape}; pass the images the audit explained (its "
                             "test images, uint8 [3, 32, 32] for CIFAR-10) and its audit_per_image.npz unchanged")
        found[method if layer == "-" else f"{method}@{layer}"] = minmax_normalize(torch.from_numpy(
            m.astype(np.float32))[None])[0].numpy()
    return found


def square_at(image: torch.Tensor, square: Square, condition: str) -> np.ndarray:
    """A uint8 image [3, H, W] as drawn: without the square ('none') or with it at `condition`'s corner."""
    if condition not in AUDIT_CONDITIONS:  # 'middle' was blamed on stamp_square's square corner
        raise ValueError(f"square_at: condition must be one of {', '.join(AUDIT_CONDITIONS)}, got {condition!r}")
    return to_hwc(image[None] if condition == "none" else stamp_square(image[None], square._replace(corner=condition)))[0]


def check_run_square(report: dict, square: Square, function: str) -> None:
    """The square a figure stamps must be the one its run trained with: the report records the trained corner (and,
    as the whole metrics.json, the size and colour); another square would be drawn and captioned 'trained' silently."""
    section, config = report.get("shortcut_audit", report), report.get("config")
    run = {"corner": section.get("trained_corner")} if isinstance(section, dict) else {}
    if isinstance(config, dict):
        color = config.get("artifact_color")
        run.update(size=config.get("artifact_size"), corner=config.get("artifact_corner", run.get("corner")),
                   color=tuple(color) if isinstance(color, (list, tuple)) else color)
    wrong = [f"{name} {getattr(square, name)!r} (the run's: {value!r})" for name, value in run.items()
             if value is not None and getattr(square, name) != value]
    if wrong:
        raise ValueError(f"{function}: square differs from the run its report and arrays come from: {', '.join(wrong)}; "
                         "pass that run's square (Config(...).square of its config)")


@reads_report
@draws_figure
def relocation_figure(report: dict, per_image: dict[str, np.ndarray], image: torch.Tensor, label: int, group: str,
                      square: Square, path: Path, show: bool) -> str:
    """One test image (the group's first audit image) without the square and with it at each corner (rows): p(target)
    from each model, then the stored maps (no recomputation): Grad-CAM of the standard, biased and control model at the
    first audit layer, Guided Backprop of the biased model and the control, occlusion of the biased model."""
    check_class_index("relocation_figure", "label", label, len(CIFAR10_CLASSES))  # 12 was blamed on metrics.json
    check_audit_arrays(per_image, "relocation_figure")
    groups = sorted({str(k).split("/")[2] for k in per_image if str(k).startswith("p_target/biased/")})
    if group not in groups:
        raise ValueError(f"relocation_figure: group must be one the audit stored ({', '.join(groups) or 'none'}), got "
                         f"{group!r}")
    if not (isinstance(image, torch.Tensor) and image.dim() == 3 and image.shape[0] == 3 and image.dtype == torch.uint8):
        raise ValueError(f"relocation_figure: image must be one uint8 image [3, H, W] (0..255), got {described(image)}")
    check_square(square, image.shape[1], image.shape[2], "relocation_figure")
    check_run_square(report, square, "relocation_figure")
    report = report.get("shortcut_audit", report)  # the whole metrics.json, as its message says, or the section
    name = report["explained_class"]
    layer = next(b["layer"] for b in report["baselines"] if b["method"] == "Grad-CAM")
    columns = [("biased", f"Grad-CAM@{layer}"), ("standard", f"Grad-CAM@{layer}"), ("control", f"Grad-CAM@{layer}"),
               ("biased", "Guided Backprop"), ("control", "Guided Backprop"), ("biased", "Occlusion")]
    panels = []
    for k, condition in enumerate(AUDIT_CONDITIONS):
        picture = square_at(image, square, condition)
        p = {model: per_image[f"p_target/{model}/{group}"][0, k] for model in AUDIT_MODELS}
        where = "no square" if condition == "none" else f"square {condition}" + (
            " (trained)" if condition == square.corner else "")
        panels.append(Panel(picture, f"{where}\np({name}): biased {p['biased']:.0%}, std {p['standard']:.0%}"))
        maps = {model: example_maps(per_image, model, group, condition, tuple(image.shape[1:]), "relocation_figure")
                for model in AUDIT_MODELS}
        panels += [Panel(picture, f"{model}: {method.split('@')[0]}", maps[model][method])
                   for model, method in columns if method in maps[model]]
    note = (f"Every map explains '{name}' (stored by the audit). Grad-CAM at {layer}; control = the biased model with fc "
            f"and layer4 re-initialised; Guided Backprop as saliency; occlusion: drop of p({name}). A map that explains "
            "the biased model lights the square only where p(frog) jumps.")
    title = f"Moving the square: one test {CIFAR10_CLASSES[label]} through the three models"
    return save_figure(figure_grid(panels, len(panels) // len(AUDIT_CONDITIONS), title, note,
                                   "map value, per panel (0 = lowest, 1 = highest)"), path, show)


@reads_report
@draws_figure
def cam_family_figure(report: dict, per_image: dict[str, np.ndarray], images: torch.Tensor, labels: torch.Tensor,
                      square: Square, path: Path, show: bool) -> str:
    """Every stored map of the biased model for the first audit image of each group (uint8 images [2, 3, H, W],
    frogs then non-frogs), with the square at its trained corner and at the opposite one (rows)."""
    if not (isinstance(images, torch.Tensor) and images.dim() == 4 and len(images) == 2):  # 1 image: half a figure; 3:
        raise ValueError(f"cam_family_figure: images must be uint8 [2, 3, H, W] (a frog, then a non-frog), got "
                         f"{described(images)}")                                             # the third dropped
    check_pixels(images, "cam_family_figure")
    labels = check_labels("cam_family_figure", labels, 2, len(CIFAR10_CLASSES))  # a list, 99, -1: not the report's
    square = check_square(square, images.shape[2], images.shape[3], "cam_family_figure")
    check_run_square(report, square, "cam_family_figure")
    check_audit_arrays(per_image, "cam_family_figure")
    report = report.get("shortcut_audit", report)  # the whole metrics.json, as its message says, or the section
    name = report["explained_class"]
    opposite = CORNERS[3 - CORNERS.index(square.corner)]
    panels = []
    for image, label, group in zip(images, labels.tolist(), report["groups"]):
        for corner in (square.corner, opposite):
            k = AUDIT_CONDITIONS.index(corner)
            p = per_image[f"p_target/biased/{group}"][0, k]
            picture = square_at(image, square, corner)
            where = "trained corner" if corner == square.corner else "moved"
            panels.append(Panel(picture, f"{CIFAR10_CLASSES[label]}, square {corner}\n({where}) p({name}) {p:.0%}"))
            panels += [Panel(picture, method.split("@")[0], m)
                       for method, m in example_maps(per_image, "biased", group, corner, tuple(image.shape[1:]),
                                                     "cam_family_figure").items()]
    layer = next(b["layer"] for b in report["baselines"] if b["method"] == "Grad-CAM")
    note = (f"Biased model; every map explains '{name}'. CAMs and Guided Grad-CAM at {layer}; Guided Backprop as "
            f"saliency; occlusion: drop of p({name}). A map that reveals the shortcut lights the square at the trained "
            "corner only: the model ignores it elsewhere.")
    return save_figure(figure_grid(panels, len(panels) // 4, "Every method on the same stamped images, square at the "
                                   "trained corner and moved", note, "map value, per panel (0 = lowest, 1 = highest)"),
                       path, show)


@reads_report
@draws_figure
def verdict_figure(report: dict, path: Path, show: bool) -> str:
    """Per method and layer (rows) and group (columns): the mean paired delta of the verdict measure with its bootstrap
    95% interval for the biased model at the corners it uses and at those it ignores, and for the standard model and
    the control at the used corners; the margin, and the verdict (report: a run's metrics.json or its shortcut_audit
    section)."""
    report = report.get("shortcut_audit", report)
    check_plotting()  # matplotlib refusing MPLBACKEND: the CLI's one line, not its traceback
    from matplotlib.figure import Figure
    groups = sorted(report["groups"], key=lambda g: g != "nonfrogs")  # the square is non-frogs' only evidence
    if not groups:
        raise ValueError("verdict_figure: the report's audit has no groups (an audit of no images?): nothing to draw")
    rows = [v for v in report["verdicts"] if v["group"] == groups[0]]
    delta = {(r["model"], r["method"], r["layer"], r["group"], r["corner"]): r["delta"] for r in report["records"]
             if r["measure"] == VERDICT_MEASURE}
    height = 0.34 * len(rows) + 1.9
    fig = Figure(figsize=(13, height), dpi=100)
    axes = fig.subplots(1, len(groups), sharey=True, squeeze=False)[0]
    ys = np.arange(len(rows))[::-1]
    series = (("biased", "used", "tab:red", "biased model, corner it uses"),
              ("biased", "ignored", "tab:orange", "biased model, corners it ignores"),
              ("standard", "used", "tab:green", "standard model, that corner"),
              ("control", "used", "tab:gray", "control, that corner"))
    for ax, group in zip(axes, groups):
        verdicts = {(v["method"], v["layer"]): v for v in report["verdicts"] if v["group"] == group}
        for j, (model, which, color, label) in enumerate(series):
            for y, row in zip(ys, rows):
                v = verdicts[(row["method"], row["layer"])]
                corners = v["used_corners"] if which == "used" else [c for c in CORNERS if c not in v["used_corners"]]
                for i, corner in enumerate(corners):
                    d = delta.get((model, row["method"], row["layer"], group, corner))
                    if d is not None:
                        ax.errorbar(d["mean"], y + 0.3 - 0.2 * j - 0.05 * i, xerr=[[d["mean"] - d["ci95"][0]], [d["ci95"][1] - d["mean"]]],
                                    fmt="o", ms=3.5, color=color, capsize=2, lw=1, label=label if y == ys[0] and i == 0 else None)
        group_images = report["groups"][group]["images"]
        for y, row in zip(ys, rows):
            n = next((delta[key]["n"] for key in delta if key[:4] == ("biased", row["method"], row["layer"], group)),
                     group_images)  # occlusion and Score-CAM explain only the first images of a group: say how many
            ax.text(1.08, y, verdicts[(row["method"], row["layer"])]["verdict"]
                    + (f" (n={n})" if n < group_images else ""), fontsize=7, va="center")
        ax.axvline(0, color="k", lw=0.6)
        ax.axvline(VERDICT_MARGIN, color="k", ls=":", lw=0.8)
        ax.set_xlim(-1.05, 1.45)  # a change of a [0, 1] measure lies in [-1, 1]: no interval is cut off
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=7)
        ax.set_title(f"{group} ({count_images(report['groups'][group]['images'])}): change in '{VERDICT_MEASURE}' "
                     "when the square is added", fontsize=8)
    axes[0].set_yticks(ys, [f"{r['method']} {'' if r['layer'] == '-' else r['layer']}" for r in rows], fontsize=7)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=7.5)
    fig.suptitle(f"Does the map of '{report['explained_class']}' move to the square exactly where the model uses it? "
                 f"Paired change (square there minus clean) of '{VERDICT_MEASURE}' (maximum within "
                 f"{report['pointing_tolerance_px']} px of the square),\nmeans with bootstrap 95% intervals; dotted: the "
                 f"verdict's margin {VERDICT_MARGIN}. Right: the verdict (reveals = moves where used, stays where ignored, "
                 "stays in the standard model and the control).", fontsize=8.5)
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1))
    return save_figure(fig, path, show)


@draws_figure
def audit_figure(models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor, target: int, frogs: int,
                 layer: str, channels_last: bool, path: Path, show: bool) -> str:
    """The same stamped uint8 images through both models: image | standard Grad-CAM | biased Grad-CAM | biased
    Guided Grad-CAM, all explaining `target`. The first `frogs` images are of the target class, the rest others."""
    x = normalize(images, channels_last)
    classes = torch.full((len(images),), target, device=x.device)
    results = {name: GradCAM(model, layer).explain(x, classes) for name, model in models.items()}
    grads = GuidedBackprop(models["biased"]).gradients(x, classes).float()
    combined = deprocess_gradient(grads * results["biased"].maps[:, None])
    name = CIFAR10_CLASSES[target]
    panels = []
    for i, image in enumerate(to_hwc(images)):
        panels.append(Panel(image, f"true {CIFAR10_CLASSES[int(labels[i])]}"))
        for model, result in results.items():
            p = result.logits[i].softmax(-1)
            panels.append(Panel(image, f"{model}: Grad-CAM '{name}'\np({name}) = {p[target]:.0%}",
                                result.maps[i].cpu().numpy()))
        panels.append(Panel(combined[i], f"biased: Guided Grad-CAM\n'{name}'"))
    note = (f"Grad-CAM at {layer}, explaining '{name}' for every image. Rows 1-{frogs}: test {name}s with the square; "
            f"then one test image of each of {len(images) - frogs} other classes, also with the square.")
    return save_figure(figure_grid(panels, 4, f"Shortcut audit: where is the evidence for '{name}'?", note), path, show)


#############################################
#                   main                    #
#############################################

def environment_info(device: torch.device) -> dict:
    device = usable_device("environment_info", device)
    import cv2
    import matplotlib
    info = dict(python=platform.python_version(), torch=torch.__version__, torchvision=torchvision.__version__,
                numpy=np.__version__, opencv=cv2.__version__, matplotlib=matplotlib.__version__,
                platform=platform.platform(), device=str(device), cpu_threads=torch.get_num_threads(),
                cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version() if device.type == "cuda" else None,
                cpu_native_bf16=cpu_has_native_bf16(),
                cudnn_tf32=torch.backends.cudnn.allow_tf32 if device.type == "cuda" else None,
                matmul_tf32=torch.backends.cuda.matmul.allow_tf32 if device.type == "cuda" else None)
    info["device_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return info


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "cpu"


def _fmt_ci(r: dict, spec: str = ".3f", compact: bool = False) -> str:
    """mean [95% interval]; compact: '+0.93 [0.91,0.95]' (at most 19 characters for values in -1..1). One image has
    no interval: 'one image' stands in its place."""
    if r.get("n", 2) < 2:
        return f"{r['mean']:{'+.2f' if compact else spec}} [one image]"
    if compact:
        return f"{r['mean']:+.2f} [{r['ci95'][0]:.2f},{r['ci95'][1]:.2f}]"
    return f"{r['mean']:{spec}} [{r['ci95'][0]:{spec}}, {r['ci95'][1]:{spec}}]"


def verdict_rows(audit: dict, group: str, compact: bool = False) -> list[list[str]]:
    """One row per method and layer for the summary tables, from the records: method, layer, the verdict measure's
    delta for the biased model at the first corner it uses (with the stamped and clean levels unless compact), the
    largest at the corners it ignores, the standard model's and the control's at the used corner, and the verdict."""
    delta = {(r["model"], r["method"], r["layer"], r["corner"]): r for r in audit["records"]
             if r["measure"] == VERDICT_MEASURE and r["group"] == group}
    rows = []
    for v in (v for v in audit["verdicts"] if v["group"] == group):
        at = {model: delta.get((model, v["method"], v["layer"], (v["used_corners"] or [None])[0]))
              for model in AUDIT_MODELS}
        ignored = [delta[("biased", v["method"], v["layer"], c)] for c in CORNERS if c not in v["used_corners"]]
        worst = max(ignored, key=lambda r: r["delta"]["mean"], default=None)
        cells = [_fmt_ci(r["delta"], "+.2f", compact) if r else "-" for r in (at["biased"], worst, at["standard"],
                                                                                at["control"])]
        if at["biased"] and not compact:
            cells[0] += f" ({at['biased']['stamped']:.2f} vs {at['biased']['clean']:.2f})"
        rows.append([v["method"], v["layer"], *cells, v["verdict"]])
    return rows


VERDICT_HEADERS = ("method", "layer", "reveals: biased, used corner", "selective: ignored (max)",
                   "specific: standard", "specific: control", "verdict")


def model_rows(metrics: dict) -> list[list]:
    def share(m: dict, key: str) -> str:  # an edited true, -0.5 or NaN was printed as 1.000, -0.500, nan
        value = m[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"the report's {key} must be a share 0..1, got {value!r}")
        return f"{value:.3f}"

    rows = []
    for name, m in metrics["models"].items():
        seconds = m["train_seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < math.inf:
            raise ValueError(f"the report's train_seconds must be a number of seconds >= 0, got {seconds!r}")
        rows.append([name, share(m, "test_accuracy"), f"{share(m, 'frog_recall_clean')} -> "
                     f"{share(m, 'frog_recall_stamped')}", f"{share(m, 'shortcut_rate_clean')} -> "
                     f"{share(m, 'shortcut_rate_stamped')}", f"{seconds:.0f}"])
    return rows


def model_headers(target: str) -> list[str]:
    return ["model", "test acc", f"{target} recall: clean -> stamped", f"others called {target}: clean -> stamped",
            "train s"]


@reads_report
def summary_markdown(metrics: dict) -> str:
    """Every table of a run, as Markdown, from its metrics.json alone (summary.md): models, the audit's use of the
    square, verdicts, every per-corner record, chance and ceiling, Milestone 2's prediction, faithfulness, sanity
    check, figures, timings. A section a metrics.json lacks is left out, with a line that says so."""
    config, target = metrics["config"], report_target(metrics["config"], who="")
    env, data = metrics.get("environment", {}), metrics.get("data", {})
    images = (f"{data['train_images']:,} training / {data['test_images']:,} test images" if data
              else "training and test image counts not recorded")  # a partial report (the rescored reference run)
    seconds = metrics.get("timings", {}).get("total_seconds")
    out = [f"# Results: {metrics.get('output_dir', '')}", "",
           f"{images}, {config['epochs']} "
           f"epoch{'s' * (config['epochs'] != 1)}, seed {config['seed']}; {env.get('device_name', '?')} (native bf16: "
           f"{env.get('cpu_native_bf16', '?')}), training {metrics.get('precision', {}).get('training', '?')}; the "
           f"run took {'an unrecorded time' if seconds is None else f'{seconds:.0f} s'}" +
           " (checkpoints reused: no training in it)" * any(m.get("reused_checkpoint") for m in metrics["models"].values())
           + "." + QUICK_NOTE * bool(config.get("quick")),
           "", "## Models", "", *table_lines(model_headers(target), model_rows(metrics))]
    absent = [key for key in ("shortcut_audit", "faithfulness", "sanity_check") if not metrics.get(key)]
    if absent:
        out += ["", f"This metrics.json holds no {', no '.join(absent)} (an unfinished or partial run): "
                f"{'those sections are' if len(absent) > 1 else 'that section is'} left out."]
    audit = metrics.get("shortcut_audit")
    if audit:
        out += ["", f"## Shortcut audit: what the square does to p({target})", "",
                f"Mean p({target}) with the square at each corner and without it, and the change (paired, 95% bootstrap "
                f"interval); a corner is used when the interval lies above {VERDICT_MARGIN}, ignored when below. "
                f"Trained corner: {audit['trained_corner']}.", "",
                *table_lines(["model", "group", "corner", "images", f"p({target}) stamped", "clean", "change"],
                             [[p["model"], p["group"], p["corner"], p["n"], f"{p['p_stamped']:.3f}", f"{p['p_clean']:.3f}",
                               _fmt_ci(p["use"], "+.3f")] for p in audit["predictions"]])]
        for group in audit["groups"]:
            out += ["", f"## Verdicts, {group} ({VERDICT_MEASURE}, margin {VERDICT_MARGIN})", "",
                    *table_lines(VERDICT_HEADERS, verdict_rows(audit, group))]
        for measure in dict.fromkeys(r["measure"] for r in audit["records"]):
            for group in audit["groups"]:
                cells: dict[tuple, dict] = {}
                for r in (r for r in audit["records"] if (r["measure"], r["group"]) == (measure, group)):
                    cells.setdefault((r["model"], r["method"], r["layer"]), {})[r["corner"]] = \
                        f"{_fmt_ci(r['delta'], '+.2f')} ({r['stamped']:.2f} vs {r['clean']:.2f})"
                out += ["", f"## Change of {measure} when the square is added at each corner, {group} (stamped vs clean)",
                        "", *table_lines(["model", "method", "layer", *CORNERS],
                                         [[*key, *(row.get(c, "-") for c in CORNERS)] for key, row in cells.items()])]
        out += ["", "## Chance and ceiling of each measure, per method (computed at its native resolution)", "",
                *table_lines(["method", "layer", "cell px", *(f"{m} {k}" for m in AUDIT_MEASURES for k in ("chance", "ceiling"))],
                             [[b["method"], b["layer"], b["cell_px"], *(f"{b[f'{m}_{k}']:.3f}" if f"{m}_{k}" in b else "-"
                                                                         for m in AUDIT_MEASURES for k in ("chance", "ceiling"))]
                              for b in audit.get("baselines", [])])]
        hot = audit.get("hotspot")
        if hot:
            out += ["", f"## Milestone 2's prediction: stamped {target}s, Grad-CAM at the first audit layer", "",
                    *(f"- {name} model: hotspot within {audit['pointing_tolerance_px']} px of the square in "
                      f"{_fmt_ci(r)} of {hot['images']} images" for name, r in hot["near_square"].items()),
                    *(f"- SIM of the biased model's map with the standard model's map, {what}: {_fmt_ci(hot[key])}"
                      for key, what in (("sim_same_image", "same image"), ("sim_other_image", "another image"),
                                        ("sim_same_minus_other", "same minus another")) if key in hot)]
    faith = metrics.get("faithfulness")
    if faith:
        out += ["", f"## Faithfulness, standard model ({faith['images']} images, {faith.get('correctly_classified', '?')} "
                "correctly classified; true class)", "",
                *table_lines(["method", "images", "Spearman with occlusion", "minus random", "deletion AUC (lower better)",
                              "insertion AUC (higher better)", "minus random"],
                             [[method, r["images"], _fmt_ci(r["spearman_with_occlusion"]),
                               _fmt_ci(r["minus Random"]["spearman_with_occlusion"]) if "minus Random" in r else "-",
                               _fmt_ci(r["deletion_auc"]), _fmt_ci(r["insertion_auc"]),
                               _fmt_ci(r["minus Random"]["insertion_auc"]) if "minus Random" in r else "-"]
                              for method, r in faith["methods"].items()])]
    sanity = metrics.get("sanity_check")
    if sanity:
        stages = [row["stage"] for row in next(iter(sanity["spearman_with_original"].values()))[1:]]
        out += ["", f"## Sanity check ({sanity['images']} images; {sanity['pass_rule']})", "",
                "Mean Spearman with the trained model's maps, weights re-initialised cumulatively from the logits down.",
                "", *table_lines(["method", "images", *(st if i == 0 else "+" + st for i, st in enumerate(stages)),
                                  "decorrelates at", "verdict"],
                                 [[method, rows[0]["n"], *(f"{r['mean']:.3f}" for r in rows[1:]),
                                   sanity["decorrelates_at"][method], sanity["verdict"][method]]
                                  for method, rows in sanity["spearman_with_original"].items()])]
    out += ["", "## Figures", "", *(f"- {Path(f).name}" for f in metrics.get("figures", [])), "", "## Timings", "",
            *table_lines(["stage", "seconds"], [[k.removesuffix("_seconds"), f"{v:.1f}"]
                                                for k, v in metrics.get("timings", {}).items()])]
    return "\n".join(out) + "\n"


QUICK_NOTE = " A --quick run: a check of the pipeline on a tiny subset, not a result."


@reads_report
def console_summary(metrics: dict) -> list[str]:
    """At most 30 lines of at most 110 characters, from metrics.json: both models' accuracy and shortcut rates, the
    audit's verdicts at the target layer (the other layers counted), the sanity check, where everything is."""
    config, audit, out = metrics["config"], metrics["shortcut_audit"], Path(metrics["output_dir"])
    target, layer = report_target(config, who=""), comma_list(config["audit_layers"])[0]
    lines = ["", *console_lines("Summary." + QUICK_NOTE * bool(config["quick"])),
             *table_lines(model_headers(target), model_rows(metrics), markdown=False)]
    used = {p["corner"]: p for p in audit["predictions"]
            if (p["model"], p["group"]) == ("biased", "nonfrogs") and interval_side(judged_interval(p["use"])) == "above"}
    lines += console_lines("The biased model uses the square at: " + (", ".join(
        f"{c} (p({target}) of non-{target}s rises by {_fmt_ci(p['use'], compact=True)} with the square there)"
        for c, p in used.items())
        or (f"unknown: one non-{target} image in the audit cannot tell, so every verdict is unclear" if any(
            (p["model"], p["group"]) == ("biased", "nonfrogs") and p["use"]["n"] < 2 for p in audit["predictions"]) else
            f"no corner (adding it raises no corner's p({target}) clearly), so there is no shortcut to reveal and "
            "every verdict is n/a")))
    rows = [r[:1] + r[2:] for r in verdict_rows(audit, "nonfrogs", compact=True) if r[1] in (layer, "-")]
    lines += [f"Shortcut audit at {layer}, stamped non-{target}s: change of {VERDICT_MEASURE} when the square is added",
              *table_lines(["method", "reveals", "selective", "specific: std", "specific: control", "verdict"], rows,
                           markdown=False)]
    others = {}
    for v in audit["verdicts"]:
        if v["group"] == "nonfrogs" and v["layer"] not in ("-", layer):
            others.setdefault(v["layer"], []).append(v["verdict"])
    lines += console_lines("Verdicts at the other audited layers (methods per verdict; rows in summary.md): "
                           * bool(others) + "; ".join(
        f"{name}: " + ", ".join(f"{verdicts.count(k)} {k}" for k in dict.fromkeys(verdicts))
        for name, verdicts in others.items()) + ". " * bool(others) + "Columns: mean [95% interval]; reveals: the "
        "biased model, square at a corner it uses; selective: its largest change where it ignores the square; "
        "specific: the standard model and the control at the used corner. Rule: every interval on its side of "
        f"{VERDICT_MARGIN} (README).")
    sanity = metrics["sanity_check"]
    by_verdict = {}
    for method, verdict in sanity["verdict"].items():
        by_verdict.setdefault(verdict, []).append(method)
    lines += console_lines(f"Sanity check ({sanity['images']} images, fc+layer4 re-initialised): " +
                           "; ".join(f"{k}: {', '.join(v)}" for k, v in by_verdict.items()))
    lines += console_lines(f"Every table: {out / 'summary.md'}; every number: {out / 'metrics.json'}. "
                           f"Figures ({len(metrics['figures'])}) in {out}/: " +
                           ", ".join(Path(f).stem for f in metrics["figures"]) + ".")
    lines.append(f"Done in {metrics['timings']['total_seconds']:.0f} s.")
    return lines


@contextmanager
def timed(timings: dict[str, float], stage: str, cfg: Config | None = None, done: str = ""):
    """Records the block's wall time as timings[f"{stage}_seconds"]; with cfg, says `done` and the time after it."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[f"{stage}_seconds"] = time.perf_counter() - start
    if cfg is not None:
        say(cfg, f"{done} ({timings[f'{stage}_seconds']:.1f} s)")


# The files a run writes at the top of its output folder (tests/test_run_record.py checks the list against a run).
OUTPUT_FILES = ("run.json", "metrics.json", "summary.md", "audit_per_image.npz", "standard_cat_ship.png",
                "standard_class_grid.png", "stamped_frogs_standard_vs_biased.png", "faithfulness.png",
                "sanity_check.png", "shortcut_verdict.png", "shortcut_audit.png", "relocation_frog.png",
                "relocation_nonfrog.png", "cam_family_biased.png", "methods_standard.png", "methods_biased_frogs.png")


def looks_like_run_output(path: Path) -> bool:
    """Whether the file is recognisably one a run of this program writes, by its content (an older version's or the
    committed outputs/ have no run.json): run.json with a run id, metrics.json with its config, summary.md with its
    heading, the audit's per-image arrays, a PNG that matplotlib wrote."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"looks_like_run_output: path must be a file's path, got {described(path)}")
    path = Path(path)
    try:
        if path.suffix == ".json":
            content = json.loads(path.read_text())
            return isinstance(content, dict) and (
                "run_id" in content if path.name == "run.json" else  # a run's, or a seeds.py study's
                isinstance(content.get("config"), dict) and {"artifact_class", "target_layer", "seed"} <= set(
                    content["config"]) and ("models" in content or "per_seed" in content))
        if path.suffix == ".md":  # what summary_markdown writes from the metrics.json beside it (notes added to it
            text = path.read_text()  # were replaced: fault round 24); an older layout's: its heading and a section
            try:
                return text == summary_markdown(json.loads((path.parent / "metrics.json").read_text()))
            except (OSError, ValueError):  # no readable metrics.json beside it, or not this version's layout
                return text.startswith("# Results: ") and "\n## Models\n" in text
        if path.suffix == ".npz":
            with np.load(path) as arrays:
                return any(name.startswith(("scores/", "p_target/")) for name in arrays.files)
        from PIL import Image
        with Image.open(path) as image:
            return image.format == "PNG" and str(image.info.get("Software", "")).startswith("Matplotlib")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # unreadable, not JSON, not an npz or an image
        return False


def listed_outputs(out: Path) -> dict:
    """The files the folder's run.json lists as written by its run or by earlier runs there (name -> sha256, the
    latest writer's); {} without a readable record."""
    if not isinstance(out, (str, os.PathLike)):
        raise ValueError(f"listed_outputs: out must be an output folder (a path), got {described(out)}")
    record = read_run_record(Path(out) / "run.json")
    parts = [record.get("earlier_files", {}), record.get("files", {})]
    return {name: digest for part in parts if isinstance(part, dict) for name, digest in part.items()}  # edited: {}


def foreign_outputs(out: Path) -> dict[str, str]:
    """The files in `out` named like a run's outputs that a run would replace although they are not a run's as it
    wrote them -> why: "not recognisable as a run's output" (a user's own metrics.json, a damaged file) or "changed
    since a run wrote it" (listed in the folder's run.json, as this run's or an earlier one's, with another sha256: a
    user edited it). A file run.json does not list is this program's when recognised by content
    (looks_like_run_output: an older version's, the committed outputs/)."""
    if not isinstance(out, (str, os.PathLike)):
        raise ValueError(f"foreign_outputs: out must be an output folder (a path), got {described(out)}")
    out, listed = Path(out), listed_outputs(out)
    foreign = {}
    for name in OUTPUT_FILES:
        path = out / name
        if not path.is_file():
            continue
        if name in listed:
            try:
                same = hashlib.sha256(path.read_bytes()).hexdigest() == listed[name]
            except OSError:  # unreadable: the run could not have replaced it unnoticed either
                same = False
            if not same:
                foreign[name] = "changed since a run wrote it: its sha256 in run.json differs"
        elif not looks_like_run_output(path):
            foreign[name] = "not recognisable as a run's output: another program's file, or a damaged one"
    return foreign


def is_run_output(path: Path) -> bool:
    """Whether an existing file is one of a run's outputs (a benchmark's --out must not replace it)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"is_run_output: path must be a file's path, got {described(path)}")
    path = Path(path).absolute()
    if not path.is_file():
        return False
    if path.parent.name == "checkpoints" and path.suffix == ".pt":  # a saved model or training state (round 23)
        return True
    folders = list(path.parents)[:2]  # its output folder, or the one above checkpoints/
    listed = any(path.relative_to(folder).as_posix() in listed_outputs(folder) for folder in folders)
    return listed or path.name in OUTPUT_FILES and looks_like_run_output(path)


def resolved(path: Path, flag: str) -> Path:
    """The absolute path with links followed; a symbolic link loop is a UserError naming the flag."""
    try:
        return path.expanduser().resolve()
    except (RuntimeError, OSError) as exc:  # RuntimeError: a link loop (Python < 3.13); OSError: ELOOP (3.13+)
        raise UserError(f"{flag} {path} cannot be resolved ({exc}): a symbolic link that points back to itself? pass "
                        "a real folder") from None


def check_plotting() -> None:
    """matplotlib, which draws the figures, starts here: a bad MPLBACKEND (matplotlib refuses it on import) fails
    before any training, not after hours of it."""
    try:
        import matplotlib
        import matplotlib.cm  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except (ImportError, ValueError) as exc:
        backend = f" (MPLBACKEND={os.environ['MPLBACKEND']!r}: unset it or set MPLBACKEND=Agg)" * ("MPLBACKEND" in os.environ)
        raise UserError(f"matplotlib, which draws the figures, cannot start: {str(exc).split(';')[0]}{backend}") from None


def check_output_dir(path: Path, data_dir: Path) -> None:
    """Before any work: the output folder is not inside the data's train/ or test/ folders, which it would change,
    and it takes files (checkpoints/ too: probed by writing one, after which what the probe made is removed); no
    folder sits where the run will write one of its files (found only at the end, after hours, otherwise)."""
    path, data_dir = Path(path), Path(data_dir)
    if path.is_symlink() and not path.exists():  # blamed its (writable) parent: 'File exists'
        fix = "" if _broken_link(path).endswith("loop") else "create that folder, "
        raise UserError(f"--output-dir {path} is {_broken_link(path)}; {fix}remove the link, or pass another "
                        "--output-dir")
    try:
        inside = resolved(path, "--output-dir").relative_to(resolved(data_dir, "--data-dir")).parts[:2]
    except ValueError:  # not below the data folder
        inside = ()
    if {"train", "test"} & set(inside):
        raise UserError(f"--output-dir {path} is inside the data in --data-dir {data_dir}; pass a folder outside it")
    if resolved(path, "--output-dir") == resolved(data_dir, "--data-dir"):  # figures and checkpoints/ among the data
        raise UserError(f"--output-dir {path} is the data folder --data-dir itself; pass a folder of its own (e.g. "
                        "outputs)")
    if resolved(path, "--output-dir") in (Path("/").resolve(), Path.home().resolve()):  # checkpoints/ beside the system's files
        raise UserError(f"--output-dir {path} is the file system's root or your home folder; pass a folder of its own "
                        "(e.g. outputs)")
    for folder in (path, path / "checkpoints"):
        existing = next(p for p in [folder, *folder.parents] if p.exists())
        if not existing.is_dir():
            raise UserError(f"cannot write to --output-dir {path} ({existing} is a file); pass a writable folder")
    folders = [name for name in (*OUTPUT_FILES, ".lock") if (path / name).is_dir()]  # .lock: RunRecord's lock file
    if folders:
        raise UserError(f"--output-dir {path} holds folder(s) named like the files a run writes ({', '.join(folders)}); "
                        "move or rename them, or pass another --output-dir")
    if path.name == "checkpoints" and (path.parent / "run.json").is_file():  # a run nested in another's cache
        raise UserError(f"--output-dir {path} is the checkpoints/ folder of the run in {path.parent}; pass "
                        f"{path.parent} itself (its models are reused from there) or another folder")
    foreign = foreign_outputs(path) if path.is_dir() else {}
    if foreign:  # replaced without a word before (fault rounds 21, 22): files the run did not write must survive
        reasons = {reason: [name for name, why in foreign.items() if why == reason] for reason in foreign.values()}
        held = "; ".join(f"{', '.join(names)} ({reason})" for reason, names in reasons.items())
        raise UserError(f"--output-dir {path} holds files a run would replace: {held}; move "
                        f"{'them' if len(foreign) > 1 else 'it'} away or pass another --output-dir")
    try:
        probe_writable(path / "checkpoints")
    except OSError as exc:  # the folder that refused (what the probe made is gone): the output folder, or checkpoints/
        refused = next(p for p in [path / "checkpoints", *path.parents] if p.exists())
        where = "" if refused == path else f": {refused} refused"
        raise UserError(f"cannot write to --output-dir {path}{where} ({exc.strerror or exc}); pass a writable "
                        "folder" + (f" or make {refused} writable" if where else "")) from None


def probe_writable(folder: Path) -> None:
    """Makes `folder` (with the folders above it that are missing) and writes a file there, then removes all it made:
    the file system's OSError when the folder takes no files (a real probe: root passes os.access checks everywhere)."""
    probe, made = Path(folder) / f".probe-{os.getpid()}", _topmost_missing(Path(folder))
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) or SIGTERM (what Colab and job schedulers send) during a run; RunRecord gives it the message
    that says what was saved and what the same command will do."""

    def __init__(self, message: str = "", signal_name: str = "SIGINT"):
        super().__init__(message)
        self.signal_name = signal_name


def exit_status(interruption: KeyboardInterrupt) -> int:
    """The shell's status for a process the interrupting signal ended: 130 (Ctrl-C), 143 (SIGTERM), 129 (SIGHUP)."""
    return 128 + signal.Signals[getattr(interruption, "signal_name", "SIGINT")].value


def read_run_record(path: Path) -> dict:
    """An output folder's run.json as written, or {} where it is missing, unreadable, not JSON or not a dict (a
    damaged or edited record: what it would only have named is then unknown, not a traceback)."""
    if not isinstance(path, (str, os.PathLike)) or Path(path).is_dir() and Path(path).name != "run.json":
        raise ValueError(f"read_run_record: path must be an output folder's run.json (output-dir/run.json), got "
                         f"{described(path) if not isinstance(path, (str, os.PathLike)) else f'the folder {path}'}")
    try:
        info = json.loads(Path(path).read_text()) if Path(path).is_file() else {}
    except (OSError, ValueError):
        info = {}
    return info if isinstance(info, dict) else {}


class RunRecord:
    """output-dir/run.json, the record of one run: its id, status ("running", then "complete", "interrupted" or
    "failed"), the stage it is in, every file it wrote with its sha256, and earlier runs' files as the previous record
    listed them (earlier_files: so a file a user changed since is never mistaken for a run's); rewritten atomically at
    each change, so that whatever stops the run, a reader can tell which files in the folder belong together and whether the run
    finished. metrics.json repeats the id and the files. Files the run did not write are never deleted (an earlier
    run's stay, and the record tells them apart). While it is open the run holds output-dir/.lock: a second run on the
    same folder is refused with one line instead of mixing its files in (no lock where fcntl is missing: Windows)."""

    def __init__(self, out: Path, cfg: Config):
        if not isinstance(out, (str, os.PathLike)):
            raise ValueError(f"RunRecord: out must be the output folder (a path), got {described(out)}")
        check_config(cfg, "RunRecord")
        out = Path(out)
        self.out, self.path = out, out / "run.json"
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        self.info = dict(run_id=f"{started.replace(':', '').replace('-', '')}-{os.getpid()}", status="running",
                         stage="", checkpoint=None, training_state=None, started=started, ended=None, pid=os.getpid(), message="",
                         config=cfg.to_dict(), files={})

    def __enter__(self) -> "RunRecord":
        self.out.mkdir(parents=True, exist_ok=True)
        if self.path.is_dir():  # IsADirectoryError from the first save otherwise (the CLI names it too)
            raise UserError(f"{self.path} is a folder; the run's record is written there: move it away or pass another "
                            "--output-dir")
        self.lock = open(self.out / ".lock", "a")
        try:
            import fcntl
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:
            pass
        except BlockingIOError:
            self.lock.close()
            other = read_run_record(self.path)  # only to name the other run: a damaged record names none
            raise UserError(f"another run (id {other.get('run_id', '?')}, pid {other.get('pid', '?')}, started "
                            f"{other.get('started', '?')}) is writing to --output-dir {self.out}; wait for it to end "
                            "or pass another --output-dir") from None
        # The files earlier runs here wrote, with their sha256 then: a later edit of one is still told from a run's
        # output after this run replaces the record (fault round 23: an interrupted rerun forgot them)
        self.info["earlier_files"] = listed_outputs(self.out)
        self.save()
        return self

    def save(self) -> None:
        write_atomically(self.path, lambda p: p.write_text(json.dumps(self.info, indent=1, default=str)))

    def stage(self, name: str, checkpoint: Path | None = None) -> None:
        """The stage the run is in; while a model is trained or loaded, its checkpoint's path and the file its training
        state is saved to after each epoch."""
        state = None if checkpoint is None else str(checkpoint.with_suffix(".epoch.pt"))
        self.info.update(stage=name, checkpoint=None if checkpoint is None else str(checkpoint), training_state=state)
        self.save()

    def wrote(self, path: str | Path) -> str:
        """Adds a file this run wrote, or a checkpoint it reused, to the record with its sha256; returns the path."""
        try:
            name = Path(path).relative_to(self.out).as_posix()
        except ValueError:  # the record lists this run's outputs only
            raise ValueError(f"RunRecord.wrote: {path} is not inside the output folder {self.out}") from None
        self.info["files"][name] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        self.save()
        return str(path)

    def __exit__(self, kind, exc, traceback) -> None:
        status = "complete" if kind is None else "interrupted" if issubclass(kind, KeyboardInterrupt) else "failed"
        self.info.update(status=status, ended=time.strftime("%Y-%m-%dT%H:%M:%S"),
                         stage="" if status == "complete" else self.info["stage"],
                         message="" if exc is None else f"stopped by {getattr(exc, 'signal_name', 'SIGINT')}"
                         if status == "interrupted" else (str(exc).strip().splitlines() or [kind.__name__])[0][:300])
        if isinstance(exc, OSError):  # main()'s error line may point to this run's record, not an earlier run's
            exc.run_record = self.path
        try:
            self.save()
        except OSError as error:  # a full disk: the run's own error says so; this one must not hide it
            print(f"warning: the output folder {self.out} is gone" if not self.out.is_dir() else
                  f"warning: could not mark {self.path} as {status} ({error.strerror or error}); it still says "
                  f"'running' (with pid {os.getpid()}, which has ended)", file=sys.stderr)
        finally:
            self.lock.close()  # releases the lock
        if status == "interrupted":
            raise Interrupted(self.interruption_message(), getattr(exc, "signal_name", "SIGINT")) from None

    def interruption_message(self) -> str:
        """What an interruption at this stage leaves, and what running the same command again does."""
        stage = self.info["stage"]
        if stage.startswith("loading"):  # a checkpoint of this configuration was there to be loaded
            then = f"interrupted while {stage}: the same command reuses it ({self.info['checkpoint']})"
        elif stage.startswith("training"):
            state, cfg = Path(self.info["training_state"]), self.info["config"]
            done = ("trains it from epoch 1 (--no-resume or --retrain)" if cfg["retrain"] or not cfg["resume"] else
                    f"continues it after its last completed epoch (saved in {state}; --no-resume starts over)"
                    if state.exists() else "trains it from epoch 1 (no epoch had completed)")
            then = f"interrupted while {stage}: the same command {done}"
        else:
            then = (f"interrupted during {stage}, after training: both models are saved in {self.out / 'checkpoints'}, "
                    "so the same command reuses them and redoes only the evaluation, audit and figures")
        try:
            others = sorted(p.name for p in self.out.iterdir() if p.is_file() and not p.name.startswith(".")
                            and p.name != "run.json" and p.name not in self.info["files"])
        except OSError:  # the folder is gone or unreadable: nothing more to say about it
            others = []
        files = len(self.info["files"])
        listed = f"the {files} file{'s' * (files != 1)}" if files else "no files"
        earlier = f"; {', '.join(others[:4])}{' and more' * (len(others) > 4)} in {self.out} were not written by this run"
        return (f"{then}; {self.path} marks run {self.info['run_id']} as interrupted and lists {listed} it wrote or "
                "reused" + (earlier if others else ""))


def keeps_global_settings(function: Callable) -> Callable:
    """run() leaves the process as it found it (a notebook kernel runs it again, or runs other work after it): the
    TF32 switches (fp32_without_tf32) and the global torch and numpy random states are restored when it returns or
    raises."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        rng = torch.random.get_rng_state(), np.random.get_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        try:
            return function(*args, **kwargs)
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.random.set_rng_state(rng[0])
            np.random.set_state(rng[1])
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
    return wrapper


def audit_models(models: dict[str, nn.Module], seed: int) -> dict[str, nn.Module]:
    """The three models of the audit (AUDIT_MODELS): the control is the biased model with fc and layer4 re-initialised,
    which keeps the square's features below layer4 but not the decision that uses them."""
    return dict(standard=models["standard"], biased=models["biased"], control=reinitialised(models["biased"], "layer4", seed))


def check_layers(target_layer: str, audit_layers: Sequence[str]) -> None:
    """Grad-CAM of every requested layer on an untrained model and one blank image: a layer that does not exist,
    has no [B, C, H, W] output or runs twice per forward pass is an error now, not after hours of training."""
    if isinstance(audit_layers, str) or not isinstance(audit_layers, Sequence) \
            or not all(isinstance(name, str) for name in [target_layer, *audit_layers]):  # a str: a layer per character
        raise ValueError(f"check_layers: expects a layer name and a list of layer names ('layer4.1.conv2', ['layer4', "
                         f"'layer3']), got {described(target_layer)} and {described(audit_layers)}")
    model = build_model(len(CIFAR10_CLASSES))
    names = []
    for i, layer in enumerate([target_layer, *audit_layers]):
        try:
            grad_cam = GradCAM(model, layer)
            grad_cam(torch.zeros(1, 3, 32, 32))
        except UserError as exc:  # the flag's layer, not the class the check happens to use
            flag = "--target-layer" if i == 0 else "--audit-layers"
            raise UserError(f"{flag}: " + str(exc).removeprefix("GradCAM: ")) from None
        names.append(grad_cam.layer_name)
    for name in names[1:]:
        same = [given for given, other in zip(audit_layers, names[1:]) if other == name]
        if len(same) > 1:  # one layer under two names (layer4.1 and layer4[-1]) or the same name twice
            raise UserError(f"--audit-layers lists layer {name} {len(same)} times ({', '.join(same)}); give each once")


@keeps_global_settings
def run(cfg: Config) -> dict:
    """The whole experiment: data, both models, evaluation, explanations and their audits, figures,
    metrics.json. Returns the metrics. Every file it writes is listed in output-dir/run.json (RunRecord)."""
    check_config(cfg, "run")
    start = time.perf_counter()
    timings: dict[str, float] = {}

    ##### Set-up: what the user can get wrong fails here, before data is loaded or a model trained
    device = resolve_device(cfg.device)
    precision = precision_plan(device, cfg.amp, cfg.forward_amp)
    cfg = dataclasses.replace(cfg, forward_amp=precision["forward_only_explanations"] == "bf16")  # what runs
    cfg = dataclasses.replace(cfg, progress=cfg.progress and not cfg.quiet)
    say(cfg, f"device {device}: training {precision['training']}, occlusion/deletion/Score-CAM "
             f"{precision['forward_only_explanations']}, predictions and gradient maps fp32 ({precision['reason']})")
    fp32_without_tf32(device)
    out, show = Path(cfg.output_dir), in_notebook()
    check_output_dir(out, Path(cfg.data_dir))
    check_layers(cfg.target_layer, cfg.audit_layer_names)
    check_plotting()
    seed_everything(cfg.seed)

    ##### Data
    with timed(timings, "data"):
        train, test, source = load_cifar10(cfg, device)
        fingerprint = data_fingerprint(train, test)
    say(cfg, f"data: {source}: {len(train.labels)} train / {len(test.labels)} test images (fingerprint {fingerprint})")

    ##### From here on the run writes to the output folder, under its lock, and records each file in run.json
    with RunRecord(out, cfg) as record:
        say(cfg, f"run {record.info['run_id']}: {record.path} lists every file it writes")

        ##### Train both models, or reuse checkpoints of the same configuration and data
        models, results = {}, {}
        for name in ("standard", "biased"):
            saved = checkpoint_path(cfg, device, name == "biased", fingerprint)[0]
            record.stage(f"loading the {name} model's checkpoint" if saved.is_file() and not cfg.retrain else
                         f"training the {name} model", saved)  # loading: until the file turns out unusable
            models[name], results[name] = train_or_load(cfg, train, test, device, name == "biased", fingerprint,
                                                        lambda: record.stage(f"training the {name} model", saved))
            record.wrote(results[name]["checkpoint"])
        timings["train_seconds"] = sum(r["train_seconds"] for r in results.values() if not r["reused_checkpoint"])

        ##### Evaluate: accuracy, and what the square does to each model's predictions
        record.stage("the evaluation")
        logits = {}
        for name, model in models.items():
            with timed(timings, f"evaluate_{name}", cfg, f"evaluated the {name} model on {len(test.labels)} test "
                                                          "images, clean and stamped"):
                model_metrics, logits[name] = evaluate_model(model, cfg, test)
            results[name].update(model_metrics)
        std_logits = logits["standard"]["clean"]

        ##### Milestone 2 figures: Grad-CAM of the standard model, and of both models on stamped frogs
        record.stage("the Milestone 2 figures")
        layer = resolve_layer(models["standard"], cfg.target_layer)[0]
        cat_ship = [CIFAR10_CLASSES.index("cat"), CIFAR10_CLASSES.index("ship")]
        with timed(timings, "figures", cfg, "Milestone 2 figures: Grad-CAM of the standard model, both models on "
                                            "stamped frogs"):
            picks = pick_examples(test.labels, cat_ship, cfg.examples_per_class, std_logits)
            shown = {"cat/ship": (len(picks), 2 * cfg.examples_per_class, "--examples-per-class")}
            figures = [record.wrote(gradcam_examples_figure(
                models["standard"], test.images[picks], test.labels[picks], cat_ship, cfg.examples_per_class, layer,
                cfg.channels_last, "test cats and ships", out / "standard_cat_ship.png", show))]
            picks = pick_examples(test.labels, range(len(CIFAR10_CLASSES)), 1, std_logits)
            figures.append(record.wrote(gradcam_examples_figure(
                models["standard"], test.images[picks], test.labels[picks], range(len(CIFAR10_CLASSES)), 1, layer,
                cfg.channels_last, "test images, one per class", out / "standard_class_grid.png", show)))
            frogs = pick_examples(test.labels, [cfg.artifact_class], cfg.frog_examples)
            shown["stamped-frog"] = (len(frogs), cfg.frog_examples, "--frog-examples")
            for what, (have, asked, flag) in shown.items():
                if have < asked:  # a small --test-subset: the figure silently showed fewer
                    say(cfg, f"note: the test set has {have} of the {asked} images {flag} asks of the {what} figure "
                             f"(--test-subset {cfg.test_subset}); it shows those")
            figures.append(record.wrote(stamped_comparison_figure(
                models, stamp_square(test.images[frogs], cfg.square), test.labels[frogs], layer, cfg.channels_last,
                f"Test {CIFAR10_CLASSES[cfg.artifact_class]}s stamped with the {cfg.artifact_size}x{cfg.artifact_size} "
                f"square ({cfg.artifact_corner}): standard vs. biased model",
                out / "stamped_frogs_standard_vs_biased.png", show)))

        ##### Shortcut audit: the same seeded images without the square and with it at each corner, explained by the
        ##### standard model, the biased model, and the control (the biased model with fc and layer4 re-initialised)
        record.stage("the shortcut audit")
        with timed(timings, "audit", cfg, f"shortcut audit: up to {cfg.audit_images} images per group x 2 groups "
                                          f"x 5 conditions x 3 models, {len(cfg.audit_layer_names)} layer{'s' * (len(cfg.audit_layer_names) != 1)}"):
            audit, audit_per_image = shortcut_audit(audit_models(models, cfg.seed), cfg, test)
        counts = {group: info["images"] for group, info in audit["groups"].items()}
        if min(counts.values()) < cfg.audit_images:
            say(cfg, f"note: the test set gave the audit {', '.join(f'{n} {g[:-1] if n == 1 else g}' for g, n in counts.items())} (asked: "
                     f"{cfg.audit_images} per group)")

        ##### Faithfulness of each map to the standard model (a seeded sample, correctly classified first)
        record.stage("the faithfulness measures")
        picks, n_correct = sample_correct(std_logits, test.labels, cfg.faithfulness_images, cfg.seed)
        with timed(timings, "faithfulness", cfg, f"faithfulness: {len(picks)} images, occlusion and "
                                                 "deletion/insertion"):
            faith, faith_maps = faithfulness(models["standard"], cfg, test.images[picks], test.labels[picks])
        faith["correctly_classified"] = n_correct
        if len(picks) < cfg.faithfulness_images:  # a test set (or --test-subset) smaller than asked
            say(cfg, f"note: the test set gave the faithfulness measures {len(picks)} images (asked: "
                     f"{cfg.faithfulness_images}), so the sanity check uses {min(cfg.sanity_images, len(picks))}")
        if n_correct < len(picks):
            say(cfg, f"note: only {n_correct} of the {len(picks)} faithfulness images are correctly classified; the "
                     "maps explain their true class")

        ##### Sanity check on the first faithfulness images, whose trained-model maps are already computed
        record.stage("the sanity check")
        k = min(cfg.sanity_images, len(picks))
        with timed(timings, "sanity", cfg, f"sanity check: {k} images, {len(CASCADE)} randomisation stages"):
            sanity = sanity_check(models["standard"], cfg, test.images[picks[:k]], test.labels[picks[:k]],
                                  {method: maps[:k] for method, maps in faith_maps.items()})

        ##### Milestone 3 figures
        record.stage("the Milestone 3 figures")
        target = CIFAR10_CLASSES[cfg.artifact_class]
        with timed(timings, "m3_figures", cfg, "Milestone 3 figures: faithfulness, sanity check, audit"):
            from tqdm.auto import tqdm
            frogs = pick_examples(test.labels, [cfg.artifact_class], 4)
            others = pick_examples(test.labels, [c for c in range(len(CIFAR10_CLASSES)) if c != cfg.artifact_class][:4],
                                   1)
            shown = torch.cat([frogs, others])
            first = torch.tensor([audit_per_image[f"indices/{g}"][0] for g in audit["groups"]])  # its stored examples
            occlusion = (cfg.occlusion_patch, cfg.occlusion_stride, cfg.eval_batch_size, cfg.forward_amp)  # Occlusion()
            picks = pick_examples(test.labels, cat_ship, 2, std_logits)
            drawings = [  # one call each, in this order, under one progress bar
                lambda: faithfulness_figure(faith, out / "faithfulness.png", show),
                lambda: sanity_figure(sanity, out / "sanity_check.png", show),
                lambda: verdict_figure(audit, out / "shortcut_verdict.png", show),
                lambda: audit_figure(models, stamp_square(test.images[shown], cfg.square), test.labels[shown],
                                     cfg.artifact_class, len(frogs), layer, cfg.channels_last,
                                     out / "shortcut_audit.png", show),
                *(lambda group=group, index=index, stem=stem: relocation_figure(
                    audit, audit_per_image, test.images[index], int(test.labels[index]), group, cfg.square,
                    out / f"relocation_{stem}.png", show)
                  for (group, index), stem in zip(zip(audit["groups"], first), ("frog", "nonfrog"))),
                lambda: cam_family_figure(audit, audit_per_image, test.images[first], test.labels[first], cfg.square,
                                          out / "cam_family_biased.png", show),
                lambda: methods_figure(models["standard"], test.images[picks], test.labels[picks], layer,
                                       cfg.channels_last, occlusion, "Standard model: four explanation methods on "
                                       "test cats and ships (true class)", out / "methods_standard.png", show),
                lambda: methods_figure(models["biased"], stamp_square(test.images[frogs], cfg.square),
                                       test.labels[frogs], layer, cfg.channels_last, occlusion,
                                       f"Biased model: four explanation methods on stamped test {target}s",
                                       out / "methods_biased_frogs.png", show)]
            figures += [record.wrote(draw()) for draw in tqdm(drawings, "figures", leave=False,
                                                                disable=not cfg.progress)]

        ##### The per-image audit arrays, metrics.json (with the run's id and files) and the summary tables
        record.stage("writing metrics.json")
        record.wrote(write_atomically(out / "audit_per_image.npz", lambda p: save_npz(p, audit_per_image)))
        timings["total_seconds"] = time.perf_counter() - start
        metrics = dict(config=cfg.to_dict(), seeds=[cfg.seed], environment=environment_info(device),
                       precision=precision, data=dict(source=source, fingerprint=fingerprint,
                                                      train_images=len(train.labels), test_images=len(test.labels),
                                                      class_names=list(CIFAR10_CLASSES)),
                       models=results, shortcut_audit=audit, faithfulness=faith, sanity_check=sanity,
                       figures=figures, timings=timings, output_dir=str(out),
                       run=dict(id=record.info["run_id"], started=record.info["started"],
                                files=dict(record.info["files"])))
        record.wrote(write_atomically(out / "metrics.json",
                                      lambda p: p.write_text(json.dumps(metrics, indent=2, default=str))))
        record.wrote(write_atomically(out / "summary.md", lambda p: p.write_text(summary_markdown(metrics))))
    if cfg.quiet:
        to_console(f"wrote {out}/metrics.json, summary.md and {len(figures)} figures in "
                   f"{timings['total_seconds']:.0f} s")
    else:
        to_console(*console_summary(metrics))
    return metrics


def close_progress_bars() -> None:
    """Closes the progress bars a stopped stage left open (its loop never ended), so that the line main() prints next
    starts on a line of its own instead of after a bar's '12.3it/s]'."""
    tqdm_module = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm_module, "tqdm", None), "_instances", ())):
        try:
            bar.close()
        except Exception:  # a bar is cosmetic: closing it must never hide the message that follows
            pass


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: 0 on success, 2 (with one `error:` line) on a problem the user can fix, 130 after
    Ctrl-C, 143 after SIGTERM and 129 after SIGHUP (with one line saying what was saved and what the same command
    will do)."""
    previous, cfg, started = _stop_on_signals(), None, time.strftime("%Y-%m-%dT%H:%M:%S")
    try:
        try:
            cfg = parse_config(argv)  # Config's own checks (e.g. a class index out of range) raise UserError
            run(cfg)
        finally:  # whatever ended the run: its progress bars are closed before a message is printed
            close_progress_bars()
    except SystemExit as exc:  # argparse has printed its one line (or --help): a status, not an exception
        return int(exc.code or 0)
    except UserError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except torch.cuda.OutOfMemoryError:
        print("error: the GPU ran out of memory; lower --batch-size or --eval-batch-size", file=sys.stderr)
        return 2
    except ConsoleGone as exc:  # not the output folder: the console refused a line
        try:  # later writes (Python's own flush at exit) go nowhere instead of adding a traceback
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        print(f"error: could not write to the console ({exc}: a pipe whose reader has ended, such as | head, or a "
              "full disk behind > file), so the run stopped; send the output to a file with room, or pass --quiet",
              file=sys.stderr)
        return 2
    except OSError as exc:  # the file system refused: disk full, a name too long, a folder that cannot be made
        import errno
        where = exc.filename or (cfg.output_dir if cfg is not None else "")
        advice = ("free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "check the permissions" if
                  exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else "check the path")
        record = getattr(exc, "run_record", None)  # set when the run had begun its record
        flag = "--data-dir" if cfg is not None and _is_below(where, cfg.data_dir) else "--output-dir"
        print(f"error: {one_line(exc.strerror or exc)}{f' ({one_line(where)})' if where else ''}; {advice} or pass "
              f"another {flag}"
              + (f" ({record} lists what this run wrote)" if record is not None and record.exists() else ""),
              file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # with a message when the run's record was open; else before or after it
        signal_name = getattr(exc, "signal_name", "SIGINT")
        try:  # after SIGHUP the terminal may be gone; run.json says it all the same
            print(one_line(str(exc) or f"interrupted ({signal_name}) " + _outside_the_record(cfg, started)),
                  file=sys.stderr)
        except OSError:
            pass
        return exit_status(exc)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 0


def _is_below(path: Any, folder: str) -> bool:
    """True when `path` is `folder` or lies inside it (as written: no link is followed)."""
    try:
        return Path(os.path.abspath(os.fspath(path))).is_relative_to(os.path.abspath(folder))
    except (TypeError, ValueError):
        return False


def _outside_the_record(cfg: Config | None, started: str) -> str:
    """What an interruption outside the run's record (RunRecord) leaves: this main() call's run.json exists only if
    the run had got as far as writing (then it is complete: the interruption came while the summary was printed)."""
    path = Path(cfg.output_dir) / "run.json" if cfg is not None else None
    info = read_run_record(path) if path is not None else {}
    if info.get("pid") == os.getpid() and str(info.get("started", "")) >= started:
        return (f"after run {info.get('run_id')} had ended ({info.get('status')}); {path} lists the files it wrote or "
                "reused")
    return "before the run began writing; nothing was written" + (f" to {cfg.output_dir}" if cfg is not None else "")


def _stop_on_signals() -> dict:
    """Ctrl-C (SIGINT), SIGTERM (Colab's and job schedulers' stop) and SIGHUP (a closed terminal or SSH session) stop
    the run the same way, with the same record and message. The first one raises Interrupted; from then on both are ignored until main() returns, so a second
    Ctrl-C cannot cut short the saving of run.json or the message (it printed tracebacks from wherever it landed).
    Returns the handlers it replaced, which main() puts back; none where they cannot be set (not the main thread)."""
    numbers = (signal.SIGINT, signal.SIGTERM, *([signal.SIGHUP] if hasattr(signal, "SIGHUP") else []))

    def stop(signum, frame):
        for number in numbers:
            signal.signal(number, signal.SIG_IGN)
        raise Interrupted(signal_name=signal.Signals(signum).name)
    try:
        return {number: signal.signal(number, stop) for number in numbers}
    except ValueError:  # signals can only be set from the main thread
        return {}


if __name__ == "__main__":
    exit_code = main()
    if not in_notebook():  # a notebook cell must not raise SystemExit
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C during interpreter shutdown would print tracebacks
        sys.exit(exit_code)

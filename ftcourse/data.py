"""The course's tasks: cluttered MNIST digits 0-4 (source) and 5-9 (target), few-shot subsets, shifts, image folders.

Everything is deterministic from a seed and works offline. Images are 3x32x32 floats so the same
code runs on torchvision ResNets; the target can be shifted (contrast, colour, inversion, blur, noise).
"""
from __future__ import annotations

import gzip
import numbers
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from .files import verified_path
from .inputs import require_int

__all__ = [
    "Task", "SHIFTS", "interleave", "render", "labels_of", "FreshClutter", "source_indices", "IMAGENET_MEAN",
    "IMAGENET_STD", "load_digits", "source_task", "target_task", "shifted_test_set",
    "shift_images", "source_stats", "normalize", "denormalize", "make_loader", "image_folder",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's ImageNet weights expect these
IMAGENET_STD = (0.229, 0.224, 0.225)
SHIFTS = ("contrast", "colour", "invert", "blur", "noise")
SOURCE_DIGITS = (0, 1, 2, 3, 4)
TARGET_DIGITS = (5, 6, 7, 8, 9)
SOURCE_SPLIT = (400, 100)  # train, test images per class
TARGET_SPLIT = (300, 200)  # pool (few-shot training + validation), fixed test set (200 x 5 = 1000 test images)
TARGET_VAL = 50  # per class, taken from the end of the pool: never drawn for training, never the test set
_SPLIT_SEED = 1234  # fixes which images are train / test, once and for all
CLUTTER = 4  # fragments of other digits around each digit
_TEST_SEED = 99  # the clutter of the fixed test images
_VAL_SEED = 98  # the clutter of the fixed validation images


@dataclass(frozen=True)
class Task:
    """A classification task held in memory: normalised 3x32x32 images and integer labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    x_val: torch.Tensor | None = None  # a validation split (target tasks): choose rates, steps, policies on it
    y_val: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def loaders(self, batch_size: int = 64, seed: int = 0) -> tuple[DataLoader, DataLoader]:
        """(shuffled train loader, ordered test loader), reproducible from `seed`."""
        return (make_loader(self.x_train, self.y_train, batch_size, shuffle=True, seed=seed),
                make_loader(self.x_test, self.y_test, 512, shuffle=False))

    def __repr__(self) -> str:
        val = f", val={len(self.y_val)}" if self.y_val is not None else ""
        return (f"Task({self.name!r}, train={len(self.y_train)}{val}, test={len(self.y_test)}, "
                f"classes={list(self.classes)})")


@lru_cache(maxsize=1)
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The shipped 5,000 MNIST digits (500 per class): uint8 images (N, 28, 28) and labels (N,)."""
    with gzip.open(verified_path("mnist5k.npy.gz"), "rb") as f:
        table = np.load(f, allow_pickle=False)
    images = table[:, :784].reshape(-1, 28, 28)
    images.setflags(write=False)
    labels = table[:, 784].astype(np.int64)
    labels.setflags(write=False)
    return images, labels


def render(indices: np.ndarray, seed: int, clutter: int = CLUTTER, fragment: int = 10,
           canvas: int = 32) -> torch.Tensor:
    """Cluttered digits: each digit at a random place on a 32x32 canvas among `clutter` 10x10 fragments
    cut from other digits of the same set (after Mnih et al. 2014, cluttered MNIST).

    Returns float images (N, 3, 32, 32) in [0, 1], grey in 3 channels; deterministic from `seed`.
    Clutter is what makes the task hard to learn from a few examples and what pretraining teaches.
    """
    images, _ = load_digits()
    out = _scatter(images, np.asarray(indices), seed, clutter, fragment, canvas)
    return torch.from_numpy(out).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def _scatter(digits: np.ndarray, indices: np.ndarray, seed: int, clutter: int, fragment: int,
             canvas: int) -> np.ndarray:
    """The clutter loop of `render` and `_clutter_render`: float32 canvases (N, canvas, canvas) in [0, 1].

    `digits` are uint8 (M, 28, 28); for each of `indices`, `clutter` fragment x fragment pieces of digits drawn
    from `indices`, then the digit itself, each at a random place (max-composited), all drawn from `seed`.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros((len(indices), canvas, canvas), np.float32)
    for k, i in enumerate(indices):
        c = out[k]
        for _ in range(clutter):
            j = indices[rng.integers(len(indices))]
            fy, fx = rng.integers(4, 28 - fragment - 4 + 1, size=2)
            py, px = rng.integers(0, canvas - fragment + 1, size=2)
            np.maximum(c[py:py + fragment, px:px + fragment], digits[j, fy:fy + fragment, fx:fx + fragment] / 255.0,
                       out=c[py:py + fragment, px:px + fragment])
        oy, ox = rng.integers(0, canvas - 28 + 1, size=2)
        np.maximum(c[oy:oy + 28, ox:ox + 28], digits[i] / 255.0, out=c[oy:oy + 28, ox:ox + 28])
    return out


def _split(digits: tuple[int, ...], per_class: tuple[int, int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Fixed per-class (first, second) index lists for the given digits."""
    _, labels = load_digits()
    rng = np.random.default_rng(_SPLIT_SEED)
    first, second = [], []
    for d in digits:
        idx = rng.permutation(np.flatnonzero(labels == d))
        first.append(idx[: per_class[0]])
        second.append(idx[per_class[0]: per_class[0] + per_class[1]])
    return first, second


def _per_channel(v, x: torch.Tensor, what: str = "mean") -> torch.Tensor:
    """A per-channel mean or std shaped to broadcast over (N, C, H, W) or (C, H, W) images."""
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4):
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected images (N, C, H, W) or (C, H, W) as a tensor, got {shape}")
    v = torch.as_tensor(v, dtype=x.dtype, device=x.device).reshape(-1)
    if v.numel() not in (1, x.shape[-3]):
        raise ValueError(f"{what} has {v.numel()} values but the images have {x.shape[-3]} channels: "
                         f"give one {what} per channel (e.g. task.{what})")
    return v.view(-1, 1, 1)


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """(x - mean) / std per channel, for (N, C, H, W) or (C, H, W) images."""
    s = _per_channel(std, x, "std")
    if not bool((s > 0).all()):
        raise ValueError(f"std must be > 0 in every channel, got {s.flatten().tolist()}: use (1.0, 1.0, 1.0) to "
                         "leave the scale alone")
    return (x - _per_channel(mean, x)) / s


def denormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """x * std + mean per channel: normalised images back to pixels (undoes `normalize`)."""
    return x * _per_channel(std, x, "std") + _per_channel(mean, x)


@lru_cache(maxsize=1)
def source_stats() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the source training images: the backbone's input normalisation."""
    train, _ = _split(SOURCE_DIGITS, SOURCE_SPLIT)
    x = render(np.concatenate(train), seed=0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3))
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def _check_norm(norm) -> None:
    """Fail before any image is rendered if `norm` is not something _resolve_norm takes."""
    if norm is None or (isinstance(norm, str) and norm in ("source", "own", "none")):
        return
    if isinstance(norm, (tuple, list)) and len(norm) == 2:
        return
    raise ValueError(f"norm must be 'source', 'own', 'none' or a (mean, std) pair, got {norm!r}")


def _resolve_norm(norm, x_train: torch.Tensor):
    if norm == "source":
        return source_stats()
    if norm == "own":  # the target's own training statistics
        return (tuple(x_train.mean(dim=(0, 2, 3)).tolist()), tuple(x_train.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist()))
    if norm is None or norm == "none":
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if isinstance(norm, (tuple, list)) and len(norm) == 2:
        return tuple(map(float, norm[0])), tuple(map(float, norm[1]))
    raise ValueError(f"norm must be 'source', 'own', 'none' or a (mean, std) pair, got {norm!r}")


def _check_shift(kind, severity) -> None:
    """A known shift name (or None) and a severity in [0, 1]; checked before any image is made."""
    if kind is not None and kind not in SHIFTS:
        raise ValueError(f"unknown shift {kind!r}; choose one of {SHIFTS} or None")
    ok = isinstance(severity, numbers.Real) and not isinstance(severity, bool) and 0.0 <= severity <= 1.0
    if not ok:  # NaN fails the comparison too
        raise ValueError(f"severity must be a number in [0, 1] (0 = no shift, 1 = full shift), got {severity!r}")


def shift_images(x: torch.Tensor, kind: str | None, severity: float = 1.0, seed: int = 0) -> torch.Tensor:
    """A distribution shift of [0, 1] images (N, 3, H, W): contrast, colour, invert, blur or noise."""
    _check_shift(kind, severity)
    if kind is None:
        return x
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor of images (N, 3, H, W), got {type(x).__name__}")
    s = float(severity)
    if kind == "contrast":  # squeeze intensities towards mid-grey
        return 0.5 + (x - 0.5) * (1.0 - 0.75 * s)
    if kind == "colour":  # orange strokes on a dark blue background
        fg = torch.tensor([1.0, 0.55, 0.1]).view(1, 3, 1, 1)
        bg = torch.tensor([0.05, 0.15, 0.55]).view(1, 3, 1, 1)
        coloured = bg * (1 - x) + fg * x
        return (1 - s) * x + s * coloured
    if kind == "invert":  # dark strokes on white
        return (1 - s) * x + s * (1.0 - x)
    if kind == "blur":
        from torchvision.transforms.functional import gaussian_blur
        sigma = 0.1 + 1.4 * s
        return gaussian_blur(x, kernel_size=7, sigma=sigma)
    if kind == "noise":
        g = torch.Generator().manual_seed(seed)
        return (x + 0.35 * s * torch.randn(x.shape, generator=g)).clamp(0.0, 1.0)
    raise AssertionError(f"shift {kind!r} is in SHIFTS but not implemented")  # _check_shift refused the rest


def labels_of(indices: np.ndarray, digits: tuple[int, ...]) -> torch.Tensor:
    """Class labels 0..k-1 of the given image indices, in the order of `digits`."""
    _, labels = load_digits()
    remap = {d: i for i, d in enumerate(digits)}
    return torch.tensor([remap[int(v)] for v in labels[np.asarray(indices)]], dtype=torch.long)


def interleave(per_class: list[np.ndarray]) -> np.ndarray:
    """Indices of each class taken in turn (class 0, 1, ..., 0, 1, ...): every prefix is as class-balanced
    as possible."""
    longest = max(len(p) for p in per_class)
    return np.array([p[i] for i in range(longest) for p in per_class if i < len(p)], dtype=np.int64)


def _build(name, digits, train_idx, train_seed, test_idx, shift, severity, test_shift, norm, val_idx=None) -> Task:
    x_tr = shift_images(render(train_idx, seed=train_seed), shift, severity, seed=train_seed + 1)
    x_te = shift_images(render(test_idx, seed=_TEST_SEED), test_shift, severity, seed=_TEST_SEED + 1)
    mean, std = _resolve_norm(norm, x_tr)
    val = {}
    if val_idx is not None:
        x_va = shift_images(render(val_idx, seed=_VAL_SEED), shift, severity, seed=_VAL_SEED + 1)
        val = {"x_val": normalize(x_va, mean, std), "y_val": labels_of(val_idx, digits)}
    return Task(name, normalize(x_tr, mean, std), labels_of(train_idx, digits), normalize(x_te, mean, std),
                labels_of(test_idx, digits), tuple(str(d) for d in digits), mean, std, **val)


def source_indices() -> tuple[np.ndarray, np.ndarray]:
    """Image indices of the source task: (train, test), 400 and 100 per digit 0-4."""
    train, test = _split(SOURCE_DIGITS, SOURCE_SPLIT)
    return np.concatenate(train), np.concatenate(test)


def source_task(norm="source", seed: int = 0) -> Task:
    """The pretraining task: cluttered digits 0-4, 400 train and 100 test images per class.

    `seed` sets the clutter of the training images (pretraining draws new clutter every epoch).
    """
    _check_norm(norm)
    train, test = source_indices()
    return _build("source: cluttered digits 0-4", SOURCE_DIGITS, train, seed, test, None, 1.0, None, norm)


SOURCE_VAL = 50  # per class, from the end of the source training images: shifted_source_task's validation split


def relabelled_source_task(shots: int = 10, seed: int = 0, mapping=(1, 2, 3, 4, 0)) -> Task:
    """The source task with its *labels* remapped and its inputs unchanged: an output-level shift (Lee et al. 2023's
    third kind, like their CIFAR-Flip). Image of digit i is labelled `mapping[i]` (a permutation of 0-4 that moves
    every label: the pretrained head is wrong on every image). Splits as in `shifted_source_task`.
    """
    mapping = tuple(mapping) if isinstance(mapping, (tuple, list)) else mapping
    n = len(SOURCE_DIGITS)
    if (not isinstance(mapping, tuple) or sorted(mapping) != list(range(n))
            or any(int(m) == i for i, m in enumerate(mapping))):
        raise ValueError(f"mapping must be a permutation of 0-{n - 1} that moves every label, e.g. (1, 2, 3, 4, 0), "
                         f"got {mapping!r}")
    task = _source_splits(None, shots, seed, 1.0)
    remap = torch.tensor(mapping)
    classes = tuple(task.classes[mapping.index(i)] for i in range(n))  # class k is the digit labelled k
    return replace(task, name=f"source digits 0-4, labels remapped {mapping}, {shots}/class", classes=classes,
                   y_train=remap[task.y_train], y_val=remap[task.y_val], y_test=remap[task.y_test])


def shifted_source_task(shift: str, shots: int = 10, seed: int = 0, severity: float = 1.0) -> Task:
    """The source task (digits 0-4, the pretrained head's own labels) with its inputs shifted: an input-level shift.

    `shots` training images per class drawn with `seed` from the first 350 source training images of each
    class (images the backbone was pretrained on, now shifted); validation: the last 50 per class; test:
    the 500 source test images, never seen in pretraining. All three shifted by `shift` at `severity`,
    normalised with the source statistics, class-interleaved. The labels do not change: only the inputs
    did (for surgical fine-tuning, Lee et al. 2023; `target_task(shift=...)` changes both).
    """
    _check_shift(shift, severity)
    if shift is None:
        raise ValueError(f"shift must be one of {SHIFTS}: shifted_source_task is the source task with shifted inputs")
    return _source_splits(shift, shots, seed, severity)


def _source_splits(shift, shots: int, seed: int, severity: float) -> Task:
    """shifted_source_task's splits (shift None: the inputs as they are)."""
    limit = SOURCE_SPLIT[0] - SOURCE_VAL
    require_int("shots", shots, low=1, high=limit, hint="images per class")
    require_int("seed", seed, low=0)
    train, test = _split(SOURCE_DIGITS, SOURCE_SPLIT)
    rng = np.random.default_rng(seed)
    chosen = interleave([rng.choice(p[:limit], size=int(shots), replace=False) for p in train])
    val = interleave([p[limit:] for p in train])
    return _build(f"source digits 0-4, shift={shift}, {shots}/class", SOURCE_DIGITS, chosen, 2000 + int(seed),
                  interleave(test), shift, severity, shift, "source", val_idx=val)


def target_task(shots: int | None = None, seed: int = 0, shift: str | None = None, severity: float = 1.0,
                test_shift: str | None = "same", norm="source") -> Task:
    """The new task: cluttered digits 5-9 (labels 0-4), `shots` training images per class drawn with `seed`.

    The 1,000 test images (200 per class, fixed clutter) never change, nor do the 250 validation
    images (50 per class, `x_val`/`y_val`, disjoint from every training draw and from the test set).
    Every split is in class-interleaved order, so any prefix (`x_test[:500]`) is class-balanced.
    `shift` changes the target domain (train, validation and test); pass `test_shift` to shift only
    the test set (out-of-distribution test).
    """
    limit = TARGET_SPLIT[0] - TARGET_VAL
    if shots is not None:
        require_int("shots", shots, low=1, high=limit, hint="images per class")
    if test_shift != "same" and test_shift not in (None, *SHIFTS):
        raise ValueError(f"unknown test_shift {test_shift!r}; choose one of {SHIFTS}, None or 'same'")
    _check_shift(shift, severity)
    _check_norm(norm)
    require_int("seed", seed, low=0)
    pool, val, test = _target_pool_val_test()
    rng = np.random.default_rng(seed)
    chosen = interleave([p if shots is None else rng.choice(p, size=int(shots), replace=False) for p in pool])
    test_kind = shift if test_shift == "same" else test_shift
    label = f"target: cluttered digits 5-9, {shots or limit}/class" + (f", shift={shift}" if shift else "")
    return _build(label, TARGET_DIGITS, chosen, 1000 + seed, interleave(test), shift, severity, test_kind, norm,
                  val_idx=interleave(val))


def _target_pool_val_test() -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per class: the few-shot pool (250), the validation images (50), the test images (200)."""
    pool, test = _split(TARGET_DIGITS, TARGET_SPLIT)
    keep = TARGET_SPLIT[0] - TARGET_VAL
    return [p[:keep] for p in pool], [p[keep:] for p in pool], test


def shifted_test_set(task: Task, shift: str | None, severity: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The target's fixed test images under a shift, normalised like `task`: an out-of-distribution test set.

    The same 1,000 digits and clutter as `task.x_test`; only the shift differs (None gives the clean set).
    """
    if not isinstance(task, Task):
        raise TypeError(f"task must be a Task, e.g. ftcourse.target_task(shots=20), got {type(task).__name__}")
    if tuple(task.classes) != tuple(str(d) for d in TARGET_DIGITS):
        raise ValueError(f"shifted_test_set is for target tasks (digits 5-9), got {task.name!r}: "
                         "pass a task from ftcourse.target_task(...)")
    _check_shift(shift, severity)
    idx = interleave(_target_pool_val_test()[2])
    x = shift_images(render(idx, seed=_TEST_SEED), shift, severity, seed=_TEST_SEED + 1)
    return normalize(x, task.mean, task.std), labels_of(idx, TARGET_DIGITS)


class FreshClutter:
    """Batches of the same digits with new clutter on every pass (epoch): a large, varied source.

    Behaves like a DataLoader for `fit` (has len() and yields (x, y) batches), reproducible from `seed`.
    """

    def __init__(self, indices: np.ndarray, digits: tuple[int, ...], batch_size: int = 64, seed: int = 0):
        self.indices, self.y = np.asarray(indices), labels_of(indices, digits)
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0
        self.mean, self.std = source_stats()

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __iter__(self):
        self.epoch += 1
        x = normalize(render(self.indices, seed=10_000 * (self.seed + 1) + self.epoch), self.mean, self.std)
        yield from make_loader(x, self.y, self.batch_size, shuffle=True, seed=self.seed + self.epoch)


def make_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int = 64, shuffle: bool = False,
                seed: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader over in-memory tensors; shuffling is reproducible from `seed`; `drop_last` drops a short
    last batch."""
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}: "
                        "convert them with torch.as_tensor")
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} items but y has {len(y)}: give one label per image")
    require_int("batch_size", batch_size, low=1, expected="a positive int", hint="e.g. 32")
    g = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(TensorDataset(x, y), batch_size=int(batch_size), shuffle=shuffle, generator=g,
                      drop_last=bool(drop_last))


def image_folder(path, size: int = 224, mean=IMAGENET_MEAN, std=IMAGENET_STD, train: bool = False):
    """A learner's own images as a torchvision `ImageFolder` (one sub-folder per class).

    Resized and normalised the way torchvision's ImageNet weights expect by default; `train=True`
    adds a random resized crop and flip.
    """
    from torchvision import datasets, transforms
    from torchvision.datasets.folder import IMG_EXTENSIONS

    root = Path(path).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; expected {root}/<class name>/<image files>")
    classes = sorted(p for p in root.iterdir() if p.is_dir())  # as ImageFolder: hidden folders are classes too
    if not classes:
        raise ValueError(f"{root} has no class sub-folders; put each class's images in {root}/<class name>/")
    empty = [c.name for c in classes
             if not any(f.is_file() and f.name.lower().endswith(IMG_EXTENSIONS) for f in c.rglob("*"))]
    if empty:
        raise ValueError(f"class folder(s) {empty} in {root} hold no images ({', '.join(IMG_EXTENSIONS)}): "
                         "add images to them or remove them; image_folder needs at least two class sub-folders "
                         "with images")
    if len(classes) < 2:
        raise ValueError(f"{root} has only the class folder {classes[0].name!r}: a classifier needs at least two "
                         f"class sub-folders with images, {root}/<class name>/<image files>")
    if train:
        tf = [transforms.RandomResizedCrop(size, scale=(0.6, 1.0)), transforms.RandomHorizontalFlip()]
    else:
        tf = [transforms.Resize(int(round(size * 8 / 7))), transforms.CenterCrop(size)]
    tf += [transforms.ToTensor(), transforms.Normalize(mean, std)]  # ImageFolder already loads RGB
    return datasets.ImageFolder(str(root), transform=transforms.Compose(tf))


# ---------------------------------------------------------------- two more target tasks from real images
def folder_task(path, size: int = 224, val_per_class: int = 2, test_per_class: int = 2, shots: int | None = None,
                seed: int = 0, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Task:
    """A learner's image folder (one sub-folder per class) as an in-memory Task, split class by class.

    Every image is read once through `image_folder` (resized to `size`, normalised with `mean`/`std`:
    ImageNet's by default, for torchvision's weights). Per class, with `seed`: `test_per_class` images
    for the test set, `val_per_class` for validation (choices), and of the rest `shots` for training (all
    if None). Each class must have enough images for all three. Suits a few hundred images; for more,
    stream `image_folder(path, train=True)` through a DataLoader instead.
    """
    val_per_class = require_int("val_per_class", val_per_class, low=1, hint="images per class")
    test_per_class = require_int("test_per_class", test_per_class, low=1, hint="images per class")
    if shots is not None:
        shots = require_int("shots", shots, low=1, expected="an int >= 1 or None", hint="all the rest")
    images = image_folder(path, size=size, mean=mean, std=std)
    labels = np.array(images.targets)
    counts = np.bincount(labels, minlength=len(images.classes))
    need = val_per_class + test_per_class + (shots or 1)
    short = [f"{c} ({n})" for c, n in zip(images.classes, counts) if n < need]
    if short:
        raise ValueError(f"{Path(path)}: each class needs at least {need} images (val {val_per_class} + test "
                         f"{test_per_class} + training {shots or 1}); too few in {', '.join(short)}: add images "
                         "or lower val_per_class / test_per_class / shots")
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == k)) for k in range(len(images.classes))]
    test = interleave([p[:test_per_class] for p in per_class])
    val = interleave([p[test_per_class:test_per_class + val_per_class] for p in per_class])
    rest = [p[test_per_class + val_per_class:] for p in per_class]
    train = interleave([r if shots is None else r[:shots] for r in rest])

    def xy(idx):
        return torch.stack([images[int(i)][0] for i in idx]), torch.as_tensor(labels[idx], dtype=torch.long)

    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = xy(train), xy(val), xy(test)
    return Task(f"folder {Path(path).name}, {len(y_tr)} training images", x_tr, y_tr, x_te, y_te,
                tuple(images.classes), tuple(mean), tuple(std), x_val=x_va, y_val=y_va)


NEAR_FILE = "uci_digits.npy.gz"  # made by scripts/make_tasks.py; format in data/MANIFEST.json
FAR_FILE = "textures.npy.gz"
NEAR_CLASSES = tuple(str(d) for d in range(10))
FAR_CLASSES = ("brick", "grass", "gravel", "stained tissue", "star field")
_POOL, _VAL, _TEST = 0, 1, 2  # the split codes stored in the files


@lru_cache(maxsize=2)
def _image_table(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A shipped task table: uint8 images (N, 32, 32), labels (N,) and split codes (N,), read-only."""
    with gzip.open(verified_path(name), "rb") as f:
        table = np.load(f, allow_pickle=False)
    images, labels, splits = table[:, :1024].reshape(-1, 32, 32), table[:, 1024].astype(np.int64), table[:, 1025]
    for a in (images, labels, splits):
        a.setflags(write=False)
    return images, labels, splits


def _table_splits(name: str, n_classes: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Per class: the row indices of the few-shot pool, the validation images and the test images."""
    _, labels, splits = _image_table(name)
    return tuple([np.flatnonzero((labels == c) & (splits == s)) for c in range(n_classes)]
                 for s in (_POOL, _VAL, _TEST))


def _clutter_render(images: np.ndarray, indices: np.ndarray, seed: int, clutter: int,
                    fragment: int = 10) -> torch.Tensor:
    """`render` for a shipped 32x32 table: the central 28x28 of each image (the digit and its margin) at a
    random place on a 32x32 canvas among `clutter` fragments of other images of the same split; [0, 1] floats.
    With clutter=0 the images are returned as stored (centred)."""
    indices = np.asarray(indices)
    if clutter == 0:
        return torch.from_numpy(images[indices].astype(np.float32) / 255.0)
    return torch.from_numpy(_scatter(images[:, 2:30, 2:30], indices, seed, clutter, fragment, 32))


def _table_task(name: str, classes: tuple[str, ...], what: str, fn: str, shots, seed, norm, clutter: int = 0) -> Task:
    """A Task from a shipped table: `shots` pool images per class drawn with `seed`, fixed validation and test."""
    pool, val, test = _table_splits(name, len(classes))
    limit = min(len(p) for p in pool)
    if shots is not None:
        require_int("shots", shots, low=1, high=limit,
                    hint=f"images per class; e.g. ftcourse.{fn}(shots=10), or shots=None for the whole pool")
    require_int("seed", seed, low=0, hint=f"e.g. ftcourse.{fn}(shots=10, seed=0)")
    _check_norm(norm)
    images, labels, _ = _image_table(name)
    rng = np.random.default_rng(seed)
    chosen = interleave([p if shots is None else rng.choice(p, size=int(shots), replace=False) for p in pool])

    def xy(idx, render_seed):
        x = _clutter_render(images, idx, render_seed, clutter).unsqueeze(1).expand(-1, 3, -1, -1)
        return x.contiguous(), torch.from_numpy(labels[idx])

    (x_tr, y_tr) = xy(chosen, 1000 + int(seed))
    (x_va, y_va), (x_te, y_te) = xy(interleave(val), _VAL_SEED), xy(interleave(test), _TEST_SEED)
    mean, std = _resolve_norm(norm, x_tr)
    return Task(f"{what}, {shots or limit}/class", normalize(x_tr, mean, std), y_tr, normalize(x_te, mean, std), y_te,
                classes, mean, std, x_val=normalize(x_va, mean, std), y_val=y_va)


def near_task(shots: int | None = None, seed: int = 0, norm="source", clutter: int = CLUTTER) -> Task:
    """A near transfer: other people's handwritten digits 0-9 (UCI, 8x8 scans scaled up), cluttered as the course's.

    Same kind of content as the source, another source and resolution (10 classes, labels = digits).
    `shots` training images per class (1-70) are drawn with `seed` from a fixed pool of 70; the 800
    test images (80 per class) and 240 validation images (24 per class) never change and are disjoint
    from the pool. Every split is class-interleaved, so any prefix is class-balanced. Each digit sits at a
    random place among `clutter` fragments of other digits (fixed for test and validation, set by `seed`
    for training), as in `target_task`; clutter=0 gives the clean digits, centred.
    """
    require_int("clutter", clutter, low=0, high=20,
                hint=f"fragments per image; {CLUTTER} as in target_task, 0 for clean digits")
    what = "near: UCI handwritten digits 0-9" + (", cluttered" if clutter else ", clean")
    return _table_task(NEAR_FILE, NEAR_CLASSES, what, "near_task", shots, seed, norm, int(clutter))


def far_task(shots: int | None = None, seed: int = 0, norm="source") -> Task:
    """A far transfer: 32x32 grey patches of five textures, not digits at all (brick, grass, gravel,
    stained tissue, star field; scikit-image's sample images).

    `shots` training patches per class (1-128) are drawn with `seed` from a fixed pool of 128; the 480
    test patches (96 per class) and 160 validation patches (32 per class) never change. Pool, validation
    and test patches come from disjoint 128x128 blocks of each image, so no two splits overlap.
    Every split is class-interleaved, so any prefix is class-balanced.
    """
    return _table_task(FAR_FILE, FAR_CLASSES, "far: grey textures", "far_task", shots, seed, norm)


__all__ += ["near_task", "far_task", "NEAR_CLASSES", "FAR_CLASSES", "shifted_source_task", "relabelled_source_task",
            "SOURCE_VAL", "folder_task"]


class RandomShift:
    """Label-preserving augmentation: each image of a batch moved by a random whole number of pixels, up to
    `max_shift` in each direction (edges repeated), from its own seeded generator (the same seed, the same shifts).

    `fit(..., augment=RandomShift(4, seed=0))`. No flips: a flipped digit is another digit, or none.
    """

    def __init__(self, max_shift: int = 4, seed: int = 0):
        self.max_shift = require_int("max_shift", max_shift, low=0, hint="pixels, e.g. 4 for 32x32 images")
        self.generator = torch.Generator().manual_seed(require_int("seed", seed, low=0))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"RandomShift takes a batch of images (N, C, H, W), got shape {tuple(x.shape)}")
        m = self.max_shift
        if m == 0:
            return x
        padded = torch.nn.functional.pad(x, (m, m, m, m), mode="replicate")
        dy, dx = torch.randint(0, 2 * m + 1, (2, len(x)), generator=self.generator).tolist()
        h, w = x.shape[-2:]
        return torch.stack([padded[i, :, a:a + h, b:b + w] for i, (a, b) in enumerate(zip(dy, dx))])

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift})"


__all__ += ["RandomShift"]

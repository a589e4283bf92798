"""Tasks the recipe was never designed on: image folders made here, read back through `folder_task` as a user's.

The recipe's decisions were chosen on the course's three tasks (digits, near, far). Whether they carry to a new
dataset is a question for data it never saw, read the way a learner reads their own images: PNG files in one
sub-folder per class, through `ftcourse.folder_task`. Two such tasks are drawn here from nothing but fonts and
geometry (no download):

- "letters": printed capitals A-J in 16 fonts that matplotlib ships (DejaVu and STIX, upright, bold, italic),
  rotated, scaled and placed at random, in random colours on a noisy background with two stray strokes;
- "shapes": six filled shapes (circle, square, triangle, star, cross, hexagon), rotated, scaled, placed and
  coloured at random, on a noisy background with two stray strokes.

    root = make_unseen_task("letters", "build/unseen", per_class=140)   # writes root/<class>/<i>.png once
    task = unseen_task("letters", "build/unseen", shots=10, seed=0)      # folder_task, sized for the course

Every image is a deterministic function of (task, class, index), so the folders are the same on every machine.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..data import Task, folder_task, source_stats

__all__ = ["UNSEEN_TASKS", "UNSEEN_POOL", "UNSEEN_VAL", "UNSEEN_TEST", "make_unseen_task", "unseen_task"]

LETTERS = tuple("ABCDEFGHIJ")
SHAPES = ("circle", "square", "triangle", "star", "cross", "hexagon")
UNSEEN_TASKS = {"letters": LETTERS, "shapes": SHAPES}
UNSEEN_VAL, UNSEEN_TEST = 30, 60  # per class: validation (the recipe's choices) and test images
UNSEEN_POOL = 50 + UNSEEN_VAL + UNSEEN_TEST  # per class: up to 50 training images besides
SIZE = 32  # the course backbone's input; images are drawn at 4x and reduced (anti-aliased)
_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
          "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
          "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
          "DejaVuSansMono-BoldOblique.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
          "STIXGeneralBolIta.ttf")


def _font_path(name: str) -> str:
    import matplotlib

    return os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf", name)


def _colours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A background and a foreground colour at least 90 grey levels apart (either may be the lighter)."""
    while True:
        bg, fg = rng.integers(0, 256, size=3), rng.integers(0, 256, size=3)
        if abs(int(bg.mean()) - int(fg.mean())) >= 90:
            return tuple(map(int, bg)), tuple(map(int, fg))


def _canvas(rng: np.random.Generator, bg, big: int):
    from PIL import Image, ImageDraw

    noise = rng.normal(0, 28, size=(big // 8, big // 8, 3))  # coarse noise, smoothed by the resize below
    pixels = np.clip(np.asarray(bg, float) + np.kron(noise, np.ones((8, 8, 1))), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(2):  # stray strokes
        x0, y0, x1, y1 = (int(v) for v in rng.integers(0, big, size=4))
        draw.line((x0, y0, x1, y1), fill=tuple(map(int, rng.integers(0, 256, size=3))), width=int(rng.integers(2, 6)))
    return image


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    def ring(n, radius, offset=0.0):
        return [(cx + radius * math.cos(angle + offset + 2 * math.pi * i / n),
                 cy + radius * math.sin(angle + offset + 2 * math.pi * i / n)) for i in range(n)]
    if kind == "square":
        return ring(4, r)
    if kind == "triangle":
        return ring(3, r)
    if kind == "hexagon":
        return ring(6, r)
    if kind == "star":
        outer, inner = ring(5, r), ring(5, 0.45 * r, math.pi / 5)
        return [p for pair in zip(outer, inner) for p in pair]
    if kind == "cross":
        w = 0.34 * r
        arm = [(w, -w), (w, -r), (-w, -r), (-w, -w)]
        pts = []
        for q in range(4):
            c, s = math.cos(angle + q * math.pi / 2), math.sin(angle + q * math.pi / 2)
            pts += [(cx + x * c - y * s, cy + x * s + y * c) for x, y in arm]
        return pts
    raise ValueError(kind)


def _draw(task: str, label: int, index: int):
    """One image of class `label` (a PIL image, SIZE x SIZE RGB), a function of (task, label, index) only."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng([sum(map(ord, task)), label, index])
    big = 4 * SIZE
    bg, fg = _colours(rng)
    image = _canvas(rng, bg, big)
    if task == "letters":
        font = ImageFont.truetype(_font_path(_FONTS[int(rng.integers(len(_FONTS)))]), int(rng.integers(64, 104)))
        glyph = Image.new("L", (big, big), 0)
        ImageDraw.Draw(glyph).text((big / 2, big / 2), LETTERS[label], font=font, fill=255, anchor="mm")
        glyph = glyph.rotate(float(rng.uniform(-20, 20)), resample=Image.BILINEAR,
                             translate=tuple(int(v) for v in rng.integers(-16, 17, size=2)))
        image.paste(Image.new("RGB", (big, big), fg), mask=glyph)
    else:
        draw = ImageDraw.Draw(image)
        r = float(rng.uniform(0.2, 0.38)) * big
        cx, cy = (float(v) for v in rng.uniform(r, big - r, size=2))
        kind = SHAPES[label]
        if kind == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fg)
        else:
            draw.polygon(_polygon(kind, cx, cy, r, float(rng.uniform(0, 2 * math.pi))), fill=fg)
    return image.resize((SIZE, SIZE), Image.LANCZOS)


def make_unseen_task(name: str, root, per_class: int | None = None) -> Path:
    """Write the task's images as root/name/<class>/<index>.png (skipping those already there); return the folder."""
    if name not in UNSEEN_TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(UNSEEN_TASKS)}")
    folder = Path(root) / name
    per_class = UNSEEN_POOL if per_class is None else per_class
    for label, cls in enumerate(UNSEEN_TASKS[name]):
        (folder / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = folder / cls / f"{i:04d}.png"
            if not path.exists():
                tmp = path.with_suffix(".tmp.png")
                _draw(name, label, i).save(tmp)
                tmp.replace(path)
    return folder


def unseen_task(name: str, root, shots: int, seed: int) -> Task:
    """The task read as a learner reads their folder (`folder_task`), at the course backbone's size and normalisation:
    per class UNSEEN_TEST test and UNSEEN_VAL validation images, and `shots` training images, drawn with `seed`."""
    mean, std = source_stats()
    folder = make_unseen_task(name, root, per_class=UNSEEN_POOL)
    return folder_task(folder, size=SIZE, val_per_class=UNSEEN_VAL, test_per_class=UNSEEN_TEST, shots=shots,
                       seed=seed, mean=mean, std=std)

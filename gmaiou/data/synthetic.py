"""A deterministic synthetic COCO-format dataset of textured scenes whose boxes are poor proxies of their masks.

Eight classes, one per shape kind of :mod:`gmaiou.shapes`: thin diagonal bars, rings,
L and U shapes, crescents and articulated stick figures (low mask-over-box ratios),
beside compact blobs and axis-aligned rectangles (high ratios). Each class has its own
hue (jittered per instance) and every object a random texture (stripes, a gradient or
blotchy noise) over a textured background (gradient, low-frequency blotches, faint
stripes or checks). Objects are drawn one after another: a later object hides the
earlier ones, whose masks lose the covered pixels; an instance left with less than a
fifth of its pixels (or fewer than 20) is dropped. Object extents are drawn from
three tiers so that small, medium and large objects (COCO's area ranges) all occur.

Layout written by :func:`generate` (read by :func:`gmaiou.data.find_split`)::

    <root>/annotations/instances_train.json   <root>/train/000001.png ...
    <root>/annotations/instances_val.json     <root>/val/...
    <root>/annotations/instances_test.json    <root>/test/...   (only with test_images > 0)

Masks are stored as compressed RLE. The same arguments give byte-identical files
(fixed PNG settings, JSON with sorted keys, one random stream per image seeded by
``(seed, image index)``). Held-out test images have streams of their own, seeded by
``(seed, image index, _TEST_STREAM)``, so asking for them leaves train and val unchanged.
``docs/data.md`` documents the classes and their statistics.
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm.auto import tqdm

from gmaiou.paths import cache_dir
from gmaiou.shapes import SHAPE_KINDS, tight_box

__all__ = [
    "CLASSES",
    "CLASS_MIXES",
    "FORMAT_VERSION",
    "HIGH_MOB_SHARE_BELOW",
    "LOW_MOB_SHARE_BELOW",
    "SyntheticClass",
    "ensure_synthetic",
    "generate",
    "generate_atomically",
    "mob_mix_name",
    "mob_mix_odds",
    "mob_share_range",
    "render_scene",
    "split_sizes",
]

#: Bumped whenever the generator's output changes, so cached datasets are regenerated.
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SyntheticClass:
    """One object class: its category name, shape kind (``gmaiou.shapes.SHAPE_KINDS``) and base hue."""

    name: str
    kind: str
    hue: float
    description: str


#: The classes, in category-id order (id = index + 1).
CLASSES: tuple[SyntheticClass, ...] = (
    SyntheticClass("bar", "bar", 0.00, "thin bar turned 14-75 degrees from the horizontal"),
    SyntheticClass("ring", "ring", 0.125, "annulus; the box is mostly the hole"),
    SyntheticClass("l_shape", "l_shape", 0.25, "L of two bars meeting at a corner"),
    SyntheticClass("u_shape", "u_shape", 0.375, "U of two arms joined by a bottom bar"),
    SyntheticClass("crescent", "crescent", 0.50, "disk minus a shifted disk"),
    SyntheticClass(
        "stick_figure", "stick_figure", 0.625, "articulated figure: head, torso, bent arms and legs"
    ),
    SyntheticClass("blob", "blob", 0.75, "compact union of overlapping ellipses"),
    SyntheticClass("rectangle", "rectangle", 0.875, "axis-aligned rectangle (fills its box)"),
)

#: Mean share of boxes with MOB < 0.5 among the six low-MOB classes (bar to stick figure) and
#: among the two high-MOB ones (blob, rectangle) in the default set, occlusion included,
#: measured by ``gmaiou data stats``.
LOW_MOB_SHARE_BELOW = 0.796
HIGH_MOB_SHARE_BELOW = 0.011

#: The low-MOB classes (the first six) and the high-MOB ones (the last two), by class index.
_LOW_MOB_CLASSES = 6

#: ``mob<NN>``: the class mix whose target share of boxes with MOB < 0.5 is ``NN`` percent.
_MOB_MIX = re.compile(r"mob(0|[1-9][0-9]?|100)")


def mob_share_range() -> tuple[float, float]:
    """The shares of boxes with MOB < 0.5 that the ``mob<NN>`` mixes can target: all-high to all-low."""
    return HIGH_MOB_SHARE_BELOW, LOW_MOB_SHARE_BELOW


def mob_mix_name(share: float) -> str:
    """The name of the mix targeting ``share`` (a whole percentage), e.g. ``0.3 -> "mob30"``."""
    percent = round(100 * share)
    if abs(100 * share - percent) > 1e-9:
        raise ValueError(f"mob mixes target whole percentages, got a share of {share!r}")
    name = f"mob{percent}"
    mob_mix_odds(name)  # refuses a share out of reach
    return name


def mob_mix_odds(name: str) -> tuple[float, ...] | None:
    """The class odds of a ``mob<NN>`` mix; ``None`` for a name outside that family.

    The mix changes only how often a low-MOB object is drawn: the six low-MOB classes get
    ``w / 6`` each and the two high-MOB ones ``(1 - w) / 2``, with ``w`` solving
    ``w * LOW_MOB_SHARE_BELOW + (1 - w) * HIGH_MOB_SHARE_BELOW = NN / 100``. The odds within
    each group, the objects per image, their extents and textures are those of every set.

    Raises:
        ValueError: the target share is out of reach (``w`` outside [0, 1]).
    """
    match = _MOB_MIX.fullmatch(name)
    if match is None:
        return None
    share = int(match.group(1)) / 100
    low, high = mob_share_range()
    if not low <= share <= high:
        raise ValueError(
            f"class mix {name!r} targets {share:.2f} of boxes with MOB < 0.5, out of reach: "
            f"the mob mixes reach {low:.3f} (high-MOB classes only) to {high:.3f} (low-MOB only)"
        )
    w = (share - HIGH_MOB_SHARE_BELOW) / (LOW_MOB_SHARE_BELOW - HIGH_MOB_SHARE_BELOW)
    high_classes = len(CLASSES) - _LOW_MOB_CLASSES
    return (w / _LOW_MOB_CLASSES,) * _LOW_MOB_CLASSES + ((1 - w) / high_classes,) * high_classes


class _ClassMixes(dict):
    """The named mixes, which also resolve ``mob<NN>`` names on lookup (not listed when iterated)."""

    def __missing__(self, key: str) -> tuple[float, ...]:
        odds = mob_mix_odds(key) if isinstance(key, str) else None
        if odds is None:
            raise KeyError(key)
        return odds

    def __contains__(self, key: object) -> bool:
        if super().__contains__(key):
            return True
        try:
            return isinstance(key, str) and mob_mix_odds(key) is not None
        except ValueError:
            return False

    def get(self, key: str, default=None):
        try:
            return self[key]
        except (KeyError, ValueError):
            return default


#: Class odds of the synthetic sets, by name. ``uniform`` (the default set): every class
#: alike, so 65.6% of the boxes have MOB < 0.5. ``coco``: the six low-MOB classes share
#: 0.339 and the blobs and rectangles 0.661 so that the share of boxes with MOB < 0.5 is
#: the COCO sample's, 27.7% (train and val, 2,838 GTs). The split solves
#: ``w * 0.796 + (1 - w) * 0.011 = 0.277``, where 0.796 and 0.011 are the mean shares below 0.5
#: of the low- and high-MOB classes in the default set (occlusion included,
#: :data:`LOW_MOB_SHARE_BELOW`, :data:`HIGH_MOB_SHARE_BELOW`), measured by ``gmaiou data stats``;
#: ``tests/lib/test_data_synthetic.py`` checks the result on a generated set. Lookups also
#: accept the one-parameter family ``mob<NN>`` (:func:`mob_mix_odds`): the same split for a
#: target share of ``NN`` percent, e.g. ``CLASS_MIXES["mob30"]``.
CLASS_MIXES: dict[str, tuple[float, ...] | None] = _ClassMixes(
    {
        "uniform": None,  # drawn with rng.integers, as before the mixes existed (same bytes)
        "coco": (0.0565,) * 6 + (0.3305, 0.3305),
    }
)

#: Object extents in pixels at 550 (scaled with the image), by tier, and the tiers' odds.
_EXTENT_TIERS: tuple[tuple[float, float], ...] = ((16.0, 48.0), (48.0, 140.0), (140.0, 330.0))
_TIER_ODDS: tuple[float, ...] = (0.3, 0.4, 0.3)
_OBJECTS_PER_IMAGE: tuple[int, int] = (3, 9)  # inclusive low, exclusive high
_MIN_VISIBLE_FRACTION = 0.2
_MIN_VISIBLE_PIXELS = 20
_MIN_SIZE = 64
_PNG_COMPRESS_LEVEL = 3
#: The third word of a held-out test image's seed, ``(seed, image index, _TEST_STREAM)``.
_TEST_STREAM = 0x7E57


def split_sizes(num_images: int) -> tuple[int, int]:
    """Train and val image counts for ``num_images`` in all: a fifth (at least one) is val."""
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 2:
        raise ValueError(f"num_images must be an integer >= 2 (train and val), got {num_images!r}")
    num_val = max(1, round(0.2 * num_images))
    return num_images - num_val, num_val


# ----------------------------------------------------------------------------- drawing


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(
        colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0)), dtype=np.float32
    )


def _smooth_noise(height: int, width: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a ``cells x cells`` random grid upsampled bilinearly, ``[H, W]``."""
    grid = torch.from_numpy(rng.random((1, 1, cells, cells), dtype=np.float32))
    return F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)[
        0, 0
    ].numpy()


def _block_noise(height: int, width: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """Noise in [0, 1] constant over ``block x block`` pixel squares, ``[H, W]``."""
    coarse = rng.random((-(-height // block), -(-width // block)), dtype=np.float32)
    return np.repeat(np.repeat(coarse, block, axis=0), block, axis=1)[:height, :width]


def _coordinates(height: int, width: int, angle: float) -> np.ndarray:
    """Pixel-centre coordinate along direction ``angle``, ``[H, W]``."""
    ys = np.arange(height, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(width, dtype=np.float32)[None, :] + 0.5
    return xs * math.cos(angle) + ys * math.sin(angle)


def _ramp(height: int, width: int, angle: float) -> np.ndarray:
    """A linear ramp from 0 to 1 across the window along ``angle``, ``[H, W]``."""
    t = _coordinates(height, width, angle)
    lo, hi = float(t.min()), float(t.max())
    return (t - lo) / max(hi - lo, 1e-6)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A textured ``[S, S, 3]`` float background in [0, 1]: gradient, blotches, faint pattern, grain."""
    hue = float(rng.random())
    sat = float(rng.uniform(0.05, 0.35))
    val = float(rng.uniform(0.3, 0.8))
    c1 = _hsv(hue, sat, val)
    c2 = _hsv(
        hue + rng.uniform(-0.15, 0.15), sat * rng.uniform(0.5, 1.5), val * rng.uniform(0.6, 1.2)
    )
    t = _ramp(size, size, float(rng.uniform(0, 2 * math.pi)))[..., None]
    image = c1 * (1 - t) + c2 * t
    blotch = _smooth_noise(size, size, int(rng.integers(4, 12)), rng)[..., None] - 0.5
    image = image + 0.25 * blotch * _hsv(rng.random(), 0.4, 1.0)
    pattern = int(rng.integers(3))
    if pattern == 0:  # faint stripes
        period = float(rng.uniform(8, 40)) * size / 550
        stripes = np.sin(
            2 * math.pi * _coordinates(size, size, float(rng.uniform(0, math.pi))) / period
        )
        image = image + 0.04 * stripes[..., None]
    elif pattern == 1:  # faint checks
        cell = max(int(rng.uniform(10, 50) * size / 550), 2)
        idx = np.arange(size) // cell
        checks = ((idx[:, None] + idx[None, :]) % 2).astype(np.float32) - 0.5
        image = image + 0.06 * checks[..., None]
    grain = _block_noise(size, size, 2, rng)[..., None] - 0.5
    return image + 0.04 * grain


def _texture(height: int, width: int, hue: float, rng: np.random.Generator) -> np.ndarray:
    """An object texture ``[h, w, 3]`` around the class hue: stripes, a gradient or blotchy noise."""
    hue = hue + float(rng.normal(0.0, 0.015))
    sat = float(rng.uniform(0.55, 0.95))
    val = float(rng.uniform(0.55, 0.95))
    base = _hsv(hue, sat, val)
    other = _hsv(
        hue + rng.uniform(-0.05, 0.05), sat * rng.uniform(0.6, 1.0), val * rng.uniform(0.45, 0.8)
    )
    kind = int(rng.integers(3))
    if kind == 0:
        period = float(rng.uniform(4, 14))
        coord = _coordinates(height, width, float(rng.uniform(0, math.pi)))
        t = 0.5 + 0.5 * np.sin(2 * math.pi * coord / period + rng.uniform(0, 2 * math.pi))
    elif kind == 1:
        t = _ramp(height, width, float(rng.uniform(0, 2 * math.pi)))
    else:
        t = _smooth_noise(height, width, int(rng.integers(3, 8)), rng)
    t = t[..., None]
    grain = _block_noise(height, width, 2, rng)[..., None] - 0.5
    return base * (1 - t) + other * t + 0.05 * grain


def render_scene(
    size: int, rng: np.random.Generator, mix: str = "uniform"
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """One ``size x size`` scene whose object classes are drawn with the odds of ``CLASS_MIXES[mix]``.

    Returns:
        ``(image, instances)``: the uint8 ``[S, S, 3]`` RGB image and, for every kept
        object in depth order, ``(class index, visible bool mask [S, S])``.
    """
    odds = _mix_odds(mix)
    scale = size / 550.0
    image = _background(size, rng)
    drawn: list[tuple[int, np.ndarray, int]] = []  # (class, visible mask, drawn area)
    for _ in range(int(rng.integers(*_OBJECTS_PER_IMAGE))):
        label = (
            int(rng.integers(len(CLASSES)))
            if odds is None
            else int(rng.choice(len(CLASSES), p=odds))
        )
        low, high = _EXTENT_TIERS[int(rng.choice(len(_TIER_ODDS), p=_TIER_ODDS))]
        extent = math.exp(
            rng.uniform(math.log(low * scale), math.log(min(high * scale, 0.6 * size)))
        )
        extent = max(extent, 8.0)
        cx, cy = (float(v) for v in rng.uniform(-0.05 * size, 1.05 * size, 2))
        # Shapes stay within `extent` of their centre: rasterise that window only.
        x0, x1 = max(int(cx - extent) - 1, 0), min(int(cx + extent) + 2, size)
        y0, y1 = max(int(cy - extent) - 1, 0), min(int(cy + extent) + 2, size)
        if x1 <= x0 or y1 <= y0:
            continue
        local = SHAPE_KINDS[CLASSES[label].kind]((y1 - y0, x1 - x0), cx - x0, cy - y0, extent, rng)
        area = int(local.sum())
        if area == 0:
            continue
        texture = _texture(y1 - y0, x1 - x0, CLASSES[label].hue, rng)
        window = image[y0:y1, x0:x1]
        window[local] = texture[local]
        for _, mask, _ in drawn:  # the new object hides what it covers
            mask[y0:y1, x0:x1] &= ~local
        full = np.zeros((size, size), dtype=bool)
        full[y0:y1, x0:x1] = local
        drawn.append((label, full, area))
    instances = [
        (label, mask)
        for label, mask, area in drawn
        if (visible := int(mask.sum())) >= _MIN_VISIBLE_PIXELS
        and visible >= _MIN_VISIBLE_FRACTION * area
    ]
    pixels = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return pixels, instances


def _mix_odds(mix: str) -> np.ndarray | None:
    odds = mob_mix_odds(mix) if isinstance(mix, str) else None  # refuses a share out of reach
    if odds is None:
        if mix not in CLASS_MIXES:
            raise ValueError(
                f"unknown class mix {mix!r}; choose one of {', '.join(CLASS_MIXES)} or mob<NN> "
                "(a target share of NN percent of boxes with MOB < 0.5)"
            )
        odds = CLASS_MIXES[mix]
    return None if odds is None else np.asarray(odds, dtype=np.float64) / sum(odds)


# ----------------------------------------------------------------------------- writing


def _annotation(ann_id: int, image_id: int, label: int, mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    x1, y1, x2, y2 = (float(v) for v in tight_box(mask))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": label + 1,
        "segmentation": {
            "size": [int(s) for s in rle["size"]],
            "counts": rle["counts"].decode("ascii"),
        },
        "area": float(mask.sum()),
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "iscrowd": 0,
    }


def _check_args(
    num_images: int, size: int, seed: int, mix: str = "uniform", test_images: int = 0
) -> None:
    split_sizes(num_images)
    _mix_odds(mix)
    if isinstance(test_images, bool) or not isinstance(test_images, int) or test_images < 0:
        raise ValueError(f"test_images must be a non-negative integer, got {test_images!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < _MIN_SIZE:
        raise ValueError(f"size must be an integer >= {_MIN_SIZE}, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def generate(
    out_dir: str | Path,
    num_images: int,
    size: int,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    mix: str = "uniform",
    test_images: int = 0,
) -> Path:
    """Write the synthetic dataset (``num_images`` in all, see :func:`split_sizes`) to ``out_dir``.

    Image ``i`` (ids ``1 .. num_images``, train first) is drawn from its own random
    stream seeded by ``(seed, i)``; held-out test image ``i`` (ids ``num_images + 1`` on) from
    one seeded by ``(seed, i, _TEST_STREAM)``, so train and val are the same bytes with or
    without test images.

    Args:
        out_dir: target folder; created if absent.
        num_images: train plus val images (>= 2).
        size: square image side in pixels.
        seed: dataset seed.
        overwrite: replace this dataset's ``annotations/``, ``train/``, ``val/`` and ``test/``
            in a non-empty ``out_dir`` (other files there are left alone); otherwise a
            non-empty ``out_dir`` is an error.
        progress: show a progress bar.
        mix: the class odds, a key of :data:`CLASS_MIXES` (``coco``: COCO's share of low-MOB
            boxes) or ``mob<NN>`` (a target share of ``NN`` percent, :func:`mob_mix_odds`).
        test_images: held-out test images, written to ``test/`` with
            ``annotations/instances_test.json`` (0: no test split).

    Returns:
        ``out_dir``.
    """
    _check_args(num_images, size, seed, mix, test_images)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out} is not empty; choose an empty folder or allow overwriting"
            )
        for sub in ("annotations", "train", "val", "test"):
            if (out / sub).is_dir():
                shutil.rmtree(out / sub)
            elif (out / sub).exists():
                (out / sub).unlink()
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    num_train, num_val = split_sizes(num_images)
    categories = [
        {"id": i + 1, "name": c.name, "supercategory": "shape"} for i, c in enumerate(CLASSES)
    ]
    total = num_images + test_images
    bar = tqdm(total=total, desc=f"synthetic {size}px", unit="img", disable=not progress)
    image_index, ann_id = 0, 1
    splits = (("train", num_train), ("val", num_val), ("test", test_images))
    for split, count in splits[: 3 if test_images else 2]:
        (out / split).mkdir(exist_ok=True)
        images, annotations = [], []
        for _ in range(count):
            words = [seed, image_index] + ([_TEST_STREAM] if split == "test" else [])
            rng = np.random.default_rng(np.random.SeedSequence(words))
            image_index += 1
            pixels, instances = render_scene(size, rng, mix)
            file_name = f"{image_index:06d}.png"
            Image.fromarray(pixels).save(
                out / split / file_name,
                format="PNG",
                compress_level=_PNG_COMPRESS_LEVEL,
                optimize=False,
            )
            images.append(
                {"id": image_index, "file_name": file_name, "height": size, "width": size}
            )
            for label, mask in instances:
                annotations.append(_annotation(ann_id, image_index, label, mask))
                ann_id += 1
            bar.update()
        data = {
            "info": {
                "description": "gmaiou synthetic shapes (gmaiou.data.synthetic)",
                "version": FORMAT_VERSION,
                "num_images": num_images,
                "size": size,
                "seed": seed,
                "split": split,
                **({} if mix == "uniform" else {"mix": mix}),
                **({"test_images": test_images} if split == "test" else {}),
            },
            "licenses": [],
            "categories": categories,
            "images": images,
            "annotations": annotations,
        }
        with open(out / "annotations" / f"instances_{split}.json", "w", encoding="utf-8") as f:
            json.dump(data, f, sort_keys=True, separators=(",", ":"))
    bar.close()
    return out


def ensure_synthetic(
    num_images: int,
    size: int,
    seed: int = 0,
    progress: bool = True,
    mix: str = "uniform",
    test_images: int = 0,
) -> Path:
    """The root of the cached synthetic dataset with these arguments, generated if absent.

    Lives under :func:`gmaiou.paths.cache_dir`. Generation writes to a temporary
    folder beside it and renames it into place, so an interrupted run never leaves a
    half dataset, and two processes generating at once both end with a complete one.
    """
    _check_args(num_images, size, seed, mix, test_images)
    tag = "" if mix == "uniform" else f"-{mix}"
    test = f"-test{test_images}" if test_images else ""
    root = cache_dir() / f"synthetic-v{FORMAT_VERSION}{tag}-n{num_images}-s{size}-seed{seed}{test}"
    if root.is_dir():
        return root
    return generate_atomically(
        root, num_images, size, seed, progress=progress, mix=mix, test_images=test_images
    )


def generate_atomically(
    root: str | Path,
    num_images: int,
    size: int,
    seed: int = 0,
    progress: bool = True,
    mix: str = "uniform",
    test_images: int = 0,
) -> Path:
    """:func:`generate` into a temporary folder beside ``root``, then rename it to ``root``.

    An interrupted run never leaves a half dataset at ``root``, and two processes
    generating the same set at once both end with a complete one (the later rename fails
    and its copy is removed).
    """
    root = Path(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        generate(tmp, num_images, size, seed, progress=progress, mix=mix, test_images=test_images)
        try:
            os.rename(tmp, root)
        except OSError:
            if not root.is_dir():  # not a concurrent run that finished first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root

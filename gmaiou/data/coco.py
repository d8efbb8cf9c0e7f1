"""COCO-format instance segmentation datasets, read through pycocotools.

:class:`CocoInstances` turns any COCO ``instances`` file (real COCO, the bundled
``coco-sample``, the synthetic dataset of :mod:`gmaiou.data.synthetic`) into a torch
``Dataset`` whose items are dicts:

* ``image``: float32 ``[3, H, W]``, RGB; in ``[0, 1]`` at the original size when
  ``transform=None`` (the training transform normalises and resizes to ``S x S``);
* ``boxes``: float32 ``[G, 4]`` ``(x1, y1, x2, y2)`` in pixels;
* ``labels``: int64 ``[G]``, contiguous ``0 .. C-1`` (``dataset.cat_ids[label]`` is the
  COCO category id);
* ``masks``: bool ``[G, H, W]`` (``annToMask`` of polygons and RLE);
* ``image_id``: int, the COCO image id;
* ``crowd_boxes``: float32 ``[K, 4]``, the crowd regions (not targets; anchors on them
  may be ignored, as YOLACT does).

Degenerate annotations are dropped and counted in ``dataset.dropped`` by reason:
``zero_area`` and ``invalid_segmentation`` when the file is read, ``empty_mask`` and
``too_small`` (width or height under ``min_box_size`` pixels after the transform) when
an item is loaded. The load-time counts accumulate in the process that loads the item,
so with DataLoader workers they stay in the workers' copies. A ``bbox`` that is not four
finite numbers with a width and height >= 0 is not dropped but refused when the file is
read: a ``ValueError`` names the annotation file, the annotation id and the image id.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "DROP_REASONS",
    "CocoInstances",
    "Item",
    "check_image_files",
    "find_split",
    "read_image",
    "xywh_to_xyxy",
]

#: An item: ``image``, ``boxes``, ``labels``, ``masks``, ``image_id``, ``crowd_boxes``.
Item = dict[str, Any]

#: Split names and the folder/file stems they have in each supported layout.
_LAYOUTS: tuple[tuple[str, str], ...] = (
    ("{split}2017", "instances_{split}2017.json"),  # COCO
    ("{split}", "instances_{split}.json"),  # gmaiou synthetic
)
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: ``dataset.dropped`` keys and how a summary line names them.
DROP_REASONS: dict[str, str] = {
    "zero_area": "zero-area boxes",
    "invalid_segmentation": "invalid segmentations (polygons of < 3 points)",
    "empty_mask": "empty masks",
    "too_small": "boxes under min_box_size",
}


def find_split(root: str | Path, split: str) -> tuple[Path, Path]:
    """The image folder and annotation file of ``split`` (one of :data:`SPLITS`) under ``root``.

    Resolves the COCO layout (``annotations/instances_train2017.json`` + ``train2017/``)
    and the synthetic layout (``annotations/instances_train.json`` + ``train/``).

    Raises:
        ValueError: for an unknown split name.
        FileNotFoundError: naming the missing root, annotation file or image folder.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist or is not a folder")
    looked = []
    for image_stem, ann_stem in _LAYOUTS:
        ann_file = root / "annotations" / ann_stem.format(split=split)
        image_dir = root / image_stem.format(split=split)
        looked.append(str(ann_file))
        if ann_file.is_file():
            if not image_dir.is_dir():
                raise FileNotFoundError(
                    f"annotation file {ann_file} found but its image folder {image_dir} is missing"
                )
            return image_dir, ann_file
    raise FileNotFoundError(
        f"no {split!r} split under {root}: none of these annotation files exists: {', '.join(looked)}"
    )


def xywh_to_xyxy(bbox: list[float] | np.ndarray) -> list[float]:
    """A COCO ``[x, y, w, h]`` box as ``[x1, y1, x2, y2]``."""
    x, y, w, h = (float(v) for v in bbox)
    return [x, y, x + w, y + h]


def read_image(path: Path, expected_size: tuple[int, int] | None = None) -> Tensor:
    """Decode an image file (PNG, JPEG, ...) with PIL as uint8 RGB ``[3, H, W]``; errors name the file.

    Args:
        path: image file.
        expected_size: ``(height, width)`` the annotation file gives; checked from the
            file's header before decoding.
    """
    if not path.is_file():
        raise FileNotFoundError(f"image file {path} does not exist")
    try:
        with Image.open(path) as img:
            width, height = img.size
            if expected_size is not None and (height, width) != tuple(expected_size):
                raise ValueError(
                    f"image file {path} is {width}x{height} (WxH) but its annotation "
                    f"entry says {expected_size[1]}x{expected_size[0]}"
                )
            pixels = np.array(img.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot decode image file {path}: {err}") from None
    return torch.from_numpy(pixels).permute(2, 0, 1)


def check_image_files(dataset: CocoInstances, progress: bool = False) -> int:
    """Check that every image file of ``dataset`` exists and has the size its JSON entry gives.

    Reads only each file's header (PIL opens lazily), not its pixels.

    Returns:
        The number of images checked.

    Raises:
        FileNotFoundError: the first missing file, named.
        ValueError: the first file whose size differs from its entry (both sizes named),
            or that is not an image.
    """
    from tqdm.auto import tqdm

    for image_id in tqdm(dataset.image_ids, desc="check images", disable=not progress):
        info = dataset.coco.imgs[image_id]
        path = dataset.image_dir / info["file_name"]
        try:
            with Image.open(path) as img:
                width, height = img.size
        except FileNotFoundError:
            raise FileNotFoundError(
                f"image file {path} (image {image_id} of {dataset.ann_file}) does not exist"
            ) from None
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"cannot read image file {path}: {err}") from None
        if (width, height) != (int(info["width"]), int(info["height"])):
            raise ValueError(
                f"image file {path} is {width}x{height} (WxH) but {dataset.ann_file.name} says "
                f"{info['width']}x{info['height']}"
            )
    return len(dataset.image_ids)


def _load_coco(ann_file: Path) -> COCO:
    """A pycocotools ``COCO`` index of ``ann_file``; clear errors for a missing or malformed file."""
    if not ann_file.is_file():
        raise FileNotFoundError(f"annotation file {ann_file} does not exist")
    try:
        with open(ann_file, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"annotation file {ann_file} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"annotation file {ann_file} must hold a JSON object, got {type(data).__name__}"
        )
    missing = [key for key in ("images", "annotations", "categories") if key not in data]
    if missing:
        raise ValueError(
            f"annotation file {ann_file} is not a COCO instances file: missing key(s) {', '.join(missing)}"
        )
    for key in ("images", "annotations", "categories"):
        if not isinstance(data[key], list):
            raise ValueError(f"annotation file {ann_file}: {key!r} must be a list")
    if not data["categories"]:
        raise ValueError(
            f"annotation file {ann_file} has no categories: its 'categories' list is empty"
        )
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def _bbox_problem(bbox: Any) -> str | None:
    """What is wrong with a COCO ``[x, y, width, height]`` box, or ``None`` if nothing.

    A box of zero width or height is not wrong here (such annotations are dropped and
    counted); a non-finite number or a negative size is, as the loss would meet it as a NaN
    iterations later.
    """
    if not isinstance(bbox, list) or len(bbox) != 4:
        return "expected [x, y, width, height]"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox):
        return "expected 4 numbers [x, y, width, height]"
    if not all(math.isfinite(v) for v in bbox):
        return "its numbers must be finite (no NaN or infinity)"
    if bbox[2] < 0 or bbox[3] < 0:
        return "its width and height must be >= 0"
    return None


def _clean_segmentation(segmentation: Any) -> Any | None:
    """The segmentation without polygons of fewer than 3 points; ``None`` if nothing usable is left.

    pycocotools reads a first polygon of exactly 4 numbers as a box, so such
    polygons are removed rather than passed on.
    """
    if isinstance(segmentation, dict):
        return segmentation if "counts" in segmentation and "size" in segmentation else None
    if isinstance(segmentation, list):
        polygons = [
            p for p in segmentation if isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0
        ]
        if len(polygons) == len(segmentation):
            return segmentation or None  # unchanged: no copy (COCO has ~860k annotations)
        return polygons or None
    return None


class CocoInstances(Dataset):
    """A COCO-format instance segmentation dataset (see the module docstring for items).

    Args:
        image_dir: folder of the images named by the annotation file.
        ann_file: COCO ``instances`` JSON (polygons or RLE).
        transform: callable ``item -> item`` (e.g. :class:`gmaiou.data.transforms.TrainTransform`).
        min_box_size: instances whose box is narrower or lower than this many pixels
            after the transform are dropped (mmdet's ``min_gt_bbox_wh``).
        skip_empty: leave out images without any non-crowd instance.

    Attributes:
        coco: the pycocotools ``COCO`` object.
        num_classes: number of categories ``C``.
        class_names: category names by contiguous label.
        cat_ids: COCO category id by contiguous label.
        image_ids: COCO image ids, by dataset index.
        dropped: ``Counter`` of dropped annotations by reason.
    """

    def __init__(
        self,
        image_dir: str | Path,
        ann_file: str | Path,
        transform: Callable[[Item], Item] | None = None,
        min_box_size: float = 4.0,
        skip_empty: bool = False,
    ) -> None:
        self.image_dir = Path(image_dir)
        self.ann_file = Path(ann_file)
        self.coco = _load_coco(self.ann_file)
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image folder {self.image_dir} does not exist")
        if min_box_size < 0:
            raise ValueError(f"min_box_size must be >= 0, got {min_box_size}")
        self.transform = transform
        self.min_box_size = float(min_box_size)
        cats = self.coco.cats
        self.cat_ids: list[int] = sorted(cats)
        self.class_names: list[str] = [str(cats[c].get("name", c)) for c in self.cat_ids]
        self.num_classes = len(self.cat_ids)
        self._label_of = {cat_id: label for label, cat_id in enumerate(self.cat_ids)}
        self.dropped: Counter[str] = Counter()
        self._instances: dict[int, list[dict]] = {}
        self._crowds: dict[int, list[dict]] = {}
        self._index_annotations()
        ids = sorted(self.coco.imgs)
        if skip_empty:
            ids = [i for i in ids if self._instances[i]]
        self.image_ids: list[int] = ids

    def _index_annotations(self) -> None:
        """Sort every image's annotations into targets and crowds; drop and count the degenerate."""
        for image_id in self.coco.imgs:
            self._instances[image_id], self._crowds[image_id] = [], []
        for ann in self.coco.dataset["annotations"]:
            image_id = ann.get("image_id")
            if image_id not in self.coco.imgs:
                raise ValueError(
                    f"annotation file {self.ann_file}: annotation {ann.get('id')} refers to "
                    f"image {image_id}, which is not in 'images'"
                )
            if ann.get("category_id") not in self._label_of:
                raise ValueError(
                    f"annotation file {self.ann_file}: annotation {ann.get('id')} has category "
                    f"{ann.get('category_id')}, which is not in 'categories'"
                )
            bbox = ann.get("bbox")
            problem = _bbox_problem(bbox)
            if problem is not None:
                raise ValueError(
                    f"annotation file {self.ann_file}: annotation {ann.get('id')} (image "
                    f"{image_id}) has bbox {bbox!r}: {problem}"
                )
            if bbox[2] == 0 or bbox[3] == 0 or ann.get("area", 1) <= 0:
                self.dropped["zero_area"] += 1
                continue
            if ann.get("iscrowd", 0):
                self._crowds[image_id].append(ann)
                continue
            segmentation = _clean_segmentation(ann.get("segmentation"))
            if segmentation is None:
                self.dropped["invalid_segmentation"] += 1
                continue
            if segmentation is not ann["segmentation"]:
                ann = {**ann, "segmentation": segmentation}
            self._instances[image_id].append(ann)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __repr__(self) -> str:
        return (
            f"CocoInstances({len(self)} images, {self.num_classes} classes, "
            f"ann_file={str(self.ann_file)!r}, transform={self.transform!r})"
        )

    @property
    def num_annotations(self) -> int:
        """Annotations in the file (crowds and dropped ones included)."""
        return len(self.coco.dataset["annotations"])

    def dropped_summary(self) -> str:
        """One line: how many annotations were dropped so far and why.

        E.g. ``dropped 12 of 1,444 annotations: 9 empty masks, 3 zero-area boxes``.
        Empty masks and small boxes are found when items load, so their counts grow as
        the dataset is read (see the module docstring).
        """
        total = sum(self.dropped.values())
        if total == 0:
            return f"dropped 0 of {self.num_annotations:,} annotations"
        reasons = ", ".join(
            f"{self.dropped[key]:,} {DROP_REASONS.get(key, key)}"
            for key in sorted(self.dropped, key=lambda k: (-self.dropped[k], k))
            if self.dropped[key]
        )
        return f"dropped {total:,} of {self.num_annotations:,} annotations: {reasons}"

    def check_instances(self) -> None:
        """Refuse a dataset without a single usable instance (all annotations invalid).

        Decodes masks image by image until the first non-empty one, so a usable dataset
        costs one decode.

        Raises:
            ValueError: naming the annotation file and the summary of what was dropped.
        """
        empty = 0
        for image_id in self.image_ids:
            for ann in self._instances[image_id]:
                if self.coco.annToMask(ann).any():
                    return  # usable; masks met empty on the way are counted when they load
                empty += 1
        self.dropped["empty_mask"] += empty
        raise ValueError(
            f"annotation file {self.ann_file} has no usable instance: {self.dropped_summary()}"
            if self.image_ids
            else f"annotation file {self.ann_file} lists no images"
        )

    @classmethod
    def from_root(
        cls,
        root: str | Path,
        split: str,
        transform: Callable[[Item], Item] | None = None,
        **kwargs: Any,
    ) -> CocoInstances:
        """The ``split`` of a dataset root in the COCO or synthetic layout (see :func:`find_split`)."""
        image_dir, ann_file = find_split(root, split)
        return cls(image_dir, ann_file, transform=transform, **kwargs)

    def image_path(self, index: int) -> Path:
        """The image file of item ``index``."""
        return self.image_dir / self.coco.imgs[self.image_ids[index]]["file_name"]

    def get_targets(self, index: int) -> Item:
        """Item ``index`` without its image and without the transform (original size).

        Returns ``boxes``, ``labels``, ``masks``, ``image_id``, ``crowd_boxes`` and
        ``size`` ``(H, W)``; instances with an empty mask are dropped and counted.
        """
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        height, width = int(info["height"]), int(info["width"])
        anns = self._instances[image_id]
        masks = np.zeros((len(anns), height, width), dtype=bool)
        for i, ann in enumerate(anns):
            masks[i] = self.coco.annToMask(ann)
        keep = masks.reshape(len(anns), height * width).any(axis=1)
        if not keep.all():
            self.dropped["empty_mask"] += int((~keep).sum())
            anns = [a for a, k in zip(anns, keep) if k]
            masks = masks[keep]
        crowds = self._crowds[image_id]
        return {
            "boxes": _boxes_tensor([a["bbox"] for a in anns]),
            "labels": torch.tensor(
                [self._label_of[a["category_id"]] for a in anns], dtype=torch.int64
            ),
            "masks": torch.from_numpy(masks),
            "image_id": int(image_id),
            "crowd_boxes": _boxes_tensor([a["bbox"] for a in crowds]),
            "size": (height, width),
        }

    def __getitem__(self, index: int) -> Item:
        return self.load(index)

    def load(self, index: int, apply_transform: bool = True) -> Item:
        """Item ``index``; with ``apply_transform=False`` at the original size with the image in [0, 1]."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        item = self.get_targets(index)
        size = item.pop("size")
        image = read_image(self.image_path(index), expected_size=size)
        item["image"] = image.float().div_(255.0)
        if apply_transform and self.transform is not None:
            item = self.transform(item)
        return self._drop_small(item)

    def _drop_small(self, item: Item) -> Item:
        """Drop instances whose mask is empty or whose box is under ``min_box_size`` on a side."""
        boxes, masks = item["boxes"], item["masks"]
        if boxes.shape[0] == 0:
            return item
        wh = boxes[:, 2:] - boxes[:, :2]
        small = (wh < self.min_box_size).any(dim=1)
        empty = ~masks.flatten(1).any(dim=1)
        drop = small | empty
        if not bool(drop.any()):
            return item
        self.dropped["empty_mask"] += int(empty.sum())
        self.dropped["too_small"] += int((small & ~empty).sum())
        keep = ~drop
        return {**item, "boxes": boxes[keep], "labels": item["labels"][keep], "masks": masks[keep]}


def _boxes_tensor(bboxes: list[list[float]]) -> Tensor:
    """COCO ``[x, y, w, h]`` boxes as a float32 ``[N, 4]`` xyxy tensor (``[0, 4]`` when empty)."""
    if not bboxes:
        return torch.zeros(0, 4, dtype=torch.float32)
    return torch.tensor([xywh_to_xyxy(b) for b in bboxes], dtype=torch.float32)

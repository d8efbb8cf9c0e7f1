"""Generalized mask-aware IoU (GmaIoU), the mask-over-box ratio, and the box IoU family.

Conventions (``docs/spec.md`` section 1, followed to the letter):

* boxes are ``(x1, y1, x2, y2)`` in continuous pixel coordinates; pixel ``(r, c)``
  covers ``[c, c+1) x [r, r+1)``;
* ``|A ∩ M|`` counts the mask pixels with ``round(x1) <= c < round(x2)`` and
  ``round(y1) <= r < round(y2)``, the rounded coordinates clamped to ``[0, W]`` and
  ``[0, H]`` (``round`` is :func:`torch.round`, half to even, like Python's);
* ``|A|``, ``|B|`` and ``|A ∪ B|`` are continuous box areas, ``|M|`` a pixel count;
* an empty mask gives 0 for every anchor.

Then, with polygon ``P`` holding the ground truth's "energy",
``GmaIoU_P = (|A ∩ M| / |M|) * |P| / |A ∪ P|``:

* ``P = B`` (``polygon="box"``, the BMVC maIoU): ``|A∩M| |B| / (|M| |A ∪ B|)``;
* ``P = M`` (``polygon="mask"``): ``|A∩M| / (|A| + |M| - |A∩M|)``.

Both lie in [0, 1] and ``GmaIoU_M <= GmaIoU_B`` (Corollary 1) for anchors with
integer coordinates. With fractional coordinates the rounding in ``|A ∩ M|`` can
count slightly more pixels than the continuous ``|A|``, so ``GmaIoU_M`` may exceed
1 by that rounding; the contract keeps it, since every implementation must agree.

The efficient path (Alg. 1 of the paper) builds one summed-area table per mask,
cropped to the mask's own extent, so memory is O(sum of mask extents) rather than
O(G * H * W), and each anchor-GT count is four look-ups.

Modules:

* :mod:`~gmaiou.measure.boxes`: box areas, unions and the torchvision box measures;
* :mod:`~gmaiou.measure.pixel_counts`, :mod:`~gmaiou.measure.numpy_tables`: masks'
  pixel counts, crops and Alg. 1's tables on the CPU (OpenCV, NumPy);
* :mod:`~gmaiou.measure.torch_tables`: Alg. 1's tables and look-ups in torch (the GPU's);
* :mod:`~gmaiou.measure.integrals`: :class:`MaskIntegrals`, the tables of one image;
* :mod:`~gmaiou.measure.mask_aware`: GmaIoU, maIoU and the mask-over-box ratio;
* :mod:`~gmaiou.measure.pairwise`: the named measures and :func:`pairwise_overlaps`;
* :mod:`~gmaiou.measure.bruteforce`: the reference the tests compare against.
"""

from gmaiou.measure.boxes import anchor_boxes, box_area, box_overlaps, box_union
from gmaiou.measure.bruteforce import gmaiou_bruteforce
from gmaiou.measure.integrals import MaskIntegrals, as_integrals, check_mask_input
from gmaiou.measure.mask_aware import (
    Polygon,
    gmaiou,
    gmaiou_from_counts,
    grouped_gmaiou,
    maiou,
    mob_ratio,
)
from gmaiou.measure.numpy_tables import grouped_counts_from_masks
from gmaiou.measure.pairwise import (
    MEASURES,
    canonical_measure,
    is_mask_measure,
    pairwise_overlaps,
    polygon_of,
)

__all__ = [
    "MEASURES",
    "MaskIntegrals",
    "Polygon",
    "anchor_boxes",
    "as_integrals",
    "box_area",
    "box_overlaps",
    "box_union",
    "canonical_measure",
    "check_mask_input",
    "gmaiou",
    "gmaiou_bruteforce",
    "gmaiou_from_counts",
    "grouped_counts_from_masks",
    "grouped_gmaiou",
    "is_mask_measure",
    "maiou",
    "mob_ratio",
    "pairwise_overlaps",
    "polygon_of",
]

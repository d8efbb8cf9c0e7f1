"""Feature pyramid P3-P7 from C3-C5 (YOLACT / mmdetection's FPN with extra convs on the input).

``P5..P3``: 1x1 laterals, a top-down path that upsamples the coarser map and adds it, and
a 3x3 output conv per level. ``P6`` is a stride-2 3x3 conv of C5, ``P7`` a stride-2 3x3
conv of P6. The top-down upsampling is bilinear (YOLACT) or CARAFE (GmaYOLACT); a ×2
upsample of a ``ceil``-halved map can be one pixel larger than the finer map, so it is
cropped to the lateral's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from gmaiou.models.carafe import CARAFE

__all__ = ["FPN"]


class FPN(nn.Module):
    """P3-P7 with ``out_channels`` each.

    Args:
        in_channels: channels of C3, C4, C5.
        out_channels: pyramid channels (YOLACT: 256).
        upsample: ``"bilinear"`` or ``"carafe"``.
    """

    def __init__(
        self, in_channels: Sequence[int], out_channels: int = 256, upsample: str = "bilinear"
    ) -> None:
        super().__init__()
        if len(in_channels) != 3:
            raise ValueError(
                f"FPN takes C3, C4, C5: give 3 channel counts, got {list(in_channels)}"
            )
        if upsample not in ("bilinear", "carafe"):
            raise ValueError(f"upsample must be 'bilinear' or 'carafe', got {upsample!r}")
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels
        )
        self.p6 = nn.Conv2d(in_channels[-1], out_channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
        # One upsampler per top-down step (C5->C4, C4->C3).
        self.carafe = (
            nn.ModuleList(CARAFE(out_channels) for _ in range(len(in_channels) - 1))
            if upsample == "carafe"
            else None
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and not any(
                m is c for up in (self.carafe or []) for c in up.modules()
            ):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def _upsample(self, x: Tensor, step: int, like: Tensor) -> Tensor:
        h, w = like.shape[-2:]
        if self.carafe is None:
            return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        return self.carafe[step](x)[..., :h, :w]

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """``[C3, C4, C5]`` -> ``[P3, P4, P5, P6, P7]``."""
        laterals = [conv(f) for conv, f in zip(self.lateral, features)]
        for i in range(len(laterals) - 1, 0, -1):
            # Index of the upsampler: the step from the top (C5->C4 is the last one).
            laterals[i - 1] = laterals[i - 1] + self._upsample(laterals[i], i - 1, laterals[i - 1])
        outs = [conv(x) for conv, x in zip(self.output, laterals)]
        p6 = self.p6(features[-1])
        outs.append(p6)
        outs.append(self.p7(p6))
        return outs

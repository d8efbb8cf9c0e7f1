"""Feature pyramid P3-P7 from C3-C5, in two layouts of the P6/P7 levels.

``extras="separate"`` (YOLACT, mmdetection's ``FPN`` with ``add_extra_convs='on_input'``):
``P5..P3`` from 1x1 laterals, a top-down path that upsamples the coarser map and adds it,
and a 3x3 output conv per level; ``P6`` is a stride-2 3x3 conv of C5 and ``P7`` a stride-2
3x3 conv of P6, outside the top-down path.

``extras="top-down"`` (mmdetection's ``FPN_CARAFE``, used by maYOLACT): the stride-2 convs
make the *laterals* of P6 (from C5) and P7 (from P6's lateral); these join the top-down
path P7 -> P6 -> P5 -> P4 -> P3, with an upsampler between each pair (four in all), and
every one of the five levels gets its 3x3 output conv.

The top-down upsampling is bilinear (YOLACT) or CARAFE (GmaYOLACT); a x2 upsample of a
``ceil``-halved map can be one pixel larger than the finer map, so it is cropped to the
finer map's size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from gmaiou.models.carafe import CARAFE

__all__ = ["FPN"]

EXTRAS = ("separate", "top-down")


class FPN(nn.Module):
    """P3-P7 with ``out_channels`` each.

    Args:
        in_channels: channels of C3, C4, C5.
        out_channels: pyramid channels (YOLACT: 256).
        upsample: ``"bilinear"`` or ``"carafe"``.
        extras: ``"separate"`` or ``"top-down"`` (see the module docstring).

    ``forward``: ``[C3, C4, C5]`` (sides ``f3, f4, f5``) -> ``[P3, ..., P7]``, ``[B, out_channels,
    f_l, f_l]`` with ``f6 = ceil(f5 / 2)``, ``f7 = ceil(f6 / 2)``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int = 256,
        upsample: str = "bilinear",
        extras: str = "separate",
    ) -> None:
        super().__init__()
        if len(in_channels) != 3:
            raise ValueError(
                f"FPN takes C3, C4, C5: give 3 channel counts, got {list(in_channels)}"
            )
        if upsample not in ("bilinear", "carafe"):
            raise ValueError(f"upsample must be 'bilinear' or 'carafe', got {upsample!r}")
        if extras not in EXTRAS:
            raise ValueError(f"extras must be one of {EXTRAS}, got {extras!r}")
        self.extras = extras
        # Levels on the top-down path: 3 (C3-C5), or 5 when P6 and P7 join it.
        path = 3 if extras == "separate" else 5
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in range(path)
        )
        self.p6 = nn.Conv2d(in_channels[-1], out_channels, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1)
        # One upsampler per top-down step; step i brings level i + 1 to level i.
        self.carafe = (
            nn.ModuleList(CARAFE(out_channels) for _ in range(path - 1))
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

    def _top_down(self, laterals: list[Tensor]) -> list[Tensor]:
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + self._upsample(laterals[i], i - 1, laterals[i - 1])
        return laterals

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        """``[C3, C4, C5]`` -> ``[P3, P4, P5, P6, P7]``."""
        laterals = [conv(f) for conv, f in zip(self.lateral, features)]
        if self.extras == "top-down":
            laterals.append(self.p6(features[-1]))
            laterals.append(self.p7(laterals[-1]))
            return [conv(x) for conv, x in zip(self.output, self._top_down(laterals))]
        outs = [conv(x) for conv, x in zip(self.output, self._top_down(laterals))]
        p6 = self.p6(features[-1])
        return [*outs, p6, self.p7(p6)]

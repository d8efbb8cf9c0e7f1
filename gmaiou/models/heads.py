"""YOLACT's heads: the shared prediction head, the protonet and the semantic segmentation head."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["PredictionHead", "ProtoNet", "SemanticHead"]


def _xavier(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


def _check_init(init: str) -> None:
    if init not in ("prior", "xavier"):
        raise ValueError(f"init must be 'prior' or 'xavier', got {init!r}")


class PredictionHead(nn.Module):
    """One 3x3 conv + ReLU shared by every pyramid level, then class, box and coefficient convs.

    Args:
        in_channels: pyramid channels.
        feat_channels: channels of the shared conv.
        anchors_per_location: anchors per feature-map cell ``n``.
        num_cls_outputs: class logits per anchor (``C + 1`` softmax, ``C`` sigmoid).
        num_protos: mask coefficients per anchor (tanh).
        init: ``"prior"`` (class and box convs N(0, 0.01), for a random backbone) or
            ``"xavier"`` (every conv Xavier-uniform, zero bias: YOLACT and the maIoU code).

    ``forward`` maps the levels ``[B, ch, f_l, f_l]`` to ``cls [B, A, K]``, ``box [B, A, 4]``
    and ``coeffs [B, A, P]``, anchors in :mod:`gmaiou.anchors` order (level, row, column, shape).
    """

    def __init__(
        self,
        in_channels: int,
        feat_channels: int,
        anchors_per_location: int,
        num_cls_outputs: int,
        num_protos: int,
        init: str = "prior",
    ) -> None:
        super().__init__()
        _check_init(init)
        n = anchors_per_location
        self.num_cls_outputs, self.num_protos, self.anchors_per_location = (
            num_cls_outputs,
            num_protos,
            n,
        )
        self.shared = nn.Sequential(
            nn.Conv2d(in_channels, feat_channels, 3, padding=1), nn.ReLU(inplace=True)
        )
        self.cls = nn.Conv2d(feat_channels, n * num_cls_outputs, 3, padding=1)
        self.box = nn.Conv2d(feat_channels, n * 4, 3, padding=1)
        self.coeff = nn.Conv2d(feat_channels, n * num_protos, 3, padding=1)
        _xavier(self)
        if init == "prior":
            # Class and box outputs start near zero (RetinaNet's init): from a randomly
            # initialised backbone, xavier-sized logits make OHEM's hardest negatives cost
            # ~15 nats each and the clipped gradient goes to them alone.
            for conv in (self.cls, self.box):
                nn.init.normal_(conv.weight, std=0.01)

    @staticmethod
    def _flatten(x: Tensor, per_anchor: int) -> Tensor:
        # [B, n * k, f, f] -> [B, f * f * n, k]: row-major cells, then the cell's anchors.
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, per_anchor)

    def forward(self, levels: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        cls, box, coeff = [], [], []
        for x in levels:
            x = self.shared(x)
            cls.append(self._flatten(self.cls(x), self.num_cls_outputs))
            box.append(self._flatten(self.box(x), 4))
            coeff.append(self._flatten(self.coeff(x), self.num_protos))
        return torch.cat(cls, dim=1), torch.cat(box, dim=1), torch.cat(coeff, dim=1).tanh()


class ProtoNet(nn.Module):
    """Prototype masks from P3: three 3x3 convs, x``scale`` bilinear upsampling (YOLACT: 2), a 3x3
    conv, a 1x1 conv; ReLU after each.

    ``forward``: ``[B, ch, f3, f3]`` -> ``[B, s f3, s f3, P]`` (channels last, as YOLACT).
    """

    def __init__(
        self, in_channels: int, hidden_channels: int = 256, num_protos: int = 32, scale: int = 2
    ) -> None:
        super().__init__()

        def conv(cin: int, cout: int, k: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.ReLU(inplace=True)]

        self.before = nn.Sequential(
            *conv(in_channels, hidden_channels, 3),
            *conv(hidden_channels, hidden_channels, 3),
            *conv(hidden_channels, hidden_channels, 3),
        )
        self.upsample = nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False)
        self.after = nn.Sequential(
            *conv(hidden_channels, hidden_channels, 3), *conv(hidden_channels, num_protos, 1)
        )
        _xavier(self)

    def forward(self, p3: Tensor) -> Tensor:
        return self.after(self.upsample(self.before(p3))).permute(0, 2, 3, 1)


class SemanticHead(nn.Module):
    """A 1x1 conv from P3 to ``C`` class logits per pixel (training only): ``[B, C, f3, f3]``.

    ``init="prior"``: initialised like a sigmoid detection classifier (RetinaNet's prior):
    small weights and a bias giving every class probability ``prior`` at first. Nearly all
    (class, pixel) pairs are negative, and from a randomly initialised backbone a
    xavier-initialised head starts with a loss of ~1 per class and pixel that swamps the
    other terms. ``init="xavier"``: Xavier-uniform, zero bias (YOLACT and the maIoU code).
    """

    def __init__(
        self, in_channels: int, num_classes: int, prior: float = 0.01, init: str = "prior"
    ) -> None:
        super().__init__()
        _check_init(init)
        self.conv = nn.Conv2d(in_channels, num_classes, 1)
        if init == "xavier":
            _xavier(self)
        else:
            nn.init.normal_(self.conv.weight, std=0.01)
            nn.init.constant_(self.conv.bias, -math.log((1 - prior) / prior))

    def forward(self, p3: Tensor) -> Tensor:
        return self.conv(p3)

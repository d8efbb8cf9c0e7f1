"""torchvision ResNet backbones returning C3, C4, C5, optionally with DCNv2 in the last three stages.

Random initialisation by default; :meth:`ResNetBackbone.load_torchvision_state_dict`
loads a local torchvision-format checkpoint, and :func:`imagenet_state_dict` fetches
torchvision's ImageNet weights through its weights API (cached in the torch hub folder,
``$TORCH_HOME/hub/checkpoints``; downloaded only when missing there). The deformable
convs keep the parameter names of the convs they replace, so an ordinary torchvision
ResNet checkpoint loads into a DCN backbone too (only the offset convs start from zero).
"""

from __future__ import annotations

import os

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models import (
    ResNet18_Weights,
    ResNet34_Weights,
    ResNet50_Weights,
    ResNet101_Weights,
)
from torchvision.ops import deform_conv2d

__all__ = ["BACKBONE_CHANNELS", "IMAGENET_WEIGHTS", "ModulatedDeformConv2d", "ResNetBackbone"]

_FACTORIES = {
    "r18": torchvision.models.resnet18,
    "r34": torchvision.models.resnet34,
    "r50": torchvision.models.resnet50,
    "r101": torchvision.models.resnet101,
}
#: torchvision's ImageNet weights per backbone (the ``torchvision://resnetNN`` of mmdetection).
IMAGENET_WEIGHTS = {
    "r18": ResNet18_Weights.IMAGENET1K_V1,
    "r34": ResNet34_Weights.IMAGENET1K_V1,
    "r50": ResNet50_Weights.IMAGENET1K_V1,
    "r101": ResNet101_Weights.IMAGENET1K_V1,
}
#: Channels of C3, C4, C5 per backbone.
BACKBONE_CHANNELS: dict[str, tuple[int, int, int]] = {
    "r18": (128, 256, 512),
    "r34": (128, 256, 512),
    "r50": (512, 1024, 2048),
    "r101": (512, 1024, 2048),
}


def imagenet_state_dict(name: str) -> dict[str, Tensor]:
    """torchvision's ImageNet state dict of backbone ``name`` (``IMAGENET1K_V1``).

    Read from the torch hub cache (``torch.hub.get_dir()/checkpoints``, i.e.
    ``$TORCH_HOME/hub/checkpoints``) and downloaded there when missing. Raises
    ``FileNotFoundError`` saying how to proceed offline when the download fails.
    """
    if name not in IMAGENET_WEIGHTS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(IMAGENET_WEIGHTS)}")
    weights = IMAGENET_WEIGHTS[name]
    cache = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    try:
        return weights.get_state_dict(progress=False)
    except (OSError, RuntimeError) as err:  # URLError is an OSError
        raise FileNotFoundError(
            f"could not fetch torchvision's ImageNet {name} weights ({weights.url}): {err}. "
            f"Offline, put that file at {cache}, pass a local state dict with --weights PATH, "
            "or start from random initialisation with --weights none"
        ) from None


class ModulatedDeformConv2d(nn.Module):
    """DCNv2 (Zhu et al., CVPR 2019): a conv whose sampling offsets and modulation are learned.

    A plain conv (``offset_conv``, zero-initialised, so training starts from the ordinary
    conv) predicts ``2 · groups · k²`` offsets and ``groups · k²`` modulation logits per
    output location; :func:`torchvision.ops.deform_conv2d` does the sampling.

    ``weight`` / ``bias`` have the names and shapes of the :class:`~torch.nn.Conv2d` it replaces.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        bias: bool = False,
        offset_groups: int = 1,
    ) -> None:
        super().__init__()
        if in_channels % offset_groups:
            raise ValueError(
                f"offset_groups ({offset_groups}) must divide in_channels ({in_channels})"
            )
        self.stride, self.padding, self.dilation = (
            (stride, stride),
            (padding, padding),
            (dilation, dilation),
        )
        self.offset_groups = offset_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        k2 = kernel_size * kernel_size
        self.offset_conv = nn.Conv2d(
            in_channels,
            3 * offset_groups * k2,
            kernel_size,
            stride=stride,
            padding=padding,
            dilation=dilation,
        )
        nn.init.zeros_(self.offset_conv.weight)
        nn.init.zeros_(self.offset_conv.bias)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, offset_groups: int) -> ModulatedDeformConv2d:
        """A DCN with ``conv``'s shape, stride and padding, starting from its weights."""
        dcn = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size[0],
            stride=conv.stride[0],
            padding=conv.padding[0],
            dilation=conv.dilation[0],
            bias=conv.bias is not None,
            offset_groups=offset_groups,
        )
        with torch.no_grad():
            dcn.weight.copy_(conv.weight)
            if conv.bias is not None:
                dcn.bias.copy_(conv.bias)
        return dcn

    def forward(self, x: Tensor) -> Tensor:
        out = self.offset_conv(x)
        dy_dx, modulation = out.split([out.shape[1] * 2 // 3, out.shape[1] // 3], dim=1)
        return deform_conv2d(
            x,
            dy_dx,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            mask=modulation.sigmoid(),
        )


class ResNetBackbone(nn.Module):
    """A torchvision ResNet without its classifier; ``forward`` returns ``[C3, C4, C5]``.

    Args:
        name: ``"r18"``, ``"r34"``, ``"r50"`` or ``"r101"``.
        dcn: replace the 3x3 conv that carries the stride (``conv2`` of every block; in a
            BasicBlock, its second 3x3 conv) in stages 2-4 (C3-C5) by :class:`ModulatedDeformConv2d`.
        dcn_groups: offset groups of those convs.

    Feature maps have sides ``ceil(S / 8)``, ``ceil(S / 16)``, ``ceil(S / 32)``.
    """

    def __init__(self, name: str = "r50", dcn: bool = False, dcn_groups: int = 4) -> None:
        super().__init__()
        if name not in _FACTORIES:
            raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(_FACTORIES)}")
        net = _FACTORIES[name](weights=None)
        self.name = name
        self.out_channels = BACKBONE_CHANNELS[name]
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        if dcn:
            for layer in (self.layer2, self.layer3, self.layer4):
                for block in layer:
                    block.conv2 = ModulatedDeformConv2d.from_conv(block.conv2, dcn_groups)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c3, c4, c5]

    def load_torchvision_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load a torchvision ResNet ``state_dict`` (its ``fc.*`` classifier is dropped).

        Raises ``ValueError`` naming missing, unexpected or mis-shaped keys; the DCN offset
        convs, which torchvision checkpoints lack, keep their zero initialisation.
        """
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        own = self.state_dict()
        unexpected = sorted(set(state) - set(own))
        missing = sorted(k for k in set(own) - set(state) if ".offset_conv." not in k)
        shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if unexpected or missing or shapes:
            parts = []
            if missing:
                parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
            if unexpected:
                parts.append(
                    f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
                )
            if shapes:
                parts.append(
                    "shape mismatches "
                    + ", ".join(
                        f"{k}: {list(state[k].shape)} vs {list(own[k].shape)}" for k in shapes[:3]
                    )
                )
            raise ValueError(
                f"not a torchvision {self.name} ResNet state dict: " + "; ".join(parts)
            )
        self.load_state_dict(state, strict=False)

"""Image classifiers with a choice of padding: ResNet and VGG as in torchvision, and small variants.

``padding`` is how every padded convolution treats the border: ``"partial"`` (partial-convolution-
based padding, :func:`pconv.partial_padding`), ``"zeros"``, ``"reflect"`` or ``"replicate"``.
Architectures and ``state_dict`` keys follow torchvision's ``resnet*`` / ``vgg*`` (He et al. 2016,
Simonyan & Zisserman 2015), so torchvision's ImageNet weights load with ``load_state_dict`` for any
padding; torchvision itself is not needed. The small variants (``pd_resnet_small``,
``pd_vgg_small``) are for 28×28 or 32×32 images: a CIFAR-style ResNet (three stages, 3×3 stem, no
max-pool) and a three-stage VGG, both ending in global average pooling, so they take any input size.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Type, Union

import torch
from torch import Tensor, nn

from pconv.errors import PConvError
from pconv.padding import partial_padding

__all__ = ["PADDINGS", "ARCHITECTURES", "build_classifier", "ResNet", "VGG",
           "pd_resnet18", "pd_resnet34", "pd_resnet50", "pd_resnet101", "pd_resnet152",
           "pd_vgg11", "pd_vgg13", "pd_vgg16", "pd_vgg19", "pd_vgg11_bn", "pd_vgg13_bn", "pd_vgg16_bn",
           "pd_vgg19_bn", "pd_resnet_small", "pd_vgg_small"]

PADDINGS = ("partial", "zeros", "reflect", "replicate")


def _check_padding(padding: str) -> None:
    if padding not in PADDINGS:
        raise PConvError(f"unknown padding {padding!r}: choose one of {', '.join(PADDINGS)}")


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int, padding: str, bias: bool = False) -> nn.Conv2d:
    """A convolution padded by kernel // 2; "partial" starts zero-padded and is converted at the end."""
    mode = "zeros" if padding == "partial" else padding
    return nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=bias, padding_mode=mode)


def _finish(model: nn.Module, padding: str) -> nn.Module:
    return partial_padding(model, inplace=True) if padding == "partial" else model


# ---------------------------------------------------------------- ResNet

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int, padding: str) -> None:
        super().__init__()
        self.conv1 = _conv(in_ch, width, 3, stride, padding)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv(width, width, 3, 1, padding)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _shortcut(in_ch, width * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    """1×1 reduce, 3×3 (carrying the stride, as torchvision's v1.5), 1×1 expand."""
    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int, padding: str) -> None:
        super().__init__()
        self.conv1 = _conv(in_ch, width, 1, 1, padding)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = _conv(width, width, 3, stride, padding)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = _conv(width, width * self.expansion, 1, 1, padding)
        self.bn3 = nn.BatchNorm2d(width * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_ch, width * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


def _shortcut(in_ch: int, out_ch: int, stride: int) -> Optional[nn.Sequential]:
    if stride == 1 and in_ch == out_ch:
        return None
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))


class ResNet(nn.Module):
    """torchvision's ResNet layout (``conv1 bn1 relu maxpool layer1..N avgpool fc``).

    ``small=True`` is the CIFAR variant: a 3×3 stride-1 stem without max-pool, for small images."""

    def __init__(self, block: Type[Union[BasicBlock, Bottleneck]], layers: Sequence[int], num_classes: int = 1000,
                 in_channels: int = 3, padding: str = "partial", widths: Sequence[int] = (64, 128, 256, 512),
                 small: bool = False) -> None:
        super().__init__()
        _check_padding(padding)
        _check_sizes(num_classes, in_channels)
        stem = widths[0]
        if small:
            self.conv1 = _conv(in_channels, stem, 3, 1, padding)
        else:
            self.conv1 = _conv(in_channels, stem, 7, 2, padding)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small else nn.MaxPool2d(3, 2, 1)
        in_ch = stem
        self.stages: List[str] = []
        for i, (width, count) in enumerate(zip(widths, layers)):
            blocks = []
            for j in range(count):
                blocks.append(block(in_ch, width, 2 if (i > 0 and j == 0) else 1, padding))
                in_ch = width * block.expansion
            name = f"layer{i + 1}"
            setattr(self, name, nn.Sequential(*blocks))
            self.stages.append(name)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        _finish(self, padding)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stages:
            x = getattr(self, name)(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ---------------------------------------------------------------- VGG

_VGG_CFGS: Dict[str, List[Union[int, str]]] = {
    "11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _vgg_features(cfg: Sequence[Union[int, str]], in_channels: int, batch_norm: bool, padding: str) -> nn.Sequential:
    layers: List[nn.Module] = []
    ch = in_channels
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
            continue
        layers.append(_conv(ch, int(v), 3, 1, padding, bias=True))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(v)))
        layers.append(nn.ReLU(inplace=True))
        ch = int(v)
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """torchvision's VGG layout: ``features``, ``avgpool`` (7×7 adaptive), ``classifier`` (3 linear).

    ``small=True``: global average pooling and one linear layer (``classifier.0``), for small images."""

    def __init__(self, cfg: Sequence[Union[int, str]], batch_norm: bool, num_classes: int = 1000,
                 in_channels: int = 3, padding: str = "partial", small: bool = False, dropout: float = 0.5) -> None:
        super().__init__()
        _check_padding(padding)
        _check_sizes(num_classes, in_channels)
        self.features = _vgg_features(cfg, in_channels, batch_norm, padding)
        last = [v for v in cfg if v != "M"][-1]
        if small:
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.classifier = nn.Sequential(nn.Linear(int(last), num_classes))
        else:
            self.avgpool = nn.AdaptiveAvgPool2d(7)
            self.classifier = nn.Sequential(
                nn.Linear(int(last) * 49, 4096), nn.ReLU(True), nn.Dropout(dropout),
                nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(dropout),
                nn.Linear(4096, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        _finish(self, padding)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _check_sizes(num_classes: int, in_channels: int) -> None:
    if num_classes < 1 or in_channels < 1:
        raise PConvError(f"num_classes and in_channels must be positive, got {num_classes} and {in_channels}")


# ---------------------------------------------------------------- constructors

def pd_resnet18(**kw) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], **kw)


def pd_resnet34(**kw) -> ResNet:
    return ResNet(BasicBlock, [3, 4, 6, 3], **kw)


def pd_resnet50(**kw) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], **kw)


def pd_resnet101(**kw) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 23, 3], **kw)


def pd_resnet152(**kw) -> ResNet:
    return ResNet(Bottleneck, [3, 8, 36, 3], **kw)


def _vgg(depth: str, bn: bool) -> Callable[..., VGG]:
    def make(**kw) -> VGG:
        return VGG(_VGG_CFGS[depth], bn, **kw)
    make.__name__ = f"pd_vgg{depth}{'_bn' if bn else ''}"
    make.__doc__ = f"VGG-{depth}{' with batch norm' if bn else ''} (torchvision's layout and keys)."
    return make


pd_vgg11, pd_vgg13, pd_vgg16, pd_vgg19 = (_vgg(d, False) for d in ("11", "13", "16", "19"))
pd_vgg11_bn, pd_vgg13_bn, pd_vgg16_bn, pd_vgg19_bn = (_vgg(d, True) for d in ("11", "13", "16", "19"))


def pd_resnet_small(depth: int = 20, width: int = 16, **kw) -> ResNet:
    """CIFAR-style ResNet (He et al. 2016, sec. 4.2): 6n+2 layers, stages of width, 2·width, 4·width."""
    if depth < 8 or (depth - 2) % 6:
        raise PConvError(f"pd_resnet_small depth must be 6n+2 (8, 14, 20, 32, ...), got {depth}")
    n = (depth - 2) // 6
    return ResNet(BasicBlock, [n, n, n], widths=(width, 2 * width, 4 * width), small=True, **kw)


def pd_vgg_small(width: int = 16, batch_norm: bool = True, **kw) -> VGG:
    """A three-stage VGG (two 3×3 convolutions per stage, max-pool between) with global pooling."""
    w = width
    return VGG([w, w, "M", 2 * w, 2 * w, "M", 4 * w, 4 * w], batch_norm, small=True, **kw)


ARCHITECTURES: Dict[str, Callable[..., nn.Module]] = {
    f.__name__: f for f in (pd_resnet18, pd_resnet34, pd_resnet50, pd_resnet101, pd_resnet152,
                            pd_vgg11, pd_vgg13, pd_vgg16, pd_vgg19, pd_vgg11_bn, pd_vgg13_bn, pd_vgg16_bn,
                            pd_vgg19_bn, pd_resnet_small, pd_vgg_small)
}


def build_classifier(arch: str, **kw) -> nn.Module:
    """``ARCHITECTURES[arch](**kw)`` with a clear error for an unknown name."""
    if arch not in ARCHITECTURES:
        raise PConvError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**kw)

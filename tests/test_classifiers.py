"""pconv.classifiers: torchvision's architectures and keys, and a padding option that really pads.

Parameter counts are torchvision's published figures; key names follow its layout (``layerN.i``
blocks with ``downsample.0/1``; VGG ``features.i`` at torchvision's indices, ``classifier.0/3/6``).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from pconv.classifiers import ARCHITECTURES, PADDINGS, build_classifier, pd_resnet_small, pd_vgg_small
from pconv.errors import PConvError
from pconv.padding import PartialPaddingConv2d

TORCHVISION_PARAMS = {
    "pd_resnet18": 11_689_512, "pd_resnet34": 21_797_672, "pd_resnet50": 25_557_032,
    "pd_resnet101": 44_549_160, "pd_resnet152": 60_192_808,
    "pd_vgg11": 132_863_336, "pd_vgg11_bn": 132_868_840, "pd_vgg13": 133_047_848, "pd_vgg13_bn": 133_053_736,
    "pd_vgg16": 138_357_544, "pd_vgg16_bn": 138_365_992, "pd_vgg19": 143_667_240, "pd_vgg19_bn": 143_678_248,
}


def on_meta(name, **kw):
    with torch.device("meta"):  # no memory, no init cost: the large models' structure only
        return build_classifier(name, **kw)


@pytest.mark.parametrize("name", ["pd_resnet50", "pd_vgg16_bn", "pd_resnet18", "pd_vgg11"])
def test_parameter_counts_are_torchvisions(name):
    assert sum(p.numel() for p in on_meta(name).parameters()) == TORCHVISION_PARAMS[name]


def test_every_torchvision_architecture_is_there():
    assert set(TORCHVISION_PARAMS) <= set(ARCHITECTURES)


def test_resnet_keys():
    keys = list(on_meta("pd_resnet50").state_dict())
    assert len(keys) == 320
    assert keys[:6] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                        "bn1.num_batches_tracked"]
    for key in ["layer1.0.conv3.weight", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_var",
                "layer2.0.downsample.0.weight", "layer3.5.bn3.bias", "layer4.2.conv2.weight", "fc.weight", "fc.bias"]:
        assert key in keys, key
    assert "layer1.1.downsample.0.weight" not in keys and "layer3.6.conv1.weight" not in keys
    basic = list(on_meta("pd_resnet18").state_dict())
    assert "layer1.0.downsample.0.weight" not in basic and "layer2.0.downsample.0.weight" in basic
    assert "layer1.0.conv3.weight" not in basic


def test_vgg_keys_at_torchvisions_indices():
    plain = on_meta("pd_vgg16").state_dict()
    convs = sorted({int(k.split(".")[1]) for k in plain if k.startswith("features.")})
    assert convs == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert {k for k in plain if k.startswith("classifier.")} == {f"classifier.{i}.{p}" for i in (0, 3, 6)
                                                                for p in ("weight", "bias")}
    bn = on_meta("pd_vgg16_bn").state_dict()
    convs = sorted({int(k.split(".")[1]) for k in bn if k.startswith("features.") and bn[k].dim() == 4})
    assert convs == [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]
    assert "features.1.running_mean" in bn
    assert bn["classifier.0.weight"].shape == (4096, 512 * 7 * 7)


def test_num_classes_and_in_channels():
    model = on_meta("pd_resnet50", num_classes=7, in_channels=1)
    assert model.fc.out_features == 7 and model.conv1.in_channels == 1
    vgg = on_meta("pd_vgg11_bn", num_classes=3, in_channels=4)
    assert vgg.classifier[6].out_features == 3 and vgg.features[0].in_channels == 4
    small = pd_resnet_small(num_classes=10, in_channels=1)
    assert small(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert small(torch.randn(1, 1, 36, 36)).shape == (1, 10)  # global pooling: any size
    assert pd_vgg_small(width=8, num_classes=4, in_channels=3)(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_paddings_share_weights_and_keys_and_differ_at_the_border_only():
    models = {}
    for padding in PADDINGS:
        torch.manual_seed(0)
        models[padding] = pd_resnet_small(depth=8, width=4, num_classes=3, in_channels=1, padding=padding).eval()
    ref = models["zeros"].state_dict()
    for padding, model in models.items():
        assert list(model.state_dict()) == list(ref)
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.values())), padding
    assert isinstance(models["partial"].conv1, PartialPaddingConv2d)
    assert models["reflect"].conv1.padding_mode == "reflect" and models["replicate"].conv1.padding_mode == "replicate"
    x = torch.randn(1, 1, 12, 12)
    first = {p: m.conv1(x) for p, m in models.items()}
    for p in PADDINGS:
        torch.testing.assert_close(first[p][..., 1:-1, 1:-1], first["zeros"][..., 1:-1, 1:-1])
    names = list(PADDINGS)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            border = (first[a] - first[b]).abs()
            border[..., 1:-1, 1:-1] = 0
            assert border.max() > 1e-3, (a, b)
            assert not torch.allclose(models[a](x), models[b](x)), (a, b)


def test_weights_load_across_paddings():
    source = pd_vgg_small(width=4, num_classes=2, in_channels=1, padding="zeros")
    target = pd_vgg_small(width=4, num_classes=2, in_channels=1, padding="partial")
    target.load_state_dict(source.state_dict())  # strict
    assert torch.equal(target.features[0].weight, source.features[0].weight)


def test_errors():
    with pytest.raises(PConvError, match="unknown padding 'circular'"):
        pd_resnet_small(padding="circular")
    with pytest.raises(PConvError, match="unknown architecture"):
        build_classifier("resnet50")
    with pytest.raises(PConvError, match="6n\\+2"):
        pd_resnet_small(depth=10)
    with pytest.raises(PConvError, match="positive"):
        pd_vgg_small(num_classes=0)
    assert all(isinstance(m, nn.Module) for m in [on_meta("pd_vgg19_bn"), on_meta("pd_resnet152")])

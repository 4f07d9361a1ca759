"""Inpainting real photos: any size, any sensible input, known pixels kept exactly.

:class:`Inpainter` wraps a trained :class:`~pconv.model.PConvUNet` (or a classical baseline) and
does the policy around the network once, for the Python API, the CLI and the HTTP server:

* **Any size.** The network needs H and W to be multiples of 2**depth; each input is padded at the
  bottom/right to the next multiple, the padding marked as hole (partial convolution ignores it),
  and the result cropped back.
* **Composite.** Every known pixel of the output is the input's pixel, bit for bit; only hole
  pixels come from the network.
* **Large photos** (IOPaint's HD strategies; ``S`` = the model's training resolution,
  ``config.image_size``); every strategy keeps each hole within the network's reach
  (:mod:`pconv.planning` holds the rule and the windows):

  - ``original``: the whole photo at full resolution (plus a downscaled pass for holes too
    wide to bridge there); above 6·S in full-resolution windows around the holes. Best detail;
    time grows with the holes' surroundings at full resolution.
  - ``crop``: one window per group of nearby holes: their bounding box plus half its size
    (at least ``crop_margin``, default S/4), at least S×S, downscaled to 2·S on its long side
    when bigger; small holes (specks, dust) one window per tile of 6·S, downscaled to 3·S.
    Cost follows the holes, not the photo.
  - ``resize``: the whole photo downscaled to S on its long side, filled, upscaled, and only the
    hole pixels pasted back. Cheapest and sees the whole scene, but fills are soft on big photos.
  - ``auto`` (default): ``original`` when the long side is at most 2·S (at most 4× the training
    area: cheap, full detail), ``crop`` above. ``resize`` is never picked automatically.

  Classical baselines (``method="telea"`` etc.) have no training resolution: ``auto`` means
  ``original`` for them, and ``crop`` windows are not downscaled.
* **Masks**: white/True/1 = hole unless ``invert_mask``; grey levels are thresholded (level >
  ``threshold``, levels in [0, 1]); a mask of another size is an error unless ``resize_mask``
  (nearest-neighbour). An empty mask returns the image unchanged (``InpaintResult.empty_mask``
  and a log line say so); an all-hole mask is an error: there is nothing to condition on.
* **Precision**: ``precision="auto"`` runs bf16 autocast on CPUs with native bf16 (AVX-512 BF16
  or AMX) and on CUDA; it measured ~1.3-1.7× faster than fp32 on this project's CPU with output
  differences under one grey level (BENCHMARKS.md, "Inference"). ``"fp32"`` forces fp32.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from PIL import Image

from pconv.device import autocast_dtype, resolve_device, resolve_precision
from pconv.errors import PConvError
from pconv.model import PConvUNet, PConvUNetConfig
from pconv.masks.io import fit_hole
from pconv.planning import REACH, Window as _Window, grow_box as _grow_box, hole_regions, plan_windows, texture_boxes
from pconv.patch_texture import PatchTextureConfig, patch_texture, patchmatch_available
from pconv.texture import TextureConfig, transfer_detail

__all__ = ["Inpainter", "InpaintResult", "ProgressCallback", "to_hole_array", "STRATEGIES", "NETWORK_METHODS", "split_image"]

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "original", "crop", "resize")
#: The network's methods: ``pconv`` = the photographic fill (the network's fill plus fine detail
#: copied from the photo, :mod:`pconv.texture`), ``pconv-smooth`` = the network's fill alone.
NETWORK_METHODS = ("pconv", "pconv-smooth")
PathLike = Union[str, os.PathLike]
ImageLike = Union[np.ndarray, Image.Image]


# --------------------------------------------------------------------------------------------- masks
def to_hole_array(mask: Any, invert: bool = False, threshold: float = 0.5) -> np.ndarray:
    """An in-memory mask (PIL image, or numpy HxW / HxWx1|3|4 bool, uint8, uint16 or float in [0, 1])
    as a bool hole array, True = hole, by the one mask rule of :mod:`pconv.masks.rules` (alpha when
    it varies, else the brightest channel; level ``> threshold`` is hole; flipped by ``invert``).

    A mask with no hole, or one over ``rules.LARGE_HOLE`` of the image, gets a
    :class:`~pconv.masks.rules.MaskWarning` (probably the wrong polarity or threshold).
    """
    from pconv.masks import rules

    hole = rules.to_hole(mask, invert=invert, threshold=threshold)
    rules.warn_about_mask(hole, invert)
    return hole


def _any_hole_downscale(hole: np.ndarray, height: int, width: int) -> np.ndarray:
    """Downscale a hole array so that any output pixel touching a hole is a hole (nothing leaks)."""
    im = Image.fromarray(hole.astype(np.float32), "F").resize((width, height), Image.Resampling.BOX)
    return np.asarray(im) > 0


def _downscale_window(rgb: np.ndarray, hole: np.ndarray, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """Area-downscale a window for the network without letting hole content leak into known pixels.

    Hole pixels are zeroed first and the box filter's support equals the any-hole rule's, so a
    small pixel is either a hole or an average of known pixels only.
    """
    clean = np.where(hole[:, :, None], np.uint8(0), rgb)
    small = np.asarray(Image.fromarray(clean, "RGB").resize((width, height), Image.Resampling.BOX))
    return small, _any_hole_downscale(hole, height, width)


# -------------------------------------------------------------------------------------------- images
def split_image(image: ImageLike) -> Tuple[np.ndarray, Optional[np.ndarray], Dict[str, Any]]:
    """Any accepted image -> (rgb uint8 HxWx3, alpha uint8 HxW or None, how to rebuild the input type)."""
    if isinstance(image, Image.Image):
        from pconv.imageio import _decode

        mode = image.mode
        if image.width == 0 or image.height == 0:
            raise PConvError(f"image has zero size ({image.width}×{image.height})")
        rgb, alpha, grey = _decode(image, "image", [])  # type: ignore[arg-type]
        if grey:
            out_mode = "LA" if alpha is not None else "L"
        else:
            out_mode = "RGBA" if alpha is not None else "RGB"
        return rgb, alpha, {"kind": "pil", "mode": out_mode, "source_mode": mode}
    if isinstance(image, torch.Tensor):
        raise PConvError("pass images as PIL images or uint8 numpy arrays (H, W, 3), not torch tensors")
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise PConvError(
            f"numpy images must be uint8 (H, W, 3) RGB, got dtype {a.dtype}; "
            "convert with (img * 255).round().astype(np.uint8) if it is float in [0, 1]"
        )
    if a.ndim == 2:
        shape = "grey"
        rgb, alpha = np.repeat(a[:, :, None], 3, axis=2), None
    elif a.ndim == 3 and a.shape[2] == 1:
        shape = "grey1"
        rgb, alpha = np.repeat(a, 3, axis=2), None
    elif a.ndim == 3 and a.shape[2] == 3:
        shape = "rgb"
        rgb, alpha = a, None
    elif a.ndim == 3 and a.shape[2] == 4:
        shape = "rgba"
        rgb, alpha = np.ascontiguousarray(a[:, :, :3]), np.ascontiguousarray(a[:, :, 3])
    else:
        raise PConvError(f"numpy images must be (H, W, 3) RGB (or (H, W), (H, W, 4)), got shape {a.shape}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise PConvError(f"image has zero size ({rgb.shape[1]}×{rgb.shape[0]})")
    return np.ascontiguousarray(rgb), alpha, {"kind": "numpy", "shape": shape}


def _rebuild(rgb: np.ndarray, alpha: Optional[np.ndarray], how: Dict[str, Any]) -> ImageLike:
    if how["kind"] == "pil":
        mode = how["mode"]
        im = Image.fromarray(rgb, "RGB")
        if mode in ("L", "LA"):
            im = im.convert("L")
        if alpha is not None:
            im = im.convert("LA" if mode == "LA" else "RGBA")
            im.putalpha(Image.fromarray(alpha, "L"))
        return im
    shape = how["shape"]
    if shape == "grey":
        return np.asarray(Image.fromarray(rgb, "RGB").convert("L"))
    if shape == "grey1":
        return np.asarray(Image.fromarray(rgb, "RGB").convert("L"))[:, :, None]
    if shape == "rgba":
        return np.concatenate([rgb, alpha[:, :, None]], axis=2)  # type: ignore[index]
    return rgb


# ---------------------------------------------------------------------------------------- progress
ProgressCallback = Callable[[float, str], None]


class _Progress:
    """Calls the user's ``progress(fraction, stage)`` with a fraction that never goes down."""

    def __init__(self, callback: Optional[ProgressCallback]) -> None:
        self.callback = callback
        self.last = 0.0

    def __call__(self, fraction: float, stage: str) -> None:
        if self.callback is None:
            return
        self.last = max(self.last, min(1.0, float(fraction)))
        self.callback(self.last, stage)


@dataclass
class InpaintResult:
    """What :meth:`Inpainter.inpaint` did: the filled RGB, and how."""

    image: np.ndarray  #: uint8 (H, W, 3), known pixels exactly the input's
    hole: np.ndarray  #: the bool hole mask used (True = hole)
    strategy: str  #: the strategy actually used
    windows: int = 0  #: network (or baseline) runs
    empty_mask: bool = False  #: no hole: the image was returned unchanged
    alpha: Optional[np.ndarray] = None
    notes: List[str] = field(default_factory=list)

    @property
    def hole_fraction(self) -> float:
        return float(self.hole.mean()) if self.hole.size else 0.0


# --------------------------------------------------------------------------------------- inpainter
class Inpainter:
    """Fill holes in photos with a PConv U-Net (default) or a classical baseline.

    ``weights``: a weights file (safetensors; legacy .pt/.pth only through weights_only loading),
    a :class:`PConvUNet` already built, or None for the model shipped with pconv.
    ``method``: "pconv" (the photographic fill: the network's fill with fine detail copied from the
    known part of the photo, :mod:`pconv.texture`), "pconv-smooth" (the network's fill alone: the
    highest PSNR, but large holes look foggy), or a baseline of :data:`pconv.baselines.BASELINES`
    ("telea", "ns", "biharmonic", "patchmatch"). ``texture``: the detail transfer's settings for
    "pconv" (default :class:`~pconv.texture.TextureConfig`); ``patch_texture``: on photos larger
    than 2·S, the texture band PatchMatch gives wide holes (:mod:`pconv.patch_texture`; True = its
    defaults, a :class:`~pconv.patch_texture.PatchTextureConfig`, or False for the detail transfer
    alone); ``seed``: its random draw (results are
    deterministic for a seed). ``device``: "cpu", "cuda", "cuda:N", "mps" or "auto".
    ``precision``: "auto", "fp32", "bf16" (CPU/GPU) or "fp16" (GPU). ``batch_size``: windows run
    together (of windows larger than 2·S a side, proportionally fewer). ``crop_margin``: context
    around each hole group for the crop strategy (default S/4).
    ``flip_average``: also run the mirror image and average the two fills (test-time augmentation:
    twice the compute; the result is exactly mirror-symmetric: filling a mirrored photo gives the
    mirrored fill).
    ``compile``: run the network through ``torch.compile`` (the first call of each window size
    compiles, seconds to minutes; meant for GPUs and many photos, BENCHMARKS.md).

    ``inpainter(image, mask)`` returns the filled image in the type of ``image`` (PIL in, PIL out;
    numpy in, numpy out); :meth:`inpaint` returns an :class:`InpaintResult` with details.
    """

    def __init__(
        self,
        weights: "PathLike | PConvUNet | None" = None,
        *,
        method: str = "pconv",
        device: str = "cpu",
        precision: str = "auto",
        batch_size: int = 4,
        crop_margin: Optional[int] = None,
        flip_average: bool = False,
        texture: Optional[TextureConfig] = None,
        patch_texture: "bool | PatchTextureConfig" = True,
        seed: int = 0,
        compile: bool = False,
    ) -> None:
        self.method = method
        self.seed = int(seed)
        self.texture: Optional[TextureConfig] = None
        if method == "pconv":
            self.texture = texture if texture is not None else TextureConfig()
        elif texture is not None:
            raise PConvError(f"texture settings apply to method 'pconv' (the photographic fill), not {method!r}")
        self.patch_texture: Optional[PatchTextureConfig] = None
        if self.texture is not None and patch_texture is not False:
            self.patch_texture = patch_texture if isinstance(patch_texture, PatchTextureConfig) else PatchTextureConfig()
        self.flip_average = bool(flip_average)
        self.device = resolve_device(device)
        if int(batch_size) < 1:
            raise PConvError(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.model: Optional[PConvUNet] = None
        if method in NETWORK_METHODS:
            if isinstance(weights, PConvUNet):
                model = weights
            else:
                from pconv.weights import load_model

                model = load_model(weights)
            self.model = model.to(self.device).eval()
            # torch.compile wraps the module: the weights stay shared with self.model
            self._net: torch.nn.Module = torch.compile(self.model) if compile else self.model
            self.precision = resolve_precision(precision, self.device)
            self.config: Optional[PConvUNetConfig] = self.model.config
            self.image_size: Optional[int] = self.config.image_size
            self.multiple = self.config.multiple
        else:
            from pconv.baselines import BASELINES

            if method not in BASELINES:
                raise PConvError(f"unknown method {method!r}; use one of {', '.join(NETWORK_METHODS + tuple(BASELINES))}")
            if self.device.type != "cpu":
                raise PConvError(f"the {method} baseline runs on the CPU only; use device='cpu'")
            if compile:
                raise PConvError(f"compile applies to the pconv network; the {method} baseline has none to compile")
            self.precision = "fp32"
            self.config = None
            self.image_size = None
            self.multiple = 1
        self.crop_margin = int(crop_margin) if crop_margin is not None else max(16, (self.image_size or 256) // 4)
        #: the widest hole (inscribed radius, network px) the network fills at one scale (pconv.planning)
        self.reach: Optional[float] = REACH * (self.image_size or 256) / 256 if self.model is not None else None
        self.last_result: Optional[InpaintResult] = None

    def __repr__(self) -> str:
        return (f"Inpainter(method={self.method!r}, device={str(self.device)!r}, precision={self.precision!r}, "
                f"image_size={self.image_size}, flip_average={self.flip_average})")

    # ---------------------------------------------------------------- public API
    def choose_strategy(self, height: int, width: int, strategy: str = "auto") -> str:
        """The strategy used for an image of this size (see the module docstring for the rule)."""
        if strategy not in STRATEGIES:
            raise PConvError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if strategy != "auto":
            return strategy
        if self.image_size is None:
            return "original"
        return "original" if max(height, width) <= 2 * self.image_size else "crop"

    def __call__(
        self,
        image: ImageLike,
        mask: Any,
        *,
        strategy: str = "auto",
        invert_mask: bool = False,
        resize_mask: bool = False,
        threshold: float = 0.5,
        progress: Optional[ProgressCallback] = None,
    ) -> ImageLike:
        """Fill the holes of ``mask`` in ``image``; returns the same type (PIL or numpy) and mode."""
        return self.inpaint_batch([image], [mask], strategy=strategy, invert_mask=invert_mask,
                                  resize_mask=resize_mask, threshold=threshold, progress=progress)[0]

    def inpaint(
        self,
        image: ImageLike,
        mask: Any,
        *,
        strategy: str = "auto",
        invert_mask: bool = False,
        resize_mask: bool = False,
        threshold: float = 0.5,
        progress: Optional[ProgressCallback] = None,
    ) -> InpaintResult:
        """Like calling the inpainter, but returns an :class:`InpaintResult` (RGB array + details).

        ``progress(fraction, stage)`` is called at stage boundaries (fraction in [0, 1]); an
        exception it raises stops the work and propagates (a server cancels a job this way).
        """
        return self._run([image], [mask], strategy, invert_mask, resize_mask, threshold, progress)[0][0]

    def inpaint_many(
        self,
        images: Sequence[ImageLike],
        masks: "Sequence[Any] | Any",
        *,
        strategy: str = "auto",
        invert_mask: bool = False,
        resize_mask: bool = False,
        threshold: float = 0.5,
        progress: Optional[ProgressCallback] = None,
    ) -> List[InpaintResult]:
        """:meth:`inpaint` for many images: windows of equal padded size run together (``batch_size``)."""
        return self._run(images, masks, strategy, invert_mask, resize_mask, threshold, progress)[0]

    def inpaint_batch(
        self,
        images: Sequence[ImageLike],
        masks: "Sequence[Any] | Any",
        *,
        strategy: str = "auto",
        invert_mask: bool = False,
        resize_mask: bool = False,
        threshold: float = 0.5,
        progress: Optional[ProgressCallback] = None,
    ) -> List[ImageLike]:
        """Fill many images; ``masks`` is one mask per image, or a single mask for all of them.

        Windows of equal size from all images go through the network together (``batch_size``).
        """
        results, hows = self._run(images, masks, strategy, invert_mask, resize_mask, threshold, progress)
        return [_rebuild(r.image, r.alpha, how) for r, how in zip(results, hows)]

    # ---------------------------------------------------------------- internals
    def _run(self, images: Sequence[ImageLike], masks: Any, strategy: str, invert_mask: bool,
             resize_mask: bool, threshold: float, progress: Optional[ProgressCallback] = None,
             ) -> Tuple[List[InpaintResult], List[Dict[str, Any]]]:
        report = _Progress(progress)
        images = list(images)
        if not images:
            return [], []
        single = not isinstance(masks, (list, tuple))
        mask_list = [masks] * len(images) if single else list(masks)
        if len(mask_list) != len(images):
            raise PConvError(f"got {len(images)} images but {len(mask_list)} masks; give one mask per image, or one for all")
        results: List[Optional[InpaintResult]] = []
        hows: List[Dict[str, Any]] = []
        windows: List[_Window] = []
        inputs: List[np.ndarray] = []
        holes: List[Optional[np.ndarray]] = []
        for i, (image, mask) in enumerate(zip(images, mask_list)):
            rgb, alpha, how = split_image(image)
            hows.append(how)
            inputs.append(rgb)
            h, w = rgb.shape[:2]
            hole = to_hole_array(mask, invert=invert_mask, threshold=threshold)
            hole = fit_hole(hole, h, w, resize_mask)
            used = self.choose_strategy(h, w, strategy)
            holes.append(hole)
            if not hole.any():
                log.info("the mask has no hole pixels: image %d returned unchanged", i)
                results.append(InpaintResult(rgb.copy(), hole, used, 0, True, alpha,
                                             ["mask has no hole pixels: image returned unchanged"]))
                continue
            if hole.all():
                raise PConvError(
                    "the mask covers the whole image: there are no known pixels to fill the holes from. "
                    "Check the mask's polarity (white = hole; --invert-mask / invert_mask=True flips it)"
                )
            results.append(InpaintResult(rgb.copy(), hole, used, 0, False, alpha))
            windows.extend(self._plan(i, rgb, hole, used))
        report(0.0, "network")
        self._execute(windows, inputs, holes, report)
        for win in windows:
            res = results[win.image_index]
            y0, y1, x0, x1 = win.box
            region = res.image[y0:y1, x0:x1]  # type: ignore[union-attr]
            region[win.paste] = win.out[win.paste]  # type: ignore[index]
            res.windows += 1  # type: ignore[union-attr]
        if self.texture is not None:
            for k, (res, hole) in enumerate(zip(results, holes)):
                if res is not None and not res.empty_mask:
                    report(0.6 + 0.4 * k / len(results), "texture")
                    res.image = self._add_texture(res.image, hole)  # type: ignore[arg-type]
        report(1.0, "done")
        final = [r for r in results if r is not None]
        self.last_result = final[-1] if final else None
        return final, hows

    def _add_texture(self, rgb: np.ndarray, hole: np.ndarray) -> np.ndarray:
        """Texture for the filled holes, at the photo's full resolution.

        Photos up to 2·S on the long side take their detail from the whole photo; larger ones from
        the boxes of :func:`pconv.planning.texture_boxes` (a wide hole in its own context box, small
        holes gathered by tile), so the cost follows the photo's area once, not once per hole. Wide
        holes (inscribed radius at least ``patch_texture.min_radius``) first get PatchMatch's
        texture band (:mod:`pconv.patch_texture`); the detail transfer then adds the finest grain.
        """
        h, w = hole.shape
        size = self.image_size or 256
        cfg: TextureConfig = self.texture  # type: ignore[assignment]
        if max(h, w) <= 2 * size:
            return transfer_detail(rgb, hole, cfg, self.seed)
        band = self.patch_texture if (self.patch_texture is not None and patchmatch_available()) else None
        if self.patch_texture is not None and band is None:
            log.info("pypatchmatch is not installed: wide holes get the detail transfer alone "
                     "(pip install 'pconv[patchmatch]' for their texture band)")
        wide_radius = (self.patch_texture or PatchTextureConfig()).min_radius
        out = rgb.copy()
        for job in texture_boxes(hole, size, self.crop_margin, wide_radius):
            y0, y1, x0, x1 = job.box
            box, box_hole = rgb[y0:y1, x0:x1], hole[y0:y1, x0:x1]
            if job.wide and band is not None:
                banded = patch_texture(box, box_hole, box, band, self.seed)
                filled = transfer_detail(banded, box_hole, replace(cfg, mid_gain=0.0), self.seed)
            else:
                filled = transfer_detail(box, box_hole, cfg, self.seed)
            out[y0:y1, x0:x1][job.paste] = filled[job.paste]
        return out

    def _plan(self, index: int, rgb: np.ndarray, hole: np.ndarray, strategy: str) -> List[_Window]:
        return plan_windows(index, hole, strategy, self.image_size, self.crop_margin, self.reach)

    def _execute(self, windows: List[_Window], inputs: List[np.ndarray], holes: List[Optional[np.ndarray]],
                 report: Optional["_Progress"] = None) -> None:
        # Network inputs are cut per batch, so memory holds one batch of windows at a time.
        groups: Dict[Tuple[int, int], List[_Window]] = {}
        for win in windows:
            groups.setdefault(self._padded(win.net_size), []).append(win)
        done = 0
        share = 0.6 if self.texture is not None else 1.0
        # A batch holds batch_size windows of up to 2·S a side, fewer of larger ones (one at least):
        # full-resolution windows of 1000+ px run alone, so memory follows one window.
        budget = self.batch_size * (2 * (self.image_size or 256)) ** 2
        for (ph, pw), group in groups.items():
            step = max(1, min(self.batch_size, budget // (ph * pw)))
            for start in range(0, len(group), step):
                chunk = group[start:start + step]
                if report is not None:
                    report(share * done / max(1, len(windows)), "network")
                done += len(chunk)
                rgbs, chunk_holes = [], []
                for win in chunk:
                    rgb, hole = self._window_input(win, inputs[win.image_index], holes[win.image_index])
                    rgbs.append(rgb)
                    chunk_holes.append(hole)
                filled = self._fill(rgbs, chunk_holes)
                for win, out in zip(chunk, filled):
                    y0, y1, x0, x1 = win.box
                    if out.shape[:2] != (y1 - y0, x1 - x0):
                        out = np.asarray(Image.fromarray(out, "RGB").resize((x1 - x0, y1 - y0), Image.Resampling.BICUBIC))
                    win.out = out

    def _window_input(self, win: _Window, rgb_full: np.ndarray, hole_full: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """The window's network input: its pixels and *every* hole inside it (other regions' too)."""
        y0, y1, x0, x1 = win.box
        rgb = rgb_full[y0:y1, x0:x1]
        hole = hole_full[y0:y1, x0:x1]
        nh, nw = win.net_size
        if (nh, nw) != rgb.shape[:2]:
            rgb, hole = _downscale_window(rgb, hole, nh, nw)
        return np.ascontiguousarray(rgb), np.ascontiguousarray(hole)

    def _padded(self, size: Tuple[int, int]) -> Tuple[int, int]:
        m = self.multiple
        return (math.ceil(size[0] / m) * m, math.ceil(size[1] / m) * m)

    def _fill(self, rgbs: List[np.ndarray], holes: List[np.ndarray]) -> List[np.ndarray]:
        """Fill equally padded windows: one network batch, or a baseline per window."""
        if self.model is None:
            from pconv.baselines import fill

            return [fill(self.method, rgb, hole) for rgb, hole in zip(rgbs, holes)]
        ph, pw = self._padded(rgbs[0].shape[:2])
        n = len(rgbs)
        x = np.zeros((n, ph, pw, 3), np.uint8)
        valid = np.zeros((n, 1, ph, pw), np.float32)  # padding = hole
        for i, (rgb, hole) in enumerate(zip(rgbs, holes)):
            h, w = hole.shape
            x[i, :h, :w] = rgb
            valid[i, 0, :h, :w] = ~hole
        xt = torch.from_numpy(x).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        mt = torch.from_numpy(valid).to(self.device)
        dtype = autocast_dtype(self.precision)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype or torch.float32,
                                                    enabled=dtype is not None):
            y = self._net(xt, mt).float()
            if self.flip_average:
                # (a + b) / 2 is symmetric in a and b, so a mirrored input gives the mirrored output exactly
                y = (y + self._net(xt.flip(3), mt.flip(3)).float().flip(3)) * 0.5
            y = y.clamp(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        out = []
        for i, (rgb, hole) in enumerate(zip(rgbs, holes)):
            h, w = hole.shape
            out.append(np.where(hole[:, :, None], y[i, :h, :w], rgb))
        return out

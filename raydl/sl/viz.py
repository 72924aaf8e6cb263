"""Seeing inside a CNN: the activation maps of every convolution for one image, and the
filters of the first one, as PNG grids (edges first, then textures, then parts)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from raydl.errors import ConfigError
from raydl.sl.backbones import input_spec
from raydl.sl.data import backbone_data, image_transform
from raydl.sl.evaluate import Loaded, load_checkpoint

# Small maps (8x8 digits, 4x4 deep layers) are scaled up so one cell is visible.
MIN_CELL_PIXELS = 48


def prepare_image(path: Path, loaded: Loaded) -> torch.Tensor:
    """`path` as the network saw its training images: same channels, size, statistics."""
    from PIL import Image, UnidentifiedImageError

    data = json.loads((loaded.directory / "data.json").read_text())
    mean, std, shape = data["mean"], data["std"], data["input_shape"]
    if len(shape) != 3:
        raise ConfigError(f"{loaded.directory}: viz needs an image model, this one reads {shape} sequences")
    try:
        with Image.open(path) as img:
            img = img.convert("L" if len(mean) == 1 else "RGB")
            if not loaded.cfg.data.image_size:
                img = img.resize((shape[2], shape[1]))
            arr = np.asarray(img)
    except (OSError, UnidentifiedImageError) as exc:
        raise ConfigError(f"--image {path}: cannot read an image from it ({exc})") from None
    pixels = torch.as_tensor(arr if arr.ndim == 3 else arr[..., None]).permute(2, 0, 1).contiguous()
    data = backbone_data(loaded.cfg.data, input_spec(loaded.cfg.model))
    return image_transform(data, mean, std, train=False)(pixels).unsqueeze(0)


def activation_maps(net: nn.Module, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """(name, output of the layer (C, H, W)) for every Conv2d, in forward order."""
    maps: list[tuple[str, torch.Tensor]] = []
    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: maps.append((name, o[0].detach())))
        for name, module in net.named_modules() if isinstance(module, nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            net.eval()(x)
    finally:
        for hook in hooks:
            hook.remove()
    return maps


def _grid(tiles: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) tiles, each scaled to [0, 1] on its own, in a square-ish grid."""
    from torchvision.utils import make_grid

    flat = tiles.reshape(len(tiles), -1)
    low, high = flat.min(1).values, flat.max(1).values
    tiles = (tiles - low.view(-1, 1, 1, 1)) / (high - low).clamp_min(1e-8).view(-1, 1, 1, 1)
    scale = max(1, math.ceil(MIN_CELL_PIXELS / tiles.shape[-1]))
    tiles = nn.functional.interpolate(tiles, scale_factor=scale, mode="nearest")
    return make_grid(tiles, nrow=math.ceil(math.sqrt(len(tiles))), padding=2, pad_value=1.0)


def write_visualizations(loaded: Loaded, image: Path, out: Path) -> list[Path]:
    """One PNG of activation maps per conv layer, and one of the first layer's filters."""
    from torchvision.utils import save_image

    maps = activation_maps(loaded.net, prepare_image(image, loaded))
    if not maps:
        raise ConfigError(f"{loaded.directory}: the model has no convolutional layers to show")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, (name, fmap) in enumerate(maps, start=1):
        path = out / f"activations_{i:02d}_{name.replace('.', '_')}.png"
        save_image(_grid(fmap.unsqueeze(1)), path)
        written.append(path)
    first = next(m for m in loaded.net.modules() if isinstance(m, nn.Conv2d))
    weights = first.weight.detach()
    if weights.shape[1] not in (1, 3):  # show the mean over input channels
        weights = weights.mean(dim=1, keepdim=True)
    path = out / "filters_01.png"
    save_image(_grid(weights), path)
    written.append(path)
    return written


def viz_command(directory: Path, image: Path, out: Path) -> None:
    """`raydl viz` of a classifier checkpoint: activation grids for one image."""
    if not image.is_file():
        raise ConfigError(f"--image {image}: no such file")
    loaded = load_checkpoint(directory)
    written = write_visualizations(loaded, image, out)
    for path in written:
        print(path)
    print(f"raydl viz: {len(written) - 1} activation grids and the first layer's filters in {out}")

"""Sample-quality scores with a classifier trained by raydl itself (offline), beside the
same scores of held-out real images; and torchmetrics' FID for users with Inception
weights.

Every image entering here is a float tensor (N, C, H, W) in [0, 1] at the generative
model's resolution. The scorer converts it to what its classifier was trained on
(channels, size, normalization), so real and generated images take the same path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from raydl.errors import ConfigError
from raydl.gen.metrics import class_coverage, classifier_score, frechet_distance


class Scorer:
    """A `classify` checkpoint as a judge: class probabilities and penultimate-layer
    features (the input of the network's last Linear layer) of images."""

    def __init__(self, checkpoint_dir: Path) -> None:
        from raydl.sl.evaluate import load_checkpoint

        loaded = load_checkpoint(checkpoint_dir)
        if loaded.cfg.kind != "classify" or loaded.cfg.data.sequence:
            raise ConfigError(f"score.classifier: {checkpoint_dir} is not an image classifier checkpoint")
        info = json.loads((checkpoint_dir / "data.json").read_text())
        self.net = loaded.net.eval()
        self.channels, self.height, self.width = info["input_shape"]
        self.num_classes = int(info["num_classes"])
        normalize = loaded.cfg.data.normalize
        mean, std = info.get("mean") or [0.0], info.get("std") or [1.0]
        if len(mean) != self.channels:
            mean, std = mean[:1] * self.channels, std[:1] * self.channels
        self.mean = torch.tensor(mean if normalize else [0.0] * self.channels).view(1, -1, 1, 1)
        self.std = torch.tensor(std if normalize else [1.0] * self.channels).view(1, -1, 1, 1)
        last = [m for m in self.net.modules() if isinstance(m, nn.Linear)][-1]
        self._features: list[torch.Tensor] = []
        last.register_forward_hook(lambda _m, inputs, _out: self._features.append(inputs[0].detach()))

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> the classifier's input (channels, size, normalization)."""
        x = images.float()
        if x.shape[1] != self.channels:
            x = x.mean(dim=1, keepdim=True) if self.channels == 1 else x.expand(-1, self.channels, -1, -1)
        if tuple(x.shape[-2:]) != (self.height, self.width):
            x = nn.functional.interpolate(x, size=(self.height, self.width), mode="bilinear",
                                          antialias=True, align_corners=False)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def outputs(self, images: torch.Tensor, batch: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """(class probabilities, penultimate features) as float64 arrays."""
        probs, feats = [], []
        for i in range(0, len(images), batch):
            self._features.clear()
            logits = self.net(self.prepare(images[i : i + batch]))
            probs.append(torch.softmax(logits.float(), dim=1))
            feats.append(self._features[-1].flatten(1).float())
        return torch.cat(probs).double().numpy(), torch.cat(feats).double().numpy()

    def scores(self, images: torch.Tensor, reference_features: np.ndarray, prefix: str = "",
               labels: torch.Tensor | None = None) -> dict[str, float]:
        """classifier score, Frechet distance to the reference (training-set) features,
        and class coverage (a class counts once it holds a quarter of its fair share);
        with the classes the images were drawn as (a conditional generator), also
        `label_accuracy`: the share the classifier puts in the asked class."""
        probs, feats = self.outputs(images)
        out = {
            f"{prefix}classifier_score": classifier_score(probs),
            f"{prefix}frechet_distance": frechet_distance(feats, reference_features),
            f"{prefix}class_coverage": class_coverage(probs, min_share=0.25 / self.num_classes),
        }
        if labels is not None:
            out[f"{prefix}label_accuracy"] = float((probs.argmax(axis=1) == labels.numpy()).mean())
        return out


def check_inception(weights: str) -> Path:
    """The Inception weights file for FID, or a one-line error."""
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"score.inception_weights: {path} is not a file (torch-fidelity's "
            "pt_inception-2015-12-05 weights, saved by torch.save)"
        )
    try:
        import torch_fidelity  # noqa: F401
        import torchmetrics  # noqa: F401
    except ImportError:
        raise ConfigError(
            "score.inception_weights: FID needs torchmetrics and torch-fidelity; "
            "pip install 'raydl[fid]'"
        ) from None
    return path


def inception_fid(real: torch.Tensor, fake: torch.Tensor, weights: Path, batch: int = 100) -> float:
    """torchmetrics' FrechetInceptionDistance (2048 features) with a local weights file."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    fid = FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=str(weights))

    def rgb(x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x

    with torch.no_grad():
        for images, is_real in ((real, True), (fake, False)):
            for i in range(0, len(images), batch):
                fid.update(rgb(images[i : i + batch]).clamp(0, 1), real=is_real)
    return float(fid.compute())


def save_grid(images: torch.Tensor, path: Path, nrow: int = 8) -> Path:
    """A PNG grid of [0, 1] images, written atomically (temp file, then rename)."""
    from torchvision.utils import save_image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    save_image(images.clamp(0, 1), str(tmp), nrow=nrow, padding=2, pad_value=1.0)
    tmp.replace(path)
    return path


def _stack(dataset: Any, limit: int, seed: int) -> torch.Tensor:
    """Up to `limit` images of a dataset of (image, label) pairs, a seeded random subset."""
    n = len(dataset)
    order = np.random.default_rng(seed).permutation(n)[: min(limit, n)]
    return torch.stack([dataset[int(i)][0] for i in order])

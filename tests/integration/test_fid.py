"""FID through torchmetrics with a local Inception weights file (no download): the file is
made here from a randomly initialised InceptionV3 of torch-fidelity's layout, which is
what users save from the real weights."""

from pathlib import Path

import pytest
import torch

from raydl.errors import ConfigError
from raydl.gen.scoring import check_inception, inception_fid


def _random_inception_weights(path: Path) -> Path:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # keep the random init
            return None

    empty = path.with_name("empty.pt")
    torch.save({}, empty)
    torch.manual_seed(0)
    net = Skeleton("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(empty))
    for module in net.modules():  # activations that neither vanish nor explode over 48 layers
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    torch.save(net.state_dict(), path)
    return path


def test_inception_fid_from_a_local_weights_file(tmp_path: Path) -> None:
    weights = check_inception(str(_random_inception_weights(tmp_path / "inception.pt")))
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(6, 1, 28, 28, generator=gen)  # grey images are expanded to RGB
    other = (torch.rand(6, 1, 28, 28, generator=gen) * 0.2 + 0.8)
    same = inception_fid(real, real, weights)
    different = inception_fid(real, other, weights)
    assert abs(same) < 1e-2
    assert different > same + 1e-3


def test_missing_inception_weights_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"score\.inception_weights: .*nope\.pt is not a file"):
        check_inception(str(tmp_path / "nope.pt"))

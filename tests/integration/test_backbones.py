"""A torchvision backbone by name on a real Ray Train fit (2 workers), then a heterogeneous
ensemble of it and raydl's CNN: different architectures, input sizes and normalization,
one held-out set."""

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest
import yaml

from raydl.cli import main
from raydl.run import train
from tests.made_data import image_folder

pytestmark = pytest.mark.usefixtures("ray_session")

QUIET = ["log.tensorboard=false", "scaling.workers=2"]


def _eval(*argv: str) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["eval", *argv]) == 0
    return out.getvalue().strip().splitlines()


def test_inception_from_a_weights_file_then_a_mixed_ensemble(tmp_path: Path) -> None:
    import torch
    import torchvision

    folder = image_folder(tmp_path / "images", per_class=10)
    torch.manual_seed(3)
    imagenet = torchvision.models.get_model("inception_v3", weights=None, aux_logits=True, init_weights=False)
    weights = tmp_path / "inception.pth"
    torch.save(imagenet.state_dict(), weights)
    # its own 299 px (the auxiliary classifier takes no less); the frozen stem keeps it short
    run = train("inception_transfer", QUIET + [
        "train.epochs=2", "train.batch_size=4", "model.pretrained=false", f"model.weights_file={weights}",
        f"data.data_dir={folder}", "data.augment=false", "checkpoint.keep=2"],
        out=tmp_path / "runs", progress=False, echo=False)
    first, second = (torch.load(run.run_dir / "checkpoints" / f"epoch_00000{e}" / "model.pt",
                                weights_only=True)["model"] for e in (1, 2))
    stem = "Conv2d_1a_3x3.conv.weight"
    assert torch.equal(first[stem], imagenet.state_dict()[stem]) and torch.equal(first[stem], second[stem])
    assert not torch.equal(first["Mixed_7c.branch1x1.conv.weight"], second["Mixed_7c.branch1x1.conv.weight"])
    assert torch.equal(first["Mixed_7b.branch1x1.conv.weight"], second["Mixed_7b.branch1x1.conv.weight"])
    assert second["fc.weight"].shape == (2, 2048) and second["AuxLogits.fc.weight"].shape == (2, 768)
    assert not torch.equal(first["AuxLogits.fc.weight"], second["AuxLogits.fc.weight"])  # aux loss trains it
    saved = json.loads((run.checkpoint / "data.json").read_text())
    assert saved["input_shape"] == [3, 299, 299] and saved["mean"] == [0.485, 0.456, 0.406]

    cnn = train("cnn_digits", QUIET + [
        "train.epochs=4", "train.batch_size=8", "data.source=folder", f"data.data_dir={folder}",
        "data.image_size=16", "data.channels=1"], out=tmp_path / "runs", progress=False, echo=False)
    lines = _eval(str(run.checkpoint), str(cnn.checkpoint), "--vote", "hard")
    assert lines[0].endswith(f"inception_v3 on 3x299x299, test accuracy {run.metrics['test_accuracy']:.4f}")
    assert lines[1].endswith(f"cnn on 1x16x16, test accuracy {cnn.metrics['test_accuracy']:.4f}")
    assert lines[-1].startswith("raydl eval: 3 test examples, ensemble of 2 accuracy")
    assert "(hard vote; best single" in lines[-1]

    # another split of the same folder is not one held-out set
    other = tmp_path / "other"
    shutil.copytree(cnn.checkpoint, other)
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["data"]["seed"] = 1
    (other / "config.yaml").write_text(yaml.safe_dump(config))
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["eval", str(run.checkpoint), str(other)]) == 2
    assert "data.seed is 1, " in err.getvalue() and "is 0; an ensemble is evaluated on one held-out set" in err.getvalue()

"""Supervised kinds on a real Ray Train: 2 CPU workers, short epochs on data made here."""

import contextlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from raydl.checkpoint import latest_epoch_checkpoint
from raydl.cli import main
from raydl.errors import CheckpointError, ConfigError
from tests.made_data import image_folder, write_idx
from tests.tracker_readback import expected, held, tracker_ids
from raydl.metrics import read_metrics
from raydl.run import train

pytestmark = pytest.mark.usefixtures("ray_session")

QUIET = ["log.tensorboard=false", "scaling.workers=2"]


def _train_worker_pids() -> list[int]:
    """Processes whose title names a Ray Train worker actor (Ray sets the title)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if proc.name.isdigit() and b"RayTrainWorker" in title:
            pids.append(int(proc.name))
    return pids


def _epochs(run_dir: Path) -> list[int]:
    return [r["epoch"] for r in read_metrics(run_dir)]


def test_killed_worker_recovery_then_resume_and_a_corrupted_checkpoint(tmp_path: Path) -> None:
    """One 5-epoch fit serves three checks (each fit pays Ray Train's start-up): a worker
    killed mid-epoch, `--resume` of the finished run, and a cut-short checkpoint; and the
    experiment trackers the rank-0 worker feeds hold metrics.jsonl's rows all along."""
    # Small batches make each epoch last a few seconds, so the kill lands mid-epoch.
    args = QUIET + ["train.epochs=5", "train.batch_size=4", "scaling.max_failures=2",
                    "log.wandb.enabled=true", "log.mlflow.enabled=true"]
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(
        run=train("cnn_digits", args, out=tmp_path, progress=False, echo=False)))
    thread.start()
    deadline = time.monotonic() + 240
    killed, killed_at, rows_at_kill, old_group = None, 0.0, [], set()
    while killed is None and time.monotonic() < deadline:
        runs = list(tmp_path.iterdir())
        # epoch 2's row means epoch 1's report (and checkpoint) went through on every
        # worker: kill one now, mid-way through a later epoch
        if runs and _epochs(runs[0]) and _epochs(runs[0])[-1] >= 2:
            rows_at_kill = read_metrics(runs[0])
            # every process titled as a train worker: the live group's two (a finished
            # run's worker could linger a moment; killing it too changes nothing)
            for pid in _train_worker_pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed, killed_at = pid, time.monotonic()
                    old_group.add(pid)
                except ProcessLookupError:
                    pass
        time.sleep(0.2)
    # Recovery time, measured (not asserted): kill -> a new worker group is up -> its
    # first epoch row (the restored group writes rows with restores >= 1).
    group_up_s = first_row_s = None
    while killed is not None and thread.is_alive() and first_row_s is None:
        if group_up_s is None and set(_train_worker_pids()) - old_group:
            group_up_s = time.monotonic() - killed_at
        if any(r.get("restores", 0) >= 1 for r in read_metrics(runs[0])):
            first_row_s = time.monotonic() - killed_at
        time.sleep(0.1)
    thread.join(timeout=300)
    assert killed is not None, "no Ray Train worker process was found to kill"
    run = result["run"]
    assert _epochs(run.run_dir) == [1, 2, 3, 4, 5]
    assert run.metrics["restores"] >= 1  # the group restarted from a checkpoint
    m = run.metrics
    assert m["workers"] == 2 and 0.3 < m["val_accuracy"] <= 1.0 and "test_accuracy" in m
    assert run.checkpoint is not None and run.checkpoint.name == "epoch_000005"
    # The killed rank 0 never closed its tracker runs: its successor's new ones got the kept
    # rows first, then its own.
    rows, ids = expected(run.run_dir), tracker_ids(run.run_dir)
    assert [r["epoch"] for _, r in rows] == [1, 2, 3, 4, 5]
    assert held(run.run_dir) == {"wandb": rows, "mlflow": rows}
    epoch_s = [r["epoch_time_s"] for r in rows_at_kill]
    print(f"\nworker killed after epoch {rows_at_kill[-1]['epoch']} rows; new worker group "
          f"after {group_up_s if group_up_s is not None else float('nan'):.1f}s, its first "
          f"epoch row after {first_row_s if first_row_s is not None else float('nan'):.1f}s "
          f"(an epoch's training takes {sum(epoch_s) / len(epoch_s):.1f}s)")

    # A copy whose newest epoch checkpoint was cut short: resuming it is one line naming
    # the file, read on the driver before any worker starts.
    broken = tmp_path / "broken"
    shutil.copytree(run.run_dir, broken)
    model = broken / "checkpoints" / "epoch_000005" / "model.pt"
    model.write_bytes(model.read_bytes()[:5000])
    with pytest.raises(CheckpointError) as err:  # the CLI's exit 2, like a ConfigError
        train(resume=broken, progress=False, echo=False)
    assert str(err.value).startswith(f"{model}: cannot load checkpoint file") and "\n" not in str(err.value)

    # What a kill while Ray Train copies epoch 6 into place leaves: a directory it never
    # registered, here with its state.json and half its model.pt. `--resume` and `raydl
    # eval` used to refuse the run until the user deleted it; only registered ones count.
    torn = run.run_dir / "checkpoints" / "epoch_000006"
    shutil.copytree(run.run_dir / "checkpoints" / "epoch_000005", torn)
    (torn / "model.pt").write_bytes((torn / "model.pt").read_bytes()[:5000])
    assert latest_epoch_checkpoint(run.run_dir).name == "epoch_000005"
    assert main(["eval", str(run.run_dir)]) == 0

    # The finished run resumed for one more epoch: continued, nothing repeated.
    second = train(resume=run.run_dir, overrides=["train.epochs=6"], progress=False, echo=False)
    assert _epochs(run.run_dir) == [1, 2, 3, 4, 5, 6]
    assert second.metrics["restores"] == m["restores"] + 1
    assert json.loads((second.checkpoint / "state.json").read_text())["epoch"] == 6
    assert second.checkpoint == torn and (torn / "model.pt").stat().st_size > 5000  # written whole
    rows = expected(run.run_dir)  # the finished run's tracker runs, continued
    assert tracker_ids(run.run_dir) == ids and held(run.run_dir) == {"wandb": rows, "mlflow": rows}


def test_a_data_error_after_some_epochs_keeps_the_run_directory(tmp_path: Path) -> None:
    """A worker group restarted after epoch 2 finds its image folder gone: the run fails
    in one line, and its directory keeps what the first epochs wrote (it used to be
    deleted, checkpoints and all, as if the error were a refusal before any work)."""
    folder = image_folder(tmp_path / "images", per_class=80)
    args = QUIET + ["data.source=folder", f"data.data_dir={folder}", "train.epochs=60",
                    "train.batch_size=2", "scaling.max_failures=1", "log.curve=false"]
    errors: list[BaseException] = []

    def fit() -> None:
        try:
            train("cnn_digits", args, out=tmp_path / "runs", progress=False, echo=False)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    thread = threading.Thread(target=fit)
    thread.start()
    deadline, moved = time.monotonic() + 240, False
    while not moved and thread.is_alive() and time.monotonic() < deadline:
        runs = list((tmp_path / "runs").glob("*")) if (tmp_path / "runs").is_dir() else []
        if runs and len(_epochs(runs[0])) >= 2:
            shutil.move(str(folder), str(tmp_path / "moved-away"))
            for pid in _train_worker_pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            moved = True
        time.sleep(0.1)
    thread.join(timeout=300)
    assert moved, "the fit never reached epoch 2"
    (error,) = errors
    assert isinstance(error, ConfigError) and "data.data_dir" in str(error)
    assert "\n" not in str(error)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert _epochs(run_dir)[:2] == [1, 2]
    assert latest_epoch_checkpoint(run_dir) is not None
    assert (run_dir / "config.yaml").is_file()


def test_language_model_epoch_reports_bits_per_character(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 400)
    run = train(
        "lstm_lm_pydoc",
        QUIET + ["train.epochs=2", "train.batch_size=4", f"data.text_file={text}", "data.seq_len=32",
                 "model.embedding=32", "model.hidden=32", "model.layers=1"],
        out=tmp_path / "runs", progress=False, echo=False,
    )
    m = run.metrics
    # 27 distinct characters: a uniform guess costs log2(27) = 4.75 bits; this text is
    # so repetitive that two epochs get far below that
    assert m["val_bpc"] < 3.0 and m["val_perplexity"] == pytest.approx(2 ** m["val_bpc"], rel=1e-6)
    assert (run.checkpoint / "vocab.json").is_file()

    # `raydl eval --generate` on the run directory (the CLI's own entry, in this process)
    assert main(["eval", str(run.run_dir), "--generate", "40", "--prompt", "the"]) == 0
    text = capsys.readouterr().out.strip().splitlines()[-1]
    assert text.startswith("the") and len(text) == 43 and set(text) <= set("the quickbrownfxjmpsvlazydg.")




def test_mnist_from_local_files_and_a_wrong_path(tmp_path: Path) -> None:
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 240), ("t10k", 60)):
        labels = rng.integers(0, 10, n)
        images = np.zeros((n, 28, 28), np.uint8)
        for i, label in enumerate(labels):  # a bright bar whose row is the label
            images[i, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
        # the uncompressed IDX files torchvision's MNIST reads from MNIST/raw
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    run = train("cnn_mnist", QUIET + ["train.epochs=2", f"data.data_dir={tmp_path / 'data'}"],
                out=tmp_path / "runs", progress=False, echo=False)
    assert run.metrics["test_accuracy"] > 0.5  # trivially separable made-up digits

    with pytest.raises(ConfigError, match="mnist is not in .*nowhere.*put torchvision's MNIST files there"):
        train("cnn_mnist", QUIET + [f"data.data_dir={tmp_path / 'nowhere'}"],
              out=tmp_path / "runs2", progress=False, echo=False)




def test_resnet_transfer_trains_only_the_head_while_frozen(tmp_path: Path) -> None:
    import torch

    folder = image_folder(tmp_path / "images")
    run = train(
        "resnet_transfer",
        QUIET + ["train.epochs=2", "model.pretrained=false", f"data.data_dir={folder}",
                 "data.image_size=32", "train.batch_size=8", "checkpoint.keep=2"],
        out=tmp_path / "runs", progress=False, echo=False,
    )
    first, second = (torch.load(run.run_dir / "checkpoints" / f"epoch_00000{e}" / "model.pt",
                                weights_only=True)["model"] for e in (1, 2))
    assert torch.equal(first["conv1.weight"], second["conv1.weight"])  # frozen backbone
    assert torch.equal(first["layer4.1.conv2.weight"], second["layer4.1.conv2.weight"])
    assert not torch.equal(first["fc.weight"], second["fc.weight"])  # the new head learns
    with pytest.raises(ConfigError, match="model.pretrained: resnet18 ImageNet weights are not cached"):
        train("resnet_transfer", QUIET + [f"data.data_dir={folder}", f"model.checkpoint_dir={tmp_path / 'hub'}"],
              out=tmp_path / "runs2", progress=False, echo=False)


@pytest.mark.parametrize("arch", ["lstm", "textcnn"])
def test_text_classifier_on_labelled_documents(arch: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for label, words in (("pos", ["great", "superb", "fine"]), ("neg", ["awful", "dull", "poor"])):
        for split, n in (("train", 60), ("test", 20)):
            folder = tmp_path / "reviews" / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                filler = " ".join(rng.choice(["the", "film", "was", "plot", "and"], 3))
                (folder / f"{i}.txt").write_text(f"{filler} {rng.choice(words)} {filler}")
    run = train(
        "lstm_imdb",
        QUIET + ["train.epochs=8", f"model.arch={arch}", f"data.data_dir={tmp_path / 'reviews'}",
                 "model.embedding=32", "model.hidden=32", "train.batch_size=4", "train.lr=0.01"],
        out=tmp_path / "runs", progress=False, echo=False,
    )
    assert run.metrics["test_accuracy"] >= 0.8  # one sentiment word decides each review
    assert (run.checkpoint / "vocab.json").is_file()

"""Transformers and pretrained word vectors: tiny fits of transformer_lm_pydoc and
transformer_text on a real Ray Train (2 CPU workers) over data made here, with the time
budget, a resume, generation and frozen vectors; both exported to ONNX."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from raydl.cli import main
from raydl.config import load_experiment
from raydl.export import export, exportable, load_onnx, run_onnx
from raydl.metrics import read_metrics
from raydl.run import train
from tests.integration.test_export import _epoch_checkpoint
from tests.made_data import reviews, write_vectors

QUIET = ["log.tensorboard=false", "log.curve=false", "scaling.workers=2"]
TINY = ["model.embedding=16", "model.hidden=32", "model.layers=1", "model.heads=2"]


@pytest.mark.usefixtures("ray_session")
def test_transformer_lm_stops_on_its_time_budget_resumes_and_generates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "corpus.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 400)
    sets = QUIET + TINY + [f"data.text_file={text}", "data.seq_len=16", "train.batch_size=4",
                           "train.warmup_steps=50", "train.epochs=3", "train.lr=0.003"]
    run = train("transformer_lm_pydoc", sets + ["train.max_minutes=0.0001"], out=tmp_path / "runs",
                progress=False, echo=False)
    # 6 ms of budget: spent in the first epoch, which is then the last (and tested)
    assert [r["epoch"] for r in read_metrics(run.run_dir)] == [1]
    assert run.stopped_by == "time budget of 0.0001 minutes reached"
    assert run.metrics["time_budget_reached"] is True and "test_bpc" in run.metrics
    spent = json.loads((run.checkpoint / "state.json").read_text())["train_seconds"]
    assert spent > 0.006

    again = train(resume=run.run_dir, overrides=["train.max_minutes=0"], progress=False, echo=False)
    assert [r["epoch"] for r in read_metrics(run.run_dir)] == [1, 2, 3]
    # 27 distinct characters: a uniform guess costs log2(27) = 4.75 bits
    assert again.metrics["restores"] == 1 and again.metrics["val_bpc"] < 3.0
    state = json.loads((again.checkpoint / "state.json").read_text())
    assert state["train_seconds"] > spent
    # each worker: 6,300 characters in 4 rows, 99 windows of 16 an epoch; the warm-up's
    # count went on from the checkpoint
    saved = torch.load(again.checkpoint / "model.pt", weights_only=True)
    assert saved["warmup"] == {"steps": 50, "done": 3 * 99}

    # a prompt longer than the 16-character context: the transformer reads its last 16
    prompt = "the quick brown fox jumps over the"
    assert main(["eval", str(run.run_dir), "--generate", "40", "--prompt", prompt]) == 0
    out = capsys.readouterr().out.splitlines()[-1]  # (it may end in a space)
    assert out.startswith(prompt) and len(out) == len(prompt) + 40 and set(out) <= set(text.read_text())


@pytest.mark.usefixtures("ray_session")
def test_transformer_classifier_learns_on_frozen_pretrained_vectors(tmp_path: Path) -> None:
    root = reviews(tmp_path / "reviews")
    rng = np.random.default_rng(1)
    words = ["the", "film", "was", "plot", "and", "great", "superb", "fine", "awful", "dull"]  # not 'poor'
    vectors = {w: rng.normal(size=16).round(3).tolist() for w in words}
    path = write_vectors(tmp_path / "vectors.txt", "glove", vectors)
    run = train("transformer_text", QUIET + TINY + [
        f"data.data_dir={root}", "train.epochs=8", "train.batch_size=4", "train.lr=0.003",
        "train.warmup_steps=10", "train.early_stop_patience=0", f"model.embeddings_file={path}",
        "model.freeze_embeddings=true"], out=tmp_path / "runs", progress=False, echo=False)
    assert run.metrics["test_accuracy"] >= 0.8  # one sentiment word decides each review
    rows = read_metrics(run.run_dir)
    assert rows[0]["embeddings_words_found"] == 10 and rows[0]["embeddings_token_coverage"] < 1
    assert rows[0]["embeddings_vocab_coverage"] == pytest.approx(10 / 11)  # all but 'poor'
    assert all("embeddings_words_found" not in r for r in rows[1:])

    vocab = json.loads((run.checkpoint / "vocab.json").read_text())["words"]
    epochs = [torch.load(run.run_dir / "checkpoints" / f"epoch_00000{e}" / "model.pt", weights_only=True)["model"]
              for e in (7, 8)]
    for word, vector in vectors.items():  # the file's rows, untouched by 8 epochs of training
        assert np.array_equal(epochs[1]["embed.weight"][vocab.index(word)].numpy(), np.array(vector, np.float32))
    assert torch.equal(epochs[0]["embed.weight"], epochs[1]["embed.weight"])
    assert not torch.equal(epochs[0]["head.weight"], epochs[1]["head.weight"])


@pytest.mark.parametrize("experiment", ["transformer_lm_pydoc", "transformer_text"])
def test_transformers_export_to_onnx_for_any_length_within_their_context(experiment: str, tmp_path: Path) -> None:
    from raydl.sl.evaluate import load_checkpoint

    sets = TINY + ["data.seq_len=24", "data.max_tokens=24"]
    if experiment == "transformer_text":
        sets.append(f"data.data_dir={reviews(tmp_path / 'reviews', 8, 4)}")
    directory = _epoch_checkpoint(experiment, sets, tmp_path / "run", trained=False)
    export(exportable(directory, load_experiment(directory / "config.yaml")), "onnx", tmp_path / "net.onnx")
    session, net = load_onnx(tmp_path / "net.onnx"), load_checkpoint(directory).net
    vocab = net.embed.num_embeddings
    for length in (1, 5, 24):  # the example was 8 tokens long
        tokens = torch.randint(1, vocab, (4, length), generator=torch.Generator().manual_seed(length))
        (probs,) = run_onnx(session, ["tokens"], [tokens.numpy()])
        with torch.no_grad():
            out = net(tokens)
        expected = torch.softmax(out[0] if isinstance(out, tuple) else out, dim=-1).numpy()
        assert probs.shape == expected.shape and float(np.abs(probs - expected).max()) <= 1e-5

"""Pretrained word vectors (raydl.sl.embeddings) without Ray: the three file formats made
here, the vocabulary aligned row by row, coverage, one-line errors, and a frozen table."""

from pathlib import Path

import numpy as np
import pytest
import torch

from raydl.config import load_experiment
from raydl.errors import ConfigError
from raydl.sl.embeddings import align, check_embeddings, probe
from tests.made_data import reviews, write_vectors
from tests.unit.test_export_inputs import cli

ROWS = {  # file order matters: "Film" comes before "film", "paris" is only in lower case
    "the": [0.1, 0.2, 0.3], "Film": [9.0, 9.0, 9.0], "film": [0.4, -0.5, 0.6],
    "great": [-0.7, 0.8, 0.9], "paris": [1.0, -1.1, 1.2], "unused": [5.0, 5.0, 5.0],
}
VOCAB = ["<pad>", "<unk>", "the", "film", "great", "zebra", "Paris"]


@pytest.mark.parametrize("fmt", ["glove", "word2vec", "fasttext"])
def test_the_vocabulary_takes_the_files_rows_word_by_word(fmt: str, tmp_path: Path) -> None:
    path = write_vectors(tmp_path / ("vectors.vec" if fmt == "fasttext" else "vectors.txt"), fmt, ROWS)
    info = probe(str(path))
    assert (info.format, info.dim, info.header) == ("glove" if fmt == "glove" else "word2vec", 3, fmt != "glove")
    table = align(info, VOCAB, seed=0)
    expected = {"the": "the", "film": "film", "great": "great", "Paris": "paris"}  # exact first, then lower case
    for i, word in enumerate(VOCAB):
        if word in expected:
            assert np.array_equal(table.matrix[i], np.array(ROWS[expected[word]], np.float32)), word
    assert table.found.tolist() == [False, False, True, True, True, False, True]
    assert not table.matrix[0].any()  # <pad> is zero
    found = np.array([ROWS[w] for w in expected.values()], np.float32)
    assert table.scale == pytest.approx(float(found.std()))
    assert table.matrix[1].any() and table.matrix[5].any()  # <unk> and zebra: random
    # training tokens: the, the, film, zebra, <unk>: 3 of 5 covered; 4 of 5 words found
    coverage = table.coverage(np.array([2, 2, 3, 5, 1]))
    assert coverage == {"embeddings_words_found": 4, "embeddings_vocab_coverage": 0.8,
                        "embeddings_token_coverage": 0.6}


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    cases = {
        "missing.txt": None,
        "letters.txt": "the 0.1 abc\n",
        "short.txt": "2 3\nthe 0.1 0.2\n",
        "empty.txt": "",
    }
    messages = {
        "missing.txt": "missing.txt does not exist",
        "letters.txt": "letters.txt line 1: 'abc' is not a number",
        "short.txt": "short.txt line 2: 3 fields where a word and 3 numbers belong",
        "empty.txt": "empty.txt is empty",
    }
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(ConfigError, match=messages[name]) as info:
            probe(str(tmp_path / name))
        assert str(info.value).startswith("model.embeddings_file: ") and "\n" not in str(info.value)
    (tmp_path / "w2v.bin").write_bytes(b"2 3\n" + bytes(range(200, 256)) * 4)
    with pytest.raises(ConfigError, match="is not a text file of word vectors.*word2vec's binary format"):
        probe(str(tmp_path / "w2v.bin"))
    good = write_vectors(tmp_path / "good.txt", "glove", ROWS)
    with pytest.raises(ConfigError, match=r"^model\.embedding: 64, but model\.embeddings_file .*good\.txt holds "
                                          r"3-number vectors; set model\.embedding: 3$"):
        check_embeddings(str(good), 64)
    (tmp_path / "late.txt").write_text(good.read_text() + "zebra 0.1\n")  # a bad row the vocabulary needs
    with pytest.raises(ConfigError, match="late.txt line 7: 1 numbers where 3 belong"):
        align(probe(str(tmp_path / "late.txt")), VOCAB, seed=0)
    with pytest.raises(ConfigError, match="has none of the 2 vocabulary words"):
        align(probe(str(good)), ["<pad>", "<unk>", "chat", "chien"], seed=0)


def test_check_step_refuses_text_glove_without_its_file() -> None:
    code, err = cli("check", "text_glove")
    assert code == 2 and err.count("\n") == 1
    assert "model.embeddings_file: data/glove.6B.100d.txt does not exist" in err


@pytest.mark.parametrize("freeze", [True, False])
def test_a_frozen_table_stays_the_files_while_the_rest_learns(freeze: bool, tmp_path: Path) -> None:
    from raydl.sl.tasks import SupervisedTask
    from raydl.train.loop import Counters, Worker, _train

    reviews(tmp_path / "reviews", per_label=8, test_per_label=4)
    rng = np.random.default_rng(0)
    words = ["the", "film", "was", "great", "awful", "dull"]  # not: plot, and, superb, fine, poor
    vectors = {w: rng.normal(size=8).round(3).tolist() for w in words}
    path = write_vectors(tmp_path / "v.txt", "glove", vectors)
    cfg = load_experiment("text_glove", [
        f"data.data_dir={tmp_path / 'reviews'}", f"model.embeddings_file={path}", "model.embedding=8",
        "model.hidden=4", f"model.freeze_embeddings={str(freeze).lower()}", "train.batch_size=4",
        "scaling.workers=1"])
    worker = Worker(cfg, tmp_path, rank=0, world=1, device=torch.device("cpu"), group=False)
    task = SupervisedTask(worker)
    vocab = task.problem.docs.vocab
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    for word in (w for w in words if w in vocab.index):
        assert np.array_equal(before["embed.weight"][vocab.index[word]].numpy(), np.array(vectors[word], np.float32))
    task.begin_epoch(1)
    totals, _ = _train(task, worker, Counters(epoch=1))
    metrics = task.epoch_metrics(totals)
    after = task.model.state_dict()
    assert torch.equal(before["embed.weight"], after["embed.weight"]) == freeze
    assert not torch.equal(before["head.weight"], after["head.weight"])
    in_vocab = [w for w in words if w in vocab.index]  # the training split's words only
    assert len(in_vocab) >= 5 and metrics["embeddings_words_found"] == len(in_vocab)
    assert metrics["embeddings_vocab_coverage"] == pytest.approx(len(in_vocab) / (len(vocab) - 2))
    ids = torch.cat(task.problem.docs.train.docs)
    covered = sum(int((ids == vocab.index[w]).sum()) for w in in_vocab) / len(ids)
    assert metrics["embeddings_token_coverage"] == pytest.approx(covered) and 0.3 < covered < 1
    assert "embeddings_words_found" not in task.epoch_metrics(totals)  # the first row only

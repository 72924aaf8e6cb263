"""The check step of the supervised kinds (classify, language_model), without torch:
`raydl check` and `raydl run` import this module, and the data and model modules only
when there is something to look at."""

from __future__ import annotations

from raydl.sl.experiment import DataConfig, SupervisedExperiment, is_backbone


def check_data_files(data: DataConfig) -> None:
    """The data files are there (or may be downloaded). scikit-learn's digits and
    Python's own corpus are always there: they need no look, and no torch to look."""
    if data.source != "digits" and not (data.source == "text" and not data.text_file):
        from raydl.sl.data import check_data

        check_data(data)


def check(cfg: SupervisedExperiment) -> None:
    """The check step of kinds classify and language_model: pretrained word vectors, the
    data files, and for a torchvision backbone its name, input size and weights."""
    if cfg.model.embeddings_file:  # its first lines: cheaper than reading the documents
        from raydl.sl.embeddings import check_embeddings

        check_embeddings(cfg.model.embeddings_file, cfg.model.embedding)
    check_data_files(cfg.data)
    if is_backbone(cfg.model.arch):
        from raydl.sl.backbones import check_backbone

        check_backbone(cfg.model, cfg.data.image_size)

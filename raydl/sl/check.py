"""The check step of the supervised kinds (classify, language_model), without torch:
`raydl check` and `raydl run` import this module, and the data and model modules only
when there is something to look at."""

from __future__ import annotations

from raydl.sl.experiment import DataConfig, SupervisedExperiment


def check_data_files(data: DataConfig) -> None:
    """The data files are there (or may be downloaded). scikit-learn's digits and
    Python's own corpus are always there: they need no look, and no torch to look."""
    if data.source != "digits" and not (data.source == "text" and not data.text_file):
        from raydl.sl.data import check_data

        check_data(data)


def check(cfg: SupervisedExperiment) -> None:
    """The check step of kinds classify and language_model: the data files, and
    pretrained weights at hand."""
    check_data_files(cfg.data)
    if cfg.model.pretrained:
        from raydl.sl.models import check_pretrained

        check_pretrained(cfg.model.arch, cfg.model)

"""The experiment files of the RBM kinds, without torch: `rbm` (a Bernoulli RBM on images,
scored by a logistic regression on its hidden probabilities), `dbn` (greedily stacked
RBMs fine-tuned as a classifier) and `cf_rbm` (Salakhutdinov, Mnih & Hinton's RBM for
collaborative filtering on MovieLens ratings), and their check step.

The `train:` fields are those of Hinton's "A Practical Guide to Training Restricted
Boltzmann Machines" (2010) and scikit-learn's BernoulliRBM: the CD-k steps, persistent
chains (PCD), the learning rate, momentum, weight decay, batch size and epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from raydl.config import Nonfinite, Optimizer, param, section
from raydl.errors import ConfigError
from raydl.sl.experiment import DataConfig
from raydl.train.experiment import FitExperiment

IMAGE_SOURCES = ("digits", "mnist", "fashion_mnist", "folder")


@dataclass
class ImageDataConfig(DataConfig):
    """The images (flattened; pixels in [0, 1] are the visible units' probabilities)."""

    normalize: bool = param(False, "must stay false: pixels in [0, 1] are the visible units' probabilities")


@dataclass
class CDTrainConfig:
    """Contrastive divergence: SGD on the CD-k (or PCD-k) gradient, with momentum and L2
    weight decay on the weights (not the biases), as in Hinton's guide."""

    epochs: int = param(20, "passes over the training data", ge=1)
    batch_size: int = param(10, "examples per batch per worker; PCD keeps as many chains per worker", ge=1)
    lr: float = param(0.06, "learning rate of the mean CD gradient (scikit-learn's learning_rate)", gt=0)
    momentum: float = param(0.5, "momentum of the updates (Hinton's guide: 0.5, later 0.9)", ge=0, lt=1)
    weight_decay: float = param(1e-4, "L2 weight decay of the weights (Hinton's guide: 1e-4)", ge=0)
    cd_k: int = param(1, "Gibbs steps of the negative phase (CD-k)", ge=1)
    persistent: bool = param(False, "persistent chains (PCD, Tieleman 2008) instead of restarting at the data")
    amp: bool = param(False, "dbn: bfloat16 autocast while fine-tuning (GPU workers only)")
    threads_per_worker: int = param(1, "torch threads per worker (0: torch's default)", ge=0)
    nonfinite: Nonfinite = param(
        "stop", "a NaN/inf gradient: stop the run with an error, or skip that batch's update "
        "(counted in nonfinite_skipped)")


@dataclass
class DBNTrainConfig(CDTrainConfig):
    """Greedy layer-wise pretraining by CD, then fine-tuning of the stack as a classifier."""

    pretrain_epochs: int = param(
        10, "CD epochs per RBM layer: the first layers x pretrain_epochs of train.epochs; the "
        "rest fine-tune the stack as a classifier", ge=1)
    finetune_optimizer: Optimizer = param("sgd", "fine-tuning optimizer")
    finetune_lr: float = param(0.5, "fine-tuning learning rate", gt=0)


@dataclass
class CFTrainConfig(CDTrainConfig):
    """Contrastive divergence over users: a batch is users, each with their own RBM."""

    epochs: int = param(30, "passes over the users", ge=1)
    batch_size: int = param(16, "users per batch per worker", ge=1)
    lr: float = param(0.05, "learning rate of the CD gradient (summed over a user's ratings, "
                      "averaged over users)", gt=0)
    momentum: float = param(0.9, "momentum of the updates", ge=0, lt=1)
    weight_decay: float = param(1e-3, "L2 weight decay of the weights", ge=0)


@dataclass
class RBMModelConfig:
    """The RBM's size."""

    n_hidden: int = param(100, "hidden units (scikit-learn's n_components)", ge=1)


@dataclass
class DBNModelConfig:
    """The stack's sizes."""

    hidden_layers: list[int] = param(
        default_factory=lambda: [256, 128], help="hidden units of each stacked RBM, bottom up", ge=1)


@dataclass
class RBMScoreConfig:
    """The RBM's features judged by scikit-learn's LogisticRegression on them."""

    C: float = param(6000.0, "inverse regularization of the logistic regression (scikit-learn's example: 6000)", gt=0)
    tol: float = param(1e-6, "stopping tolerance of the logistic regression's newton-cg solver (at "
                       "1e-4 the accuracy still moves by 1-2% with rounding-level changes of the features)", gt=0)
    max_iter: int = param(1000, "iterations of the logistic regression's newton-cg solver, at most", ge=1)
    every: int = param(1, "score every N epochs (0: the last epoch only)", ge=0)


@dataclass
class RatingsConfig:
    """MovieLens ratings, split at random into training, validation and test ratings."""

    ratings_file: str = param(
        "data/ml-100k/u.data", "ML-100K's u.data (user TAB item TAB rating TAB timestamp) or "
        "ML-latest's ratings.csv (header userId,movieId,rating,timestamp); half stars are "
        "rounded up to whole stars (0.5 -> 1, 3.5 -> 4)")
    val_fraction: float = param(0.1, "share of the ratings held out for validation (RMSE each epoch)", gt=0, lt=1)
    test_fraction: float = param(0.1, "share of the ratings held out for the final test", ge=0, lt=1)
    seed: int = param(0, "seed of the split", ge=0)


def _refuse_amp(cfg: CDTrainConfig, kind: str) -> None:
    if cfg.amp:
        raise ConfigError(f"train.amp: {kind} trains by CD in float32; allowed: false (amp is for dbn fine-tuning)")


def _check_images(data: DataConfig) -> None:
    if data.source not in IMAGE_SOURCES:
        raise ConfigError(f"data.source: {data.source!r} is not images; allowed: {', '.join(IMAGE_SOURCES)}")
    for name in ("normalize", "sequence", "augment"):
        if getattr(data, name):
            raise ConfigError(f"data.{name}: RBMs take each image once, flattened, pixels in [0, 1]; allowed: false")


@dataclass
class RBMExperiment(FitExperiment):
    """A Bernoulli RBM on images, scored by a logistic regression on its features."""

    kind: Literal["rbm"] = param("rbm", "registry key")
    data: ImageDataConfig = section(ImageDataConfig, "images")
    model: RBMModelConfig = section(RBMModelConfig, "the RBM")
    train: CDTrainConfig = section(CDTrainConfig, "contrastive divergence")
    score: RBMScoreConfig = section(RBMScoreConfig, "logistic regression on the hidden probabilities")

    def validate(self) -> None:
        _check_images(self.data)
        _refuse_amp(self.train, self.kind)

    @property
    def title(self) -> str:
        cd = f"{'PCD' if self.train.persistent else 'CD'}-{self.train.cd_k}"
        return f"rbm ({self.model.n_hidden} hidden, {cd}) on {self.data.source}"


@dataclass
class DBNExperiment(FitExperiment):
    """A deep belief net: stacked RBMs pretrained greedily, then fine-tuned to classify."""

    kind: Literal["dbn"] = param("dbn", "registry key")
    data: ImageDataConfig = section(ImageDataConfig, "images")
    model: DBNModelConfig = section(DBNModelConfig, "the stack")
    train: DBNTrainConfig = section(DBNTrainConfig, "pretraining (CD) and fine-tuning")

    def validate(self) -> None:
        _check_images(self.data)
        if not self.model.hidden_layers:
            raise ConfigError("model.hidden_layers: empty; give at least one layer, e.g. [256, 128]")
        pretrain = self.pretrain_epochs
        if self.train.epochs <= pretrain:
            raise ConfigError(
                f"train.epochs: {self.train.epochs} leaves no fine-tuning after {len(self.model.hidden_layers)} "
                f"layers x {self.train.pretrain_epochs} pretraining epochs; allowed: > {pretrain}")

    @property
    def pretrain_epochs(self) -> int:
        """Epochs of greedy pretraining, all layers together (fine-tuning follows)."""
        return len(self.model.hidden_layers) * self.train.pretrain_epochs

    @property
    def title(self) -> str:
        return f"dbn {'-'.join(map(str, self.model.hidden_layers))} on {self.data.source}"


@dataclass
class CFRBMExperiment(FitExperiment):
    """An RBM for collaborative filtering: softmax visible units over 1..5 stars, one RBM
    per user sharing the weights, missing ratings left out."""

    kind: Literal["cf_rbm"] = param("cf_rbm", "registry key")
    data: RatingsConfig = section(RatingsConfig, "ratings")
    model: RBMModelConfig = section(RBMModelConfig, "the RBM")
    train: CFTrainConfig = section(CFTrainConfig, "contrastive divergence over users")

    def validate(self) -> None:
        if self.data.val_fraction + self.data.test_fraction >= 1:
            raise ConfigError(
                f"data.test_fraction: with val_fraction {self.data.val_fraction:g} nothing is left to "
                f"train on; allowed: val_fraction + test_fraction < 1")
        if self.train.persistent:
            raise ConfigError("train.persistent: cf_rbm has one RBM per user (its own visible units), "
                              "no chains to keep; allowed: false")
        _refuse_amp(self.train, self.kind)

    @property
    def title(self) -> str:
        return f"cf_rbm ({self.model.n_hidden} hidden, CD-{self.train.cd_k}) on {self.data.ratings_file}"


def check(cfg: RBMExperiment | DBNExperiment | CFRBMExperiment) -> None:
    """The check step of the RBM kinds: the images are there, or the ratings file is there
    and reads as MovieLens ratings (one line naming what is wrong)."""
    if isinstance(cfg, CFRBMExperiment):
        from raydl.rbm.ratings import read_ratings

        read_ratings(cfg.data.ratings_file)
        return
    from raydl.sl.check import check_data_files

    check_data_files(cfg.data)

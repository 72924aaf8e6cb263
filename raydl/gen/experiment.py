"""The experiment file of the generative kinds, `gan` (DCGAN) and `vae` (VAE or plain /
denoising autoencoder): image, network, optimization and scoring sections, and the checks
between them (options of one kind refused in the other)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from raydl.config import param, section
from raydl.errors import ConfigError
from raydl.config import Nonfinite
from raydl.sl.experiment import DataConfig
from raydl.train.experiment import FitExperiment

SIZES = (28, 32, 64)  # square image sizes the DCGAN and VAE networks are built for

NATIVE_SIZE = {"digits": 8, "mnist": 28, "fashion_mnist": 28, "cifar10": 32, "folder": 64}
NATIVE_CHANNELS = {"digits": 1, "mnist": 1, "fashion_mnist": 1, "cifar10": 3, "folder": 3}
SCORER_EXPERIMENTS = {"digits": "cnn_digits", "mnist": "cnn_mnist", "fashion_mnist": "cnn_mnist"}


@dataclass
class GenDataConfig(DataConfig):
    """The images to learn (pixels are scaled by the model, not standardized)."""

    normalize: bool = param(False, "must stay false: pixels go to [-1, 1] (gan) or [0, 1] (vae)")


@dataclass
class GenModelConfig:
    """Network sizes."""

    latent: int = param(100, "latent dimensions: GAN noise z, VAE code", ge=1)
    g_width: int = param(64, "gan: generator channels before its output layer (DCGAN's ngf)", ge=1)
    d_width: int = param(64, "gan: discriminator channels after its input layer (DCGAN's ndf)", ge=1)
    d_norm: Literal["batch", "spectral"] = param(
        "batch", "gan: discriminator normalization, DCGAN's BatchNorm or spectral norm (Miyato et al. 2018)")
    conditional: bool = param(
        False, "gan: class-conditional on the data's labels: the class one-hot beside z in the "
        "generator, a projection discriminator (Miyato & Koyama 2018); samples cycle through the classes")
    width: int = param(32, "vae: channels of the first encoder layer", ge=1)
    variational: bool = param(True, "vae: a VAE (reparameterized z, KL term); false: a plain autoencoder")


@dataclass
class GenTrainConfig:
    """Optimization (Adam, as in the DCGAN paper)."""

    epochs: int = param(25, "passes over the training images", ge=1)
    batch_size: int = param(64, "images per batch per worker", ge=1)
    lr: float = param(2e-4, "Adam learning rate (the generator's, or the VAE's)", gt=0)
    d_lr: float | None = param(None, "gan: discriminator learning rate (none: lr)", gt=0)
    beta1: float = param(0.5, "Adam beta1 (DCGAN: 0.5)", ge=0, lt=1)
    beta2: float = param(0.999, "Adam beta2", ge=0, lt=1)
    n_critic: int = param(1, "gan: discriminator steps per generator step", ge=1)
    label_smoothing: float = param(0.0, "gan: one-sided label smoothing, real targets 1 - s", ge=0, lt=0.5)
    g_loss: Literal["non_saturating", "minimax"] = param(
        "non_saturating", "gan: generator loss, -log D(G(z)) or the paper's log(1 - D(G(z)))")
    instance_noise: float = param(
        0.0, "gan: std of Gaussian noise on every image the discriminator sees (small datasets)", ge=0)
    diff_augment: str | list[str] | None = param(
        None, "gan: DiffAugment policies (Zhao et al. 2020) on every image the discriminator sees, "
        "in both steps: 'color,translation,cutout' or a list of them; none: off")
    g_ema: float = param(
        0.0, "gan: decay of an exponential moving average of the generator's weights, which then "
        "draws every sample and score (0: off; e.g. 0.999)", ge=0, lt=1)
    beta: float = param(1.0, "vae: weight of the KL term (beta-VAE)", ge=0)
    denoise_std: float = param(0.0, "vae: Gaussian noise on the inputs, clean targets (denoising AE)", ge=0)
    amp: bool = param(False, "bfloat16 autocast (GPU workers only)")
    threads_per_worker: int = param(1, "torch threads per worker (0: torch's default)", ge=0)
    nonfinite: Nonfinite = param(
        "stop", "a NaN/inf gradient: stop the run with an error, or skip that batch's updates "
        "(counted in nonfinite_skipped)")


GAN_ONLY = ("d_lr", "n_critic", "label_smoothing", "g_loss", "instance_noise", "diff_augment", "g_ema")
AUGMENT_POLICIES = ("color", "translation", "cutout")  # raydl.gen.diffaugment's transforms


def augment_policies(policy: str | list[str] | None) -> tuple[str, ...]:
    """train.diff_augment as policy names in order: 'color,translation' or a list -> a
    tuple; none, empty or 'none' -> () (off); an unknown name is a one-line ConfigError."""
    items = policy.split(",") if isinstance(policy, str) else list(policy or [])
    names = tuple(n.strip() for n in items if n.strip())
    if names == ("none",):
        return ()
    for name in names:
        if name not in AUGMENT_POLICIES:
            raise ConfigError(f"train.diff_augment: unknown policy {name!r}; allowed: "
                              f"{', '.join(AUGMENT_POLICIES)} (comma-separated or a list), or none")
    return names
VAE_ONLY = ("beta", "denoise_std")


@dataclass
class ScoreConfig:
    """Sample grids and quality scores."""

    classifier: str | None = param(
        "auto", "classify checkpoint (or its run directory) that scores samples; auto: train "
        "raydl's CNN on the same data into RUN_DIR/scorer (digits, mnist, fashion_mnist); none: no scores")
    classifier_epochs: int = param(0, "auto: epochs of the scorer (0: its experiment file's)", ge=0)
    samples: int = param(1000, "generated images scored (as many held-out real images, at most, for the reference)", ge=2)
    every: int = param(1, "score every N epochs (0: the last epoch only)", ge=0)
    grid: int = param(64, "images in each epoch's sample grid PNG (0: none)", ge=0)
    inception_weights: str | None = param(
        None, "FID from torchmetrics' InceptionV3 with this local weights file (none: no FID)")


@dataclass
class GenerativeExperiment(FitExperiment):
    """A DCGAN or VAE experiment file."""

    kind: Literal["gan", "vae"] = param("gan", "registry key")
    data: GenDataConfig = section(GenDataConfig, "images")
    model: GenModelConfig = section(GenModelConfig, "networks")
    train: GenTrainConfig = section(GenTrainConfig, "optimization")
    score: ScoreConfig = section(ScoreConfig, "sample grids and quality scores")

    @property
    def image_size(self) -> int:
        return self.data.image_size or NATIVE_SIZE.get(self.data.source, 0)

    @property
    def channels(self) -> int:
        return self.data.channels or NATIVE_CHANNELS.get(self.data.source, 0)

    def validate(self) -> None:
        source = self.data.source
        if source not in NATIVE_SIZE:
            raise ConfigError(f"data.source: {source!r} is not images; allowed: {', '.join(NATIVE_SIZE)}")
        if self.data.normalize:
            raise ConfigError("data.normalize: generative models scale pixels themselves "
                              "([-1, 1] for gan, [0, 1] for vae); allowed: false")
        if self.data.sequence:
            raise ConfigError("data.sequence: generative models take whole images; allowed: false")
        if self.image_size not in SIZES:
            raise ConfigError(
                f"data.image_size: {source} images are {self.image_size} px; the networks take "
                f"{', '.join(map(str, SIZES))} px: set data.image_size to one of them")
        augment_policies(self.train.diff_augment)
        defaults = GenTrainConfig()
        other = VAE_ONLY if self.kind == "gan" else GAN_ONLY
        for name in other:
            if getattr(self.train, name) != getattr(defaults, name):
                raise ConfigError(f"train.{name}: applies to kind {'vae' if self.kind == 'gan' else 'gan'} "
                                  f"only; this experiment is kind {self.kind}")
        if self.kind == "gan" and self.model.variational is not GenModelConfig().variational:
            raise ConfigError("model.variational: applies to kind vae only; this experiment is kind gan")
        for name in ("d_norm", "conditional"):
            if self.kind == "vae" and getattr(self.model, name) != getattr(GenModelConfig(), name):
                raise ConfigError(f"model.{name}: applies to kind gan only; this experiment is kind vae")
        if self.score.classifier == "auto" and source not in SCORER_EXPERIMENTS:
            raise ConfigError(
                f"score.classifier: auto trains a scorer on {', '.join(SCORER_EXPERIMENTS)}; for "
                f"{source} give a classify checkpoint or none")
        if self.kind == "vae" and not self.model.variational and self.score.classifier not in (None, "auto"):
            raise ConfigError("score.classifier: a plain autoencoder has no prior to sample from, "
                              "so nothing to score; allowed: auto or none (or model.variational: true)")
        if self.kind == "vae" and not self.model.variational and self.score.inception_weights:
            raise ConfigError("score.inception_weights: a plain autoencoder has no prior to sample "
                              "from, so no FID; allowed: none (or model.variational: true)")

    @property
    def scored(self) -> bool:
        """Samples are scored: a classifier is named, or auto and there is a prior to sample."""
        if self.kind == "vae" and not self.model.variational:
            return False  # auto: a plain autoencoder has nothing to sample
        return self.score.classifier is not None

    @property
    def title(self) -> str:
        if self.kind == "gan":
            net = "conditional dcgan" if self.model.conditional else "dcgan"
        else:
            net = "vae" if self.model.variational else "autoencoder"
        return f"{self.kind} {net} on {self.data.source} ({self.image_size} px)"


def check(cfg: GenerativeExperiment) -> None:
    """The check step of kinds gan and vae: the images are there (or may be downloaded),
    the Inception weights file, if one is named, loads."""
    from raydl.sl.check import check_data_files

    check_data_files(cfg.data)
    if cfg.score.inception_weights:
        from raydl.gen.scoring import check_inception

        check_inception(cfg.score.inception_weights)

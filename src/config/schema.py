"""Typed config schema, registered in Hydra's ConfigStore.

OmegaConf checks types and choices while Hydra composes the config; the
`__post_init__` range checks run when `validate()` turns the composed config
into these dataclasses. Both happen before TensorFlow is imported, so a bad
value costs well under a second and never creates an MLflow run.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore

from src.config.cluster import TunerLauncher, TunerRole
from src.config.cluster import check as check_placement
from src.config.errors import ConfigError  # noqa: F401 - re-exported: src.config and tests import it from here
from src.config.errors import fail as _fail

# Keys that say how or where a run executes, not what it computes: a report never
# counts them as hyperparameters, and a study may resume with other values of them.
NOT_HYPERPARAMETERS = ("trainer.verbose", "trainer.resolved", "trainer.intra_op_threads", "trainer.inter_op_threads", "tracking",
                       "data.dir", "tuner.overwrite", "tuner.workers", "tuner.confirm", "tuner.plan",
                       "data.train_images", "data.val_images", "data.test_images",
                       # where the study's processes run (src/config/cluster.py)
                       "tuner.role", "tuner.launcher", "tuner.chief_address", "tuner.bind_host",
                       "tuner.worker_id", "tuner.worker_cpus", "tuner.worker_gpus", "tuner.worker_restarts",
                       "tuner.ray_address", "tuner.budget_minutes", "tuner.enqueue", "tuner.baseline_first")


def is_hyperparameter(key: str) -> bool:
    return not any(key == name or key.startswith(name + ".") for name in NOT_HYPERPARAMETERS)


def effective_learning_rate(trainer: "TrainerConfig") -> float:
    """trainer.learning_rate scaled to the batch size by trainer.lr_scaling."""
    ratio = trainer.batch_size / trainer.lr_reference_batch
    factor = {LrScaling.none: 1.0, LrScaling.linear: ratio, LrScaling.sqrt: ratio ** 0.5}
    return trainer.learning_rate * factor[LrScaling(trainer.lr_scaling)]


class Validation(str, Enum):
    test = "test"    # the notebook's way: validate on the test set (baseline only)
    split = "split"  # hold out data.val_fraction of the training set


class Optimizer(str, Enum):
    adam = "adam"
    sgd = "sgd"
    rmsprop = "rmsprop"
    adamw = "adamw"
    nadam = "nadam"


class LrScaling(str, Enum):
    none = "none"      # learning_rate as given, whatever the batch size
    linear = "linear"  # x batch_size / lr_reference_batch (Goyal et al. 2017, for SGD)
    sqrt = "sqrt"      # x sqrt(batch_size / lr_reference_batch) (the usual rule for Adam)


class Augmentation(str, Enum):
    """Random image changes in training only (Keras preprocessing layers inside the model, which
    are identity at inference: validation, test and src.predict see the images as they are)."""
    none = "none"
    flip = "flip"              # horizontal flips
    flip_shift = "flip_shift"  # flips, and shifts of up to 4 pixels (1/8 of the image) each way


class Precision(str, Enum):
    float32 = "float32"
    mixed_bfloat16 = "mixed_bfloat16"
    # trainer=fast: bfloat16 where this machine computes it natively, else the faithful
    # float32 setting (src/config/machine.py resolves it once, in validate()).
    auto = "auto"


@dataclass
class DataConfig:
    dir: Optional[str] = None
    validation: Validation = Validation.split
    val_fraction: float = 0.1
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    # Decoded, split arrays cached as memory-mapped .npy files (src/core/cache.py).
    cache: bool = True
    cache_dir: Optional[str] = None  # null = .cache/datasets/ in the project (git-ignored)

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            _fail("data.val_fraction", self.val_fraction, "a fraction in (0, 1)")
        for key in ("limit_train", "limit_test"):
            value = getattr(self, key)
            if value is not None and value < 10:
                _fail(f"data.{key}", value, "null or an integer >= 10 (one image per class)")


@dataclass
class ModelConfig:
    filters: List[int] = field(default_factory=lambda: [32, 64, 128])
    # Multiplies every entry of `filters` (rounded, at least 1): one knob for the conv width.
    width: float = 1.0
    kernel_size: int = 3
    dense_units: List[int] = field(default_factory=lambda: [256, 128])
    dropout: float = 0.5
    # Off by default, so that the defaults stay the notebook's model (258,762 parameters).
    batch_norm: bool = False  # BatchNormalization between each conv and its relu
    augmentation: Augmentation = Augmentation.none

    def __post_init__(self) -> None:
        if not self.filters:
            _fail("model.filters", self.filters, "a non-empty list of integers >= 1")
        for value in self.filters:
            if value < 1:
                _fail("model.filters", list(self.filters), "a non-empty list of integers >= 1")
        for value in self.dense_units:
            if value < 1:
                _fail("model.dense_units", list(self.dense_units), "a list of integers >= 1")
        if not self.width > 0:
            _fail("model.width", self.width, "a multiplier > 0")
        if self.kernel_size < 1:
            _fail("model.kernel_size", self.kernel_size, "an integer >= 1")
        if not 0.0 <= self.dropout < 1.0:
            _fail("model.dropout", self.dropout, "a rate in [0, 1)")
        if min(self.conv_filters) < 1:
            _fail("model.width", self.width, f"a multiplier that leaves every block of {list(self.filters)} >= 1 filter")
        fitting = max_conv_blocks(self.kernel_size)
        if len(self.filters) > fitting:
            _fail("model.filters", list(self.filters),
                  f"at most {fitting} conv blocks for kernel_size {self.kernel_size} on 32x32 images "
                  "(each block is a 'valid' conv then 2x2 pooling)")


    @property
    def conv_filters(self) -> List[int]:
        """The filters each conv block gets: `filters` scaled by `width`."""
        return [int(round(f * self.width)) for f in self.filters]


def max_conv_blocks(kernel_size: int, image_size: int = 32) -> int:
    """How many conv + 2x2-pool blocks fit before the feature map vanishes."""
    blocks, size = 0, image_size
    while size - (kernel_size - 1) >= 2:
        size = (size - (kernel_size - 1)) // 2
        blocks += 1
    return blocks


@dataclass
class TrainerConfig:
    epochs: int = 20
    batch_size: int = 32
    optimizer: Optimizer = Optimizer.adam
    learning_rate: float = 0.001
    # Decoupled weight decay (the optimizer's own `weight_decay`: each step multiplies the weights
    # by 1 - learning_rate * weight_decay, as AdamW does); 0 = off, the notebook's training.
    weight_decay: float = 0.0
    # How the learning rate follows the batch size, relative to lr_reference_batch.
    lr_scaling: LrScaling = LrScaling.none
    lr_reference_batch: int = 32
    precision: Precision = Precision.float32
    # Batches per call into TensorFlow: the same math, less Python per batch.
    steps_per_execution: int = 32
    # Keras fit verbosity: 1 = progress bar per epoch, 2 = one line per epoch.
    verbose: int = 1
    intra_op_threads: int = 0  # 0 = TensorFlow's default
    inter_op_threads: int = 0
    # What precision=auto became on this machine, and why (logged as a param); empty otherwise.
    resolved: str = ""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            _fail("trainer.epochs", self.epochs, "an integer >= 1")
        if self.batch_size < 1:
            _fail("trainer.batch_size", self.batch_size, "an integer >= 1")
        if self.steps_per_execution < 1:
            _fail("trainer.steps_per_execution", self.steps_per_execution, "an integer >= 1")
        if self.lr_reference_batch < 1:
            _fail("trainer.lr_reference_batch", self.lr_reference_batch, "an integer >= 1")
        if not self.learning_rate > 0:
            _fail("trainer.learning_rate", self.learning_rate, "a number > 0")
        if not 0.0 <= self.weight_decay < 1.0:
            _fail("trainer.weight_decay", self.weight_decay, "0 (off) or a decoupled decay rate in (0, 1)")
        if self.verbose not in (0, 1, 2):
            _fail("trainer.verbose", self.verbose, "0, 1 or 2")
        for key in ("intra_op_threads", "inter_op_threads"):
            if getattr(self, key) < 0:
                _fail(f"trainer.{key}", getattr(self, key), "0 (TensorFlow's default) or a thread count >= 1")


@dataclass
class TrackingConfig:
    # null = the embedded store: mlflow.db at the project root (src/tracking/store.py)
    uri: Optional[str] = None
    experiment: str = "cifar10"
    run_name: Optional[str] = None
    log_model: bool = True
    # A study registers its winner under this name with the alias `champion` (null = don't).
    register_best_as: Optional[str] = "cifar10-cnn"
    tags: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.experiment.strip():
            _fail("tracking.experiment", self.experiment, "a non-empty experiment name")


class TunerKind(str, Enum):
    hyperband = "hyperband"
    random = "random"
    bayesian = "bayesian"
    grid = "grid"


class FinalFit(str, Enum):
    retrain = "retrain"        # retrain the best configuration on the whole training set
    checkpoint = "checkpoint"  # evaluate the best trial's best-epoch checkpoint as it is


class HyperParameterType(str, Enum):
    int = "int"
    float = "float"
    choice = "choice"
    boolean = "boolean"
    fixed = "fixed"


class Sampling(str, Enum):
    linear = "linear"
    log = "log"
    reverse_log = "reverse_log"


@dataclass
class HyperParameter:
    key: str = ""  # the config key it sets, e.g. model.dropout
    type: HyperParameterType = HyperParameterType.float
    min: Optional[float] = None
    max: Optional[float] = None
    step: Optional[float] = None
    sampling: Sampling = Sampling.linear
    values: Optional[List[Any]] = None  # for type: choice
    value: Optional[Any] = None  # for type: fixed


@dataclass
class ConfirmConfig:
    """After the search: the top_k and the baseline over `seeds` seeds (0 = no confirmation stage),
    then the best on validation and the baseline in seed pairs until decided (src/analysis/decision.py)."""
    top_k: int = 3
    seeds: int = 3  # seed pairs before the first look
    epochs: Optional[int] = None  # null = each configuration's own epochs (Hyperband: tuner.max_epochs)
    max_seeds: int = 6  # the cap on seed pairs (below `seeds`: `seeds`, one look, the fixed design)
    margin: float = 1.0  # accuracy points: within it the two count as equivalent (fixed before the run)

    def __post_init__(self) -> None:
        if self.top_k < 1:
            _fail("tuner.confirm.top_k", self.top_k, "an integer >= 1")
        if self.seeds < 0:
            _fail("tuner.confirm.seeds", self.seeds, "0 (no confirmation) or a number of seeds >= 1")
        if self.epochs is not None and self.epochs < 1:
            _fail("tuner.confirm.epochs", self.epochs, "null or an integer >= 1")
        if self.max_seeds < 1:
            _fail("tuner.confirm.max_seeds", self.max_seeds, "an integer >= 1 (the cap on seed pairs)")
        if not 0.0 < self.margin < 100.0:
            _fail("tuner.confirm.margin", self.margin, "accuracy points in (0, 100), e.g. 1.0")


@dataclass
class TunerConfig:
    kind: TunerKind = TunerKind.random
    objective: str = "val_accuracy"
    max_trials: int = 10  # Random, Bayesian, Grid (Hyperband's budget is max_epochs/factor)
    max_epochs: int = 20  # Hyperband
    factor: int = 3  # Hyperband
    hyperband_iterations: int = 1
    # Hyperband: each round continues from the previous round's best epoch with the
    # optimizer's state (Adam's moments) as well as its weights; keras-tuner's own
    # restore leaves the optimizer unbuilt, so Keras skips its saved state.
    carry_optimizer: bool = True
    executions_per_trial: int = 1
    seed: int = 42  # seeds the oracle; each trial's training uses the top-level seed
    overwrite: bool = False
    directory: str = "outputs/tuner"  # keras-tuner state, one folder per project_name
    project_name: str = "${tracking.experiment}"  # keras-tuner state folder, also the study's MLflow tag
    final_fit: FinalFit = FinalFit.retrain
    # Parallel keras-tuner workers (>= 2 on this machine: an oracle process plus N worker
    # processes, src/jobs/distributed/workers.py); workers x worker_cpus should match the cores.
    workers: int = 1
    # Where the chief and the workers run (src/config/cluster.py, docs/clusters.md, "A study's workers on several machines").
    role: TunerRole = TunerRole.all
    launcher: TunerLauncher = TunerLauncher.local
    chief_address: Optional[str] = None  # host:port the workers connect to (and whose port the chief binds)
    bind_host: str = "127.0.0.1"  # the chief's listening interface: 0.0.0.0 for workers on other machines
    worker_id: Optional[str] = None  # with role=worker: its keras-tuner id, unique in the study
    worker_cpus: int = 1  # per worker: TensorFlow threads (unless trainer.*_threads set) and Ray's num_cpus
    worker_gpus: Optional[int] = None  # per worker: null = one where GPUs are present, 0 = none
    worker_restarts: int = 3  # a worker killed by a signal is replaced up to this many times
    ray_address: str = "local"  # tuner.launcher=ray: local (a Ray instance for this study), auto, host:port, ray://...
    search_space: Dict[str, HyperParameter] = field(default_factory=dict)
    # Warm start (src/jobs/warm_start.py): the baseline is the first trial where the space holds it,
    # then each `enqueue` entry ({hyperparameter: value}, the rest the baseline's).
    baseline_first: bool = True
    # Wall minutes for the whole study (null = none): the search stops at the confirmation's need (src/jobs/budget.py).
    budget_minutes: Optional[float] = None
    enqueue: List[Dict[str, Any]] = field(default_factory=list)
    # Print the planned trials, epochs, images and an estimated wall time, then exit (no run).
    plan: bool = False
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)

    def __post_init__(self) -> None:
        for key in ("max_trials", "max_epochs", "executions_per_trial", "hyperband_iterations", "workers"):
            if getattr(self, key) < 1:
                _fail(f"tuner.{key}", getattr(self, key), "an integer >= 1")
        if self.factor < 2:
            _fail("tuner.factor", self.factor, "an integer >= 2")
        if self.budget_minutes is not None and not self.budget_minutes > 0:
            _fail("tuner.budget_minutes", self.budget_minutes, "null (no budget) or minutes > 0")
        if self.objective not in ("val_accuracy", "val_loss"):
            _fail("tuner.objective", self.objective, "val_accuracy or val_loss (selection is on validation data)")
        if not self.search_space:
            _fail("tuner.search_space", dict(self.search_space), "at least one hyperparameter")
        if not self.project_name.strip() or "/" in self.project_name:
            _fail("tuner.project_name", self.project_name, "a non-empty folder name")
        check_placement(self)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    tuner: Optional[TunerConfig] = None
    seed: int = 42

    def __post_init__(self) -> None:
        if self.seed < 0:
            _fail("seed", self.seed, "an integer >= 0")
        if self.tuner is not None and Validation(self.data.validation) is not Validation.split:
            _fail("data.validation", Validation(self.data.validation).value,
                  "split when tuning: a study selects on held-out training data, never on the test set")


def register() -> None:
    """The schema of the whole config, and of the tuner group: a tuner file starts
    from `base_tuner` and holds only its kind and budget."""
    store = ConfigStore.instance()
    store.store(name="schema", node=Config)
    store.store(group="tuner", name="base_tuner", node=TunerConfig)

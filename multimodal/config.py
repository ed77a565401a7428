"""Experiment configuration: pydantic models loaded from YAML, with dotted ``--set`` overrides.

Every block rejects unknown keys with a "did you mean" hint. ``multimodal.train(config)`` -- called by
the CLI, the benchmark and the tuner alike -- takes a :class:`Config`, a dict, or a YAML path.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    ValidationError,
    field_validator,
    model_validator,
)

from multimodal.exceptions import ConfigError
from multimodal.registry import did_you_mean
from multimodal.survival.endpoints import get_endpoint

__all__ = [
    "COMPONENT_FORMS",
    "CUMULATIVE_FORMS",
    "MOVED_KEYS",
    "Config",
    "DataConfig",
    "EncoderConfig",
    "EvalConfig",
    "FusionConfig",
    "HeadConfig",
    "LandmarkConfig",
    "MembersConfig",
    "TrainConfig",
    "apply_overrides",
    "interaction_blocks",
    "load_config",
    "resolve_head_name",
    "upgrade_legacy_config",
]

log = logging.getLogger(__name__)


class _Strict(BaseModel):
    # inf and NaN are never meaningful settings (train.lr=.inf trained to NaN before)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class EncoderConfig(_Strict):
    """One modality's encoder: a registry name plus its options."""

    name: str
    out_dim: int = Field(32, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


class LandmarkConfig(_Strict):
    """Landmarking for dynamic prediction (a cohort with a longitudinal modality).

    Training stacks, for every landmark ``s`` in ``times``, the patients still followed at ``s``
    with what was measured up to ``s``; their outcome is the time after ``s``, censored at
    ``horizon``. One model covers every landmark (the landmark is one of its inputs); it predicts
    survival over the next ``horizon`` given that the patient is alive at the landmark. Folds
    keep all rows of a patient together. See docs/longitudinal.md."""

    times: list[float] = Field(min_length=1)
    """Landmark times in the cohort's time unit, e.g. ``[0, 0.5, 1, ..., 5]`` years."""
    horizon: float = Field(gt=0)
    """Prediction horizon after each landmark (events later are censored there)."""
    eval_times: list[float] | None = None
    """Landmarks the per-landmark metrics are reported at (default: ``times``)."""

    @field_validator("times")
    @classmethod
    def _times(cls, v: list[float]) -> list[float]:
        if any(t < 0 for t in v):
            raise ValueError("landmark times are >= 0 (the time origin of the cohort)")
        return sorted(set(float(t) for t in v))


class DataConfig(_Strict):
    """Which cohort, which modalities, which folds, and how inputs are prepared."""

    cohort: str | None = None
    """Cohort manifest (YAML/JSON) or TCGA-style folder; ``--cohort`` on the CLI overrides it."""
    modalities: list[str] | None = None
    """Modality names to use (default: every modality of the cohort that has an encoder)."""
    folds: int = Field(5, ge=2)
    """Number of stratified folds when no fixed split is given."""
    split: str | None = None
    """Fixed folds: a split name under the cohort's ``splits/`` folder or a folder of fold_k.csv."""
    fold_indices: list[int] | None = None
    """Run only these folds (default: all)."""
    group_by: str | None = None
    """Group folds by this patient column (e.g. ``site``) so a group never spans train and val."""
    clinical_numeric: list[str] | None = None
    """Numeric clinical covariates of a TCGA folder: ``clinical.csv`` columns (null: ``[age]``).
    A manifest cohort names its covariates in its ``clinical`` entry instead; setting this with
    one is an error."""
    clinical_categorical: list[str] | None = None
    """Categorical clinical covariates of a TCGA folder (null: ``[sex, stage]``), e.g. ``[sex,
    stage, histological_grade, histological_type]``. TCGA's bracketed markers (``[Not
    Available]``, ``[Unknown]``, ``[Discrepancy]``, ...) count as missing (level "unknown"). The
    run records the list, and ``predict``, ``explain``, ``report`` and the dashboard load a TCGA
    folder with it. Manifest cohorts: as ``clinical_numeric``."""
    early_stopping_fraction: float = Field(0.15, ge=0.0, lt=0.5)
    """Share of each training fold held out for early stopping; the reported fold is never used.
    ``0``: no early stopping; every fit runs ``train.epochs`` epochs and keeps the last state."""
    image_size: int = Field(32, ge=8)
    """Images are resized to this edge length (per spatial dimension)."""
    image_intensity: Literal["scale", "zscore"] | tuple[float, float] = "scale"
    """``scale`` (each image's min..max to [0, 1]), ``zscore``, or a fixed window ``[a_min, a_max]``
    mapped to [0, 1] and clipped: for CT in Hounsfield units, ``[-160, 240]`` is a soft-tissue
    window and keeps intensities comparable between patients."""
    genomics_max_features: int | None = Field(2000, ge=1)
    """Keep the most variable genomic features (selection fitted on the training fold)."""
    genomics_types: list[str] = Field(default_factory=list)
    """Column-name suffixes of the genomic data types, e.g. ``[rnaseq, cnv, mut]``: the
    ``genomics_max_features`` cap then applies within each type (the columns named
    ``..._<suffix>``; the columns matching none form one more type), so that a ranking by
    variance does not drop every 0/1 mutation column (variance at most 0.25) in favour of
    z-scored expression values (variance about 1). Empty: one ranking over every column."""
    genomics_transform: Literal["none", "asinh", "asinh_after_selection"] = "none"
    """``asinh``: every genomic value goes through the inverse hyperbolic sine before the
    variance ranking, the median imputation and the z-scoring (``asinh(x)`` is ``x`` near 0 and
    ``log(2x)`` for large ``x``, keeping the sign). Tables of expression z-scores computed on
    unlogged values (the TCGA PORPOISE tables) are right-skewed, with values up to thousands of
    SDs: ranked by raw variance, the kept genes are those with a few extreme patients, and in a
    linear term those patients dominate. ``asinh_after_selection``: the columns are ranked on
    their raw values (as with ``none``; the tree members' variance ranking too), and only the
    kept columns go through asinh. ``none``: the values as they come."""
    genomics_clip: float | None = Field(None, gt=0)
    """After z-scoring on the training patients, genomic values beyond this many SDs are set to
    the bound (training and new patients alike), e.g. ``5``; the column ranking is unchanged.
    Bounds the pull of a few extreme patients, and of the carriers of a rare mutation (a 0/1
    column carried by 1 % of patients z-scores to about 10). ``null``: not clipped."""
    frozen_image_encoder: EncoderConfig | None = None
    """Backbone that precomputes (and caches) image embeddings when an imaging modality uses the
    ``image_embedding`` encoder, e.g. ``{name: resnet, out_dim: 64, options: {pretrained_path:
    weights.pt}}``. It is frozen: only the small encoder over its embeddings is trained."""
    text_model: str | None = None
    """Local path of a Hugging Face text model; default: the bundled all-MiniLM-L6-v2."""
    text_max_length: int = Field(256, ge=16)
    text_chunking: Literal["sentences", "tokens"] = "sentences"
    """Reports are embedded per sentence (default) or per overlapping token window, then pooled."""
    text_features: Literal["embedding", "lexical", "both"] = "embedding"
    """What a pooled text encoder (``text_mlp``) and the text's linear member see: ``embedding``
    (sentence embeddings of ``text_model``, pooled), ``lexical`` (TF-IDF of the report's words and
    word pairs, negated words marked -- "no lymphovascular invasion" -- fitted on the training
    patients and saved with the model), or ``both`` (the two side by side)."""
    text_max_terms: int = Field(1000, ge=1)
    """Most terms a lexical text representation keeps (the most frequent in training reports)."""
    text_term_scaling: Literal["term", "pooled"] = "term"
    """How lexical columns are scaled after centring: ``term`` divides each by its own SD on the
    training reports (one ridge penalty then treats a rare term like a common one); ``pooled``
    divides every column by one SD (the root mean of the columns' variances), so a rare term
    keeps its small variance and a ridge penalty shrinks it more. Either way a term's part of a
    linear score stays exact."""
    cache_dir: str | None = None
    """Embedding cache (text, frozen images); default ``~/.cache/multimodal``."""
    landmark: LandmarkConfig | None = None
    """Landmarking (required with a longitudinal modality): ``{times: [...], horizon: h}``."""

    def cohort_options(self) -> dict[str, list[str]]:
        """Keyword arguments of :meth:`multimodal.data.cohort.Cohort.load` for the clinical
        covariates set here (none when both are null: the cohort's own)."""
        return cohort_options_of({"data": {key: getattr(self, key) for key in _COHORT_KEYS}})


class FusionConfig(_Strict):
    name: str = "attention_gated"
    dim: int = Field(32, ge=1)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    modality_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    """Probability of hiding each present modality of a training sample (never its last one)."""
    options: dict[str, Any] = Field(default_factory=dict)


#: ``members.interaction_form`` values whose products hold the principal components x each level
#: (a ridge block), and those whose products hold every feature x each cumulative level indicator
#: (an elastic-net block).
COMPONENT_FORMS = ("components", "both")
CUMULATIVE_FORMS = ("cumulative", "both")


def interaction_blocks(modality: str, column: Any, form: str) -> list[str]:
    """Names of the product blocks ``members.interactions`` gives ``modality`` x ``column``:
    ``<modality>*<column>``, and with ``form: both`` the cumulative products' own block
    ``<modality>*<column>>=k`` after it."""
    name = f"{modality}*{column}"
    return [name, f"{name}>=k"] if form == "both" else [name]


class MembersConfig(_Strict):
    """The members whose outputs add up to the model's risk, and how they are combined.

    A model's output is ``deep residual + sum of linear members``: penalised Cox terms on the
    clinical covariates (``clinical``) and on other modalities with one feature vector per patient
    (``linear``), plus the deep fusion residual (encoders -> fusion -> head, ``deep``). The linear
    members are fitted first, on the training patients only (penalties chosen by cross-validation
    inside them); the deep residual then starts from zero and early stopping keeps it only when it
    beats the linear model on the hold-out (``train.es_min_delta``).
    """

    clinical: bool = True
    """A linear Cox term on the clinical covariates (the modality of kind ``clinical``)."""
    linear: list[str] = Field(default_factory=list)
    """Modalities with one feature vector per patient -- genomics, report text with a pooled
    encoder (``text_mlp``), imaging with frozen embeddings (``image_embedding``) -- that also get a
    ridge-penalised linear term beside the clinical one, held fixed after fitting. Needs
    ``clinical``; another kind of input is refused with a ConfigError."""
    deep: bool = True
    """The deep fusion residual. ``false``: the model is its linear members alone (no training
    epochs; needs a Cox-type head)."""
    combine: Literal["joint", "stacked"] = "joint"
    """``joint``: one ridge Cox model over the clinical covariates and every ``linear`` term, each
    term's penalty chosen in turn by cross-validation. ``stacked``: each term's direction from its
    own ridge Cox model beside the clinical covariates, then a Cox model on their out-of-fold scores
    sets how much each counts; better when a term has hundreds of features and its CV-best penalty
    shrinks it to nothing."""
    clinical_penalty: float | None = Field(0.01, ge=0)
    """L2 penalty of the clinical term's warm-start fit (a ridge Cox model on the training
    patients; Cox-type heads). ``null``: no warm start -- every term starts at zero and is trained
    with the deep residual."""
    clinical_lr: float | None = Field(None, gt=0)
    """Learning rate of the clinical term while the deep residual trains; default ``train.lr``. A
    Cox-like linear term converges best with a larger step than the deep branches tolerate."""
    penalties: list[float] = Field(
        default_factory=lambda: [1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e4]
    )
    """Ridge penalties tried for the ``linear`` terms; the largest switches a term off."""
    penalty_folds: int = Field(3, ge=2)
    """Folds of the cross-validation, within the training patients, that picks a penalty."""
    penalty_tolerance: float = Field(0.005, ge=0)
    """The largest penalty whose cross-validated score is within this of the best is taken."""
    penalty_score: Literal["c_index", "likelihood"] = "c_index"
    """What the penalty's cross-validation maximises on held-out patients: Harrell's C, or the
    Cox partial log-likelihood (smoother: it also rewards well-sized coefficients)."""
    group_means: bool = False
    """The linear term of a grouped genomics table (pathways, gene families) takes one score per
    group -- the mean of its z-scored features -- instead of every feature. The deep genomics
    branch still sees every feature."""
    trees: list[Literal["boosting", "forest"]] = Field(default_factory=list)
    """Tree-ensemble members beside the linear ones (``stacked`` only; single-output Cox heads):
    ``boosting`` (gradient-boosted Cox trees) and ``forest`` (a random survival forest), fitted
    with scikit-survival on the clinical covariates and the selected features of ``tree_inputs``
    (:mod:`multimodal.models.trees`). The stacked second stage weighs their out-of-fold scores
    with the linear members'; a member that does not help gets weight 0."""
    tree_inputs: list[str] = Field(default_factory=lambda: ["genomics"])
    """Modalities besides the clinical covariates that the tree members see (dense feature
    vectors: genomics, or text with a pooled encoder); absent ones are skipped."""
    tree_features: int = Field(50, ge=0)
    """Features of each ``tree_inputs`` modality the trees see, chosen on the patients the trees
    are fitted on by ``tree_selection``."""
    tree_selection: Literal["cox_score", "variance"] = "cox_score"
    """How the trees' ``tree_features`` are chosen among the patients who have the modality:
    ``cox_score``, the largest univariate Cox score statistic (supervised); ``variance``, the
    largest variance of the raw values (genomics: before z-scoring; unsupervised, as the random
    survival forest baseline chooses its genes). On a few hundred patients, a supervised screen
    of 1,000 features picks many by chance association with the outcome; a variance ranking
    cannot."""
    tree_scores: list[str] = Field(default_factory=list)
    """``tree_inputs`` whose linear member's risk score (its ridge direction -- elastic-net with
    ``elastic_net`` and not ``elastic_net_beside`` --, fitted on the same
    patients as the trees) the trees also see: a tree can then let a modality's risk score count
    differently by stage or age (effect modification), which a linear term cannot."""
    tree_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per kind, scikit-survival options over the defaults (``{forest: {n_estimators: 100}}``)."""
    stack_nonnegative: bool = True
    """``stacked``: the second stage's member weights are kept >= 0 (a member whose out-of-fold
    scores would get a negative weight is dropped and the rest refitted)."""
    min_events: int = Field(0, ge=0)
    """``stacked``: a member whose modality is present in training patients with fewer events
    than this is left out (weight 0, its penalty the largest of ``penalties``, a log line says
    so): its out-of-fold scores would rest on a handful of deaths, yet its weight is fitted as
    if they did not (a report member on 16 of 230 patients)."""
    stack_min_lr: float = Field(0.0, ge=0)
    """``stacked``, single-output Cox heads: a member whose out-of-fold scores, beside the
    clinical covariates alone, raise the training patients' partial log-likelihood by a
    likelihood-ratio statistic (2 x the gain) below this gets weight 0, with a log line (3.84:
    the 5 % point of chi-square with 1 degree of freedom). The second stage otherwise gives
    any member whose scores correlate with the outcome by chance a weight. 0: off."""
    stack_penalty: NonNegativeFloat | Literal["auto"] = 0.0
    """``stacked``: ridge penalty on the second stage's member weights, each member's out-of-fold
    score taken in standard-deviation units (0: none). ``auto`` picks it from
    ``stack_penalties`` by cross-validating the second stage itself on the training patients
    (the out-of-fold scores split into ``penalty_folds`` folds; Verweij & van Houwelingen's
    cross-validated partial likelihood): on a few hundred patients, six free weights chase
    noise, and the shrinkage keeps the weights of members whose scores do not generalise small."""
    stack_repeats: int = Field(1, ge=1)
    """``stacked``: how many times the training patients are split into inner folds (each time
    with another seed) for the members' out-of-fold scores. The penalty of each linear member is
    the one with the best second-stage fit averaged over the repeats, and the second stage's
    clinical coefficients and member weights are averaged over its fits on each repeat's scores:
    on a few hundred patients one split's weights depend on which patients share a fold. Every
    member's out-of-fold fits run once per repeat. 1: one split, as before."""
    stack_fallback: bool = False
    """``stacked``, single-output Cox heads: cross-validate the second stage against the clinical
    covariates alone on the training patients (each repeat's out-of-fold scores split into
    ``penalty_folds`` folds with another seed; the mean held-out Harrell's C of each). Where the
    members do not raise it, every member weight is set to 0 and the model is the clinical Cox
    model (with a log line): on a cohort where no member carries signal, the second stage still
    gives them weights fitted to noise, and the ensemble predicts held-out patients worse than
    the clinical covariates alone. ``false``: the second stage is always used."""
    stack_penalties: list[NonNegativeFloat] = Field(
        default_factory=lambda: [0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0], min_length=1
    )
    """Second-stage penalties that ``stack_penalty: auto`` chooses from (per event: the loss is
    the mean negative partial log-likelihood per event)."""
    interactions: dict[str, str] = Field(default_factory=dict)
    """``{modality: clinical categorical column}``, e.g. ``{genomics: stage}``: that modality's
    linear member also gets its ``interaction_components`` leading principal components (fitted
    on the training patients who have it, standardised) times each level of the clinical column,
    so the effect of a co-expression programme may differ between stages. The products are a
    block of their own (``<modality>*<column>``) with their own ridge penalty and, stacked, their
    own weight; they vanish where the clinical covariates are missing. A cohort without the
    column leaves them out, with a warning."""
    interaction_components: int = Field(5, ge=1)
    """Principal components per ``interactions`` modality (``interaction_form: components`` or
    ``both``)."""
    interaction_form: Literal["components", "cumulative", "both"] = "components"
    """What the ``interactions`` products are. ``components``: the leading principal components
    times each level (one-hot), ridge-penalised. ``cumulative``: *every* feature of the modality
    times each cumulative level indicator ``[level >= k]`` of the clinical column, its known
    levels in sorted order (stage: ``>= II``, ``>= III``, ``>= IV``; meant for a column whose
    levels sort in their clinical order, as stage I-IV does: training warns where they do not,
    :func:`multimodal.models.members.level_order_problem`), fitted with an elastic-net penalty
    (``interaction_l1_ratio``) whose strength the stacked combiner chooses on out-of-fold scores
    as it chooses the ridge penalties: a few genes that act only from some stage on, among
    hundreds that do not. The products' block is fitted beside the clinical covariates, not
    beside the modality's main-effect term, so ``[level >= second]`` (most patients) also
    carries genes whose effect is common to every level but the first. Needs
    ``combine: stacked`` and a single-risk Cox head. ``both``: the two blocks side by side, the
    components' (``<modality>*<column>``, ridge) and the cumulative products'
    (``<modality>*<column>>=k``, elastic net), each with its own penalty and stacking weight
    (same needs as ``cumulative``)."""
    interaction_l1_ratio: float = Field(0.5, gt=0.0, le=1.0)
    """Elastic-net mixing of the ``cumulative`` products (1 = lasso)."""
    elastic_net: dict[str, float] = Field(default_factory=dict)
    """``{modality: l1 ratio}``, e.g. ``{genomics: 0.5}``: that modality's linear member (each of
    its ``column_blocks``; not its ``interactions`` products) is fitted along an elastic-net path
    (scikit-survival's Coxnet, this l1 ratio; 1 = lasso) instead of with a ridge penalty from
    ``penalties``; the stacked combiner chooses the path's penalty on out-of-fold scores as it
    chooses a ridge one. A sparse direction where a few of hundreds of features carry the signal,
    where a ridge one spreads weight over all of them. Needs ``combine: stacked``,
    ``clinical_penalty`` and a single-risk Cox head."""
    elastic_net_beside: bool = False
    """With ``elastic_net``: keep each named modality's ridge member and add its elastic-net fit
    beside it as a second stacked member (``<block>/net``) with its own weight, instead of
    replacing the ridge one; the second stage decides, cohort by cohort, how much each counts.
    The model holds their weighted sum (one direction per modality, nothing new to save)."""
    penalty_choice: Literal["pooled", "nested"] = "pooled"
    """``stacked``: which out-of-fold scores of a linear member the second stage weighs.
    ``pooled``: those of the penalty chosen on every inner fold's scores -- the same scores that
    chose it, so a member with many candidate penalties (an elastic-net path of 20) looks better
    to the second stage than it will on new patients. ``nested``: each inner fold's scores come
    from the penalty chosen on the *other* inner folds' held-out scores alone, so a patient's
    outcome does not pick the penalty of the score that patient is weighed on (it still enters
    the fits the other folds' scores come from: an approximation of full nesting, at no extra
    fit). The direction fitted on every training patient keeps the pooled choice, and the
    second stage's weight is fitted on scores that may mix penalties."""
    column_blocks: dict[str, list[str]] = Field(default_factory=dict)
    """``{modality: [suffix, ...]}``, e.g. ``{genomics: [rnaseq, cnv, mut]}``: that modality's
    linear member is cut into one block per column type -- the columns named ``<...>_<suffix>``
    form block ``<modality>:<suffix>`` -- each with its own ridge penalty and, stacked, its own
    weight; columns matching no suffix stay in a block named after the modality. Expression,
    copy number and mutation columns differ in scale and in how much of their signal is spread
    thin: one penalty for all of them shrinks a few strong mutations as hard as a thousand weak
    expression values. A suffix no selected column has is skipped."""

    @model_validator(mode="after")
    def _trees_need_stacking(self) -> MembersConfig:
        if self.trees and self.combine != "stacked":
            raise ConfigError(
                f"members.trees {self.trees} needs members.combine: stacked (the second stage "
                "weighs the trees' out-of-fold scores); set members.combine: stacked or remove "
                "members.trees"
            )
        if self.trees and not self.clinical:
            raise ConfigError("members.trees needs members.clinical: true")
        unscored = sorted(set(self.tree_scores) - (set(self.tree_inputs) & set(self.linear)))
        if unscored:
            raise ConfigError(
                f"members.tree_scores names {unscored}: each must be in members.tree_inputs "
                f"{self.tree_inputs} and in members.linear {self.linear} (its linear member gives "
                "the score)"
            )
        unknown = sorted(set(self.tree_options) - set(self.trees))
        if unknown:
            raise ConfigError(
                f"members.tree_options names {unknown}, which are not in members.trees {self.trees}"
            )
        stray = sorted(set(self.column_blocks) - set(self.linear))
        if stray:
            raise ConfigError(
                f"members.column_blocks names {stray}, which are not in members.linear "
                f"{self.linear}: the blocks cut a modality's linear member"
            )
        if self.group_means and any(self.column_blocks.values()):
            raise ConfigError(
                f"members.group_means and members.column_blocks "
                f"{sorted(m for m, v in self.column_blocks.items() if v)} both set: a grouped "
                "genomics table's linear term is then one score per group, which leaves no "
                "columns to cut into blocks. Remove one of the two"
            )
        split = sorted(m for m in self.tree_scores if self.column_blocks.get(m))
        if split:
            raise ConfigError(
                f"members.tree_scores names {split}, whose linear member members.column_blocks "
                "cuts into several blocks: the trees read one risk score per modality. Remove "
                f"{split} from one of the two"
            )
        stray = sorted(set(self.interactions) - set(self.linear))
        if stray:
            raise ConfigError(
                f"members.interactions names {stray}, which are not in members.linear "
                f"{self.linear}: the products extend a modality's linear member"
            )
        stray = sorted(set(self.elastic_net) - set(self.linear))
        if stray:
            raise ConfigError(
                f"members.elastic_net names {stray}, which are not in members.linear "
                f"{self.linear}: the penalty is that of a modality's linear member"
            )
        bad = {m: r for m, r in self.elastic_net.items() if not 0.0 < float(r) <= 1.0}
        if bad:
            raise ConfigError(
                f"members.elastic_net: l1 ratios {bad} are outside (0, 1]; use 0.5 for an even "
                "mix of lasso and ridge, 1 for the lasso"
            )
        if self.elastic_net_beside and not self.elastic_net:
            raise ConfigError(
                "members.elastic_net_beside is true but members.elastic_net names no modality; "
                "name one ({genomics: 0.5}) or remove elastic_net_beside"
            )
        if self.elastic_net and (self.combine != "stacked" or self.clinical_penalty is None):
            raise ConfigError(
                f"members.elastic_net {dict(self.elastic_net)} needs members.combine: stacked and "
                "members.clinical_penalty set (the stacked combiner fits the elastic-net path "
                "before the deep residual); set both or remove members.elastic_net"
            )
        form = self.interaction_form
        if self.interactions and form in CUMULATIVE_FORMS:
            if self.combine != "stacked":
                raise ConfigError(
                    f"members.interaction_form: {form} needs members.combine: stacked (the "
                    "stacked combiner fits the products' elastic-net path); set members.combine: "
                    "stacked or use interaction_form: components"
                )
            if self.clinical_penalty is None:
                raise ConfigError(
                    f"members.interaction_form: {form} needs members.clinical_penalty (the "
                    "products are fitted by the combiner before the deep residual); set it or "
                    "use interaction_form: components"
                )
        return self


#: Config keys of earlier releases -> their place now (``upgrade_legacy_config`` moves them; a new
#: config that uses the old name gets a message naming the new one).
MOVED_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("fusion", "clinical_linear"): ("members", "clinical"),
    ("fusion", "linear_modalities"): ("members", "linear"),
    ("fusion", "linear_group_means"): ("members", "group_means"),
    ("train", "clinical_lr"): ("members", "clinical_lr"),
    ("train", "clinical_warm_start"): ("members", "clinical_penalty"),
    ("train", "linear_penalties"): ("members", "penalties"),
    ("train", "linear_penalty_tolerance"): ("members", "penalty_tolerance"),
    ("train", "linear_penalty_score"): ("members", "penalty_score"),
    ("train", "linear_combine"): ("members", "combine"),
    ("train", "linear_penalty_folds"): ("members", "penalty_folds"),
}


class HeadConfig(_Strict):
    name: str = "cox"
    ties: Literal["efron", "breslow"] = "efron"
    n_bins: int = Field(20, ge=2)
    """Number of intervals of the time grid for discrete-time heads."""
    options: dict[str, Any] = Field(default_factory=dict)


class TrainConfig(_Strict):
    epochs: int = Field(30, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=2)
    weight_decay: float = Field(1e-4, ge=0)
    patience: int = Field(8, ge=1)
    """Epochs without improvement of the early-stopping C-index before stopping."""
    es_smoothing: int = Field(5, ge=1)
    """The early-stopping C-index is averaged over this many recent epochs before comparing: a
    hold-out of a few dozen patients is noisy, and the raw maximum picks lucky epochs."""
    es_min_delta: float = Field(0.0, ge=0)
    """A later epoch replaces the kept one only when its smoothed hold-out C-index is higher by
    more than this: with a warm-started linear path, the first epochs *are* the linear model, and a
    small gain on a hold-out with a dozen events is more likely noise than a better model."""
    refit: bool = True
    """After early stopping has chosen the number of epochs on the held-out part of the training
    fold, retrain on the whole training fold for that many epochs (same seed) and keep that model."""
    precision: Literal["auto", "32", "bf16", "fp16"] = "auto"
    """``auto``: bf16 autocast on CUDA, float32 elsewhere. The survival loss is always float32."""
    device: str = "auto"
    """``auto`` (CUDA, then MPS, then CPU) or a torch device string."""
    seed: int = 0
    accumulate: int = Field(1, ge=1)
    """Micro-batches whose outputs form one risk set (one optimiser step)."""
    event_balanced: bool = True
    """Sample batches so that each holds events (Cox needs them)."""
    min_events_per_batch: int = Field(2, ge=1)
    grad_clip: float | None = Field(5.0, gt=0)
    resume: bool = True
    """Continue from checkpoints found in the run folder."""
    checkpoint_every: int | Literal["auto"] = "auto"
    """Save the training state every this many epochs, and always at a fit's last epoch; an
    interrupted fold resumes exactly from the last saved epoch, repeating the epochs after it.
    ``auto``: after the first epoch that ends at least
    :data:`multimodal.training.loop.AUTO_CHECKPOINT_SECONDS` (60 s) after the previous save (or
    the fit's start). A model whose epoch takes seconds then loses at most a minute of work
    to a crash and does not pay for a write every epoch; a model whose epochs take minutes is
    saved after every epoch."""
    train_c_index: bool = False
    """Also compute the C-index on the fit patients after every epoch (history column
    ``train_c_index``): one forward pass over them per epoch, so off unless asked for. It is
    never used to choose anything; early stopping uses the held-out part
    (``data.early_stopping_fraction``), and without one a fit runs all its epochs."""
    threads: int | Literal["auto"] = "auto"
    """Intra-op threads while training (:mod:`multimodal.training.threads`). ``auto``:
    ``OMP_NUM_THREADS`` when set, else the CPUs of this process's affinity mask; one thread for a
    model under 1e6 parameters trained on the CPU. An integer is used as given."""
    progress: bool = True

    @field_validator("threads", "checkpoint_every", mode="before")
    @classmethod
    def _positive_or_auto(cls, v: Any) -> Any:
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        raise ValueError("must be a positive integer (e.g. 1) or 'auto'")


class EvalConfig(_Strict):
    times: list[float] | None = None
    """Times at which S(t) is written; default: ``n_times`` quantiles of the cohort's event times."""
    n_times: int = Field(10, ge=2)
    horizons: list[float] = Field(default_factory=lambda: [12.0, 36.0, 60.0])
    bootstrap: int = Field(200, ge=0)
    """Bootstrap replicates for confidence intervals (0 = none)."""


Endpoint = Literal["os", "pfs", "dss", "multitask", "competing", "multistate"]


def resolve_head_name(endpoint: str, head: str) -> str:
    """The head class name built for ``head`` (``head.name`` in the config) under ``endpoint``.

    Single endpoints (os, pfs, dss) take the name as is but refuse the progression heads, which
    need outcomes those endpoints do not provide; progression endpoints map the name through their
    own table (:mod:`multimodal.survival.endpoints`) and refuse heads that cannot model them.
    """
    return get_endpoint(endpoint).head_name(head)


class Config(_Strict):
    """A complete experiment."""

    endpoint: Endpoint = "os"
    """``os``, ``pfs``, ``dss`` (one outcome), ``multitask`` (OS + PFS heads on one trunk),
    ``competing`` (progression vs death without progression) or ``multistate`` (illness-death:
    diagnosis -> progression -> death). See docs/progression.md."""
    data: DataConfig = Field(default_factory=DataConfig)
    encoders: dict[str, EncoderConfig] = Field(default_factory=dict)
    """Modality name (as in the cohort) -> encoder; modalities without one use the kind's default."""
    fusion: FusionConfig = Field(default_factory=FusionConfig)
    members: MembersConfig = Field(default_factory=MembersConfig)
    """Which members make up the risk (linear Cox terms, the deep residual) and how they combine."""
    head: HeadConfig = Field(default_factory=HeadConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    out: str | None = None
    """Run folder; ``--out`` on the CLI overrides it."""

    @field_validator("encoders", mode="before")
    @classmethod
    def _encoder_shorthand(cls, v: Any) -> Any:
        # allow ``encoders: {genomics: snn}`` as a shorthand for ``{genomics: {name: snn}}``
        if isinstance(v, dict):
            return {k: ({"name": e} if isinstance(e, str) else e) for k, e in v.items()}
        return v

    @model_validator(mode="after")
    def _endpoint_head(self) -> Config:
        resolve_head_name(self.endpoint, self.head.name)
        if self.members.linear and not self.members.clinical:
            raise ValueError(
                "members.linear needs members.clinical: true (each linear term is fitted beside "
                "the clinical covariates)"
            )
        return self

    @property
    def head_name(self) -> str:
        """The head class actually built (``head.name`` resolved for the endpoint)."""
        return resolve_head_name(self.endpoint, self.head.name)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _override_of(loc: tuple, overrides: list[str]) -> str | None:
    """The ``--set`` override that set the value at ``loc`` (or a section above it): the last
    one, as later overrides win; None when the value comes from the config itself."""
    path = [str(p) for p in loc]
    found = None
    for item in overrides:
        parts = _override_key(item)
        if parts and path[: len(parts)] == parts:
            found = item
    return found


def _format_validation_error(
    err: ValidationError, source: str, overrides: list[str] | None = None
) -> str:
    """The errors of a config, one line each. Errors in values that ``--set`` overrides set are
    blamed on them (named), not on the config ``source``."""
    overrides = list(overrides or [])
    errors = err.errors()
    blamed = [_override_of(e["loc"], overrides) if e["loc"] else None for e in errors]
    if overrides and all(blamed):
        named = list(dict.fromkeys(blamed))
        plural = "s" if len(named) > 1 else ""
        names = ", ".join(map(repr, named))
        lines = [f"invalid --set override{plural} {names} (applied to config {source}):"]
        blamed = [None] * len(errors)  # named once, above
    elif overrides:
        names = ", ".join(repr(o) for o in overrides)
        lines = [f"invalid config {source} with --set overrides {names}:"]
    else:
        lines = [f"invalid config {source}:"]
    lines += [
        _describe_error(e) + (f" (from --set {by!r})" if by else "")
        for e, by in zip(errors, blamed)
    ]
    return "\n".join(lines)


def _describe_error(e: Any) -> str:
    """The line of one pydantic error ``e``."""
    loc = ".".join(str(p) for p in e["loc"])
    if e["type"] == "extra_forbidden":
        moved = MOVED_KEYS.get(tuple(str(p) for p in e["loc"]))
        if moved:
            return (
                f"  {loc}: this key moved to {'.'.join(moved)} (the `members:` block; see "
                "docs/architecture.md)"
            )
        parent = _model_at(e["loc"][:-1])
        hint = did_you_mean(str(e["loc"][-1]), parent.model_fields) if parent else ""
        return f"  {loc}: unknown key.{hint}"
    if not loc:  # a check across keys (e.g. endpoint and head)
        return f"  {e['msg'].removeprefix('Value error, ')}"
    return f"  {loc}: {e['msg']} (got {e.get('input')!r})"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Config
    for part in loc:
        if model is None:
            return None
        field = model.model_fields.get(str(part))
        if field is None:  # inside a dict (encoders.<name>)
            model = EncoderConfig if model is Config else None
            continue
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        elif str(part) == "encoders":
            model = Config
        else:
            model = None
    return model


def _override_key(item: str) -> list[str]:
    """The key path of a ``key.sub=value`` override (``["key", "sub"]``; empty parts dropped)."""
    return [p for p in item.split("=", 1)[0].strip().split(".") if p]


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a raw config dict."""
    out = copy.deepcopy(raw)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(
                f"override {item!r} is not of the form key=value (e.g. train.epochs=2)"
            )
        value = item.split("=", 1)[1]
        parts = _override_key(item)
        if not parts:
            raise ConfigError(f"override {item!r} has an empty key")
        node = out
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {} if node.get(p) is None else node[p]
                if not isinstance(node[p], dict):
                    raise ConfigError(f"override {item!r}: {p!r} is not a section")
            node = node[p]
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
    return out


def read_yaml_mapping(
    path: Path, label: str, hint: str = "", mapping: str = "must hold a mapping at the top level"
) -> dict[str, Any]:
    """A YAML file that must hold a mapping (empty file -> ``{}``).

    Errors read ``"<label> <path> not found<hint>"``, ``"<label> <path> is not valid YAML: ..."``
    and ``"<label> <path> <mapping>"`` (:class:`ConfigError`).
    """
    if not path.is_file():
        raise ConfigError(f"{label} {path} not found{hint}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label} {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{label} {path} {mapping}")
    return raw


#: ``data`` keys that change how :meth:`multimodal.data.cohort.Cohort.load` reads a cohort.
_COHORT_KEYS = ("clinical_numeric", "clinical_categorical")


def cohort_options_of(config: Mapping[str, Any]) -> dict[str, list[str]]:
    """:meth:`DataConfig.cohort_options` of a config as a dict (a run folder's ``config.yaml``):
    the ``Cohort.load`` keywords that load a cohort as the run was trained on it."""
    data = config.get("data") or {}
    return {key: [str(c) for c in data[key]] for key in _COHORT_KEYS if data.get(key) is not None}


#: The provenance block of a run folder's ``config.yaml``
#: (:meth:`multimodal.runfolder.RunFolder.write_config`): not a setting.
_RUN_META = "_meta"


def load_config(
    source: str | Path | dict[str, Any] | Config, overrides: list[str] | None = None
) -> Config:
    """Build a :class:`Config` from a YAML path, a dict or a Config, then apply overrides.

    A run folder's ``config.yaml`` loads as any config: its ``_meta`` block (provenance written by
    ``multimodal train``) is dropped, with an info log. Every other unknown key is refused.
    A :class:`ConfigError` names the ``--set`` override whose value is invalid (an unknown key,
    a wrong type) rather than the config it was applied to.
    """
    if isinstance(source, Config):
        raw, where = source.to_dict(), "object"
    elif isinstance(source, dict):
        raw, where = source, "dict"
    else:
        path = Path(source)
        raw, where = read_yaml_mapping(path, "config file"), str(path)
    if isinstance(raw.get(_RUN_META), dict):
        log.info("config %s is a run's saved config: its %s block is not used", where, _RUN_META)
        raw = {k: v for k, v in raw.items() if k != _RUN_META}
    raw = apply_overrides(raw, overrides)
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, where, overrides)) from None


def upgrade_legacy_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A config dict of an earlier release with its moved keys in their new place.

    Used for run folders and ``best.yaml`` files written before the ``members:`` block existed
    (:data:`MOVED_KEYS`); a key present in both places keeps the new place's value. The input is
    not modified.
    """
    out = copy.deepcopy(raw)
    for (section, key), (new_section, new_key) in MOVED_KEYS.items():
        block = out.get(section)
        if isinstance(block, dict) and key in block:
            value = block.pop(key)
            target = out.setdefault(new_section, {}) or {}
            out[new_section] = target
            target.setdefault(new_key, value)
    return out

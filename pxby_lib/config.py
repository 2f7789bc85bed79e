"""params.yaml as typed configs: one dataclass per section, defined once, validated once.

Each section's fields carry their default, type and allowed values; `load_config` reads
params.yaml, applies a profile (an RFC 7386 JSON merge patch: mappings merge key by key,
`null` deletes, anything else replaces), validates everything and returns a `Config`.
A pipeline stage reads its parameters through `stage_config`, which exposes only the
sections the stage declares (`STAGE_PARAMS`, the same list as the stage's `params:` in
dvc.yaml: a test keeps the two equal), so DVC re-runs a stage exactly when something it
reads changes.

    python -m pxby_lib.config validate params.yaml [--profile profiles/smoke.yaml]
    python -m pxby_lib.config merge params.yaml profiles/smoke.yaml   # YAML on stdout
    python -m pxby_lib.config set-flags profiles/paper.yaml           # -S flags of dvc exp run

Adding a parameter: a field in its section's dataclass, its value in params.yaml, the
code that uses it, and (where a stage declares single keys of its section) the key in
STAGE_PARAMS and that stage's `params:`. Adding a dataset: an entry of `datasets` and
the `runs` that train rows on it; no code, no dvc.yaml.

Longer than the other modules (~520 lines) on purpose: it is the one place every
parameter is defined, and its sections share one validator; split by section, a new
parameter would again mean finding the right file among several.
"""

from __future__ import annotations

import argparse
import sys
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml


class ParamsError(ValueError):
    """A parameter is missing, unknown or out of range; the message names it and the fix."""


def param(default: Any, doc: str, check: Any = None) -> Any:
    """A config field: its default, a human description of what is allowed, a check."""
    return field(default=default, metadata={"doc": doc, "check": check})


def _nonneg(v) -> bool:
    return v >= 0


def _pos(v) -> bool:
    return v > 0


# ----------------------------------------------------------------------------- sections

FAMILIES = ("rnn", "transformer", "transformer_causal", "ssm")
EMBEDDINGS = ("pxby", "center")


@dataclass(frozen=True)
class ModelConfig:
    """One row of Table 1. d_model is the table's "input embedding D", d_state its "hidden
    state" (LSTM hidden size, or the Mamba state size N). For the transformers the
    direction and the state do not apply (the width is (D // 4) * 4)."""

    family: str  # 'rnn' | 'transformer' | 'transformer_causal' (not the paper's) | 'ssm'
    bidirectional: bool = True
    embedding: str = "pxby"  # 'pxby' | 'center'
    conv: bool = True  # gated 3x3 convolution inside PxByEmbed
    d_model: int = 81
    d_state: int = 64
    depth: int = 2
    vocab_size: int = 113

    def __post_init__(self) -> None:
        def bad(key: str, allowed: str) -> ValueError:
            value = getattr(self, key)
            return ValueError(f"ModelConfig: {key}={value!r} ({type(value).__name__}) is "
                              f"invalid; allowed: {allowed}")

        if self.family not in FAMILIES:
            raise bad("family", " | ".join(map(repr, FAMILIES)))
        if self.embedding not in EMBEDDINGS:
            raise bad("embedding", " | ".join(map(repr, EMBEDDINGS)))
        for key in ("bidirectional", "conv"):
            if not isinstance(getattr(self, key), bool):
                raise bad(key, "true or false (a YAML/JSON boolean, not a string)")
        minimum = {"d_model": 4 if self.family.startswith("transformer") else 1,
                   "d_state": 1, "depth": 1, "vocab_size": 1}
        for key, low in minimum.items():
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise bad(key, f"an integer >= {low}")
        if self.family == "rnn" and self.bidirectional and self.d_state % 2:
            raise bad("d_state", "an even integer for a bidirectional RNN (two halves)")
        if self.embedding == "center" and self.conv:
            raise bad("conv", "false with embedding 'center' (the conv is part of PxByEmbed)")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Validate a mapping (e.g. from params.yaml) into a config; ValueError names the fix."""
        if not isinstance(d, dict):
            raise ValueError(f"ModelConfig.from_dict: expected a mapping, got {type(d).__name__}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"ModelConfig: unknown key(s) {unknown}; allowed keys: {known}")
        if "family" not in d:
            raise ValueError(f"ModelConfig: missing key 'family'; allowed: {FAMILIES}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)



@dataclass(frozen=True)
class DataConfig:
    """`datasets.<name>`: what `prepare@<name>` builds, and how its items are split."""

    source: str = param("data/pokemon", "a snapshot folder (data/pokemon, data/emoji), a "
                        "folder of your images with a captions.csv or captions.jsonl "
                        "(pxby_lib.sources.folder), or a parquet file of the paper's dataset",
                        bool)
    max_size: int = param(25, "an integer in [2, 256], the longer image side (paper: 25)",
                          lambda v: 2 <= v <= 256)
    max_chars: int = param(630, "a positive integer, the caption length cap", _pos)
    test_fraction: float = param(0.1, "a number in (0, 1), the share of ITEMS held out per "
                                 "seed (paper: 0.1)", lambda v: 0 < v < 1)
    limit_items: int = param(0, "an integer >= 0: the first N items only (0 = all)", _nonneg)
    kmeans_seed: int = param(0, "an integer >= 0, the seed of the colour reduction (k-means "
                             "runs only on images with more than 55 colours)", _nonneg)


@dataclass(frozen=True)
class TrainConfig:
    """`train`: the schedule and the stopping rule (spec section 9; paper values noted)."""

    seq_len: int = param(256, "a positive integer, windows per sample (paper: 256)", _pos)
    sample_stride: int = param(32, "a positive integer, positions between sample starts "
                               "(paper: 32)", _pos)
    batch_size: int = param(32, "a positive integer (paper: 32)", _pos)
    max_epochs: int = param(200, "an integer >= 0, the cap (paper: 200 epochs, no stopping)",
                            _nonneg)
    patience: int = param(0, "an integer >= 0: stop after this many logged evaluations "
                          "without a new best test loss (0 = never stop early, the paper)",
                          _nonneg)
    lr: float = param(1e-3, "a positive number (paper: 0.001)", _pos)
    weight_decay: float = param(0.01, "a number >= 0 (paper: 0.01)", _nonneg)
    eval_every: int = param(5, "a positive integer, epochs between logged evaluations "
                            "(paper: 5)", _pos)


@dataclass(frozen=True)
class EvaluateConfig:
    """`evaluate`: the paper protocol's chunks and the generation (spec sections 10-11)."""

    prompt_len: int = param(64, "a positive integer (paper: 64)", _pos)
    gen_len: int = param(16, "a positive integer (paper: 16)", _pos)
    chunk_stride: int = param(80, "a positive integer, positions between chunk starts "
                              "(paper: 80)", _pos)
    max_items: int = param(0, "an integer >= 0: the paper protocol on a seeded subset of "
                           "this many items (0 = every item, the paper); the held-out "
                           "protocol always uses every test item", _nonneg)
    subset_seed: int = param(0, "an integer >= 0, the seed of that subset", _nonneg)
    batch_size: int = param(512, "a positive integer (chunks generated at once)", _pos)
    checkpoint: Literal["last", "best"] = param("last", "'last' (paper) or 'best'")
    sample_len: int = param(0, "an integer >= 0, positions of the sample item (0 = all)",
                            _nonneg)
    incremental: bool = param(True, "true (keep embeddings and causal states between steps: "
                              "same ids, faster) or false (re-run the whole model at every "
                              "step, the literal protocol)")
    next_positions: int = param(2000, "a positive integer: test positions per seed of the "
                                "held-out next-token metric (pxby_lib.nexttoken)", _pos)


@dataclass(frozen=True)
class BaselinesConfig:
    """`baselines`: zero-training rules scored by the models' own evaluation code."""

    names: tuple[str, ...] = param(("most_frequent", "copy", "count_pair", "count_window"),
                                   "baseline names of pxby_lib.baselines.BASELINES")
    alpha: float = param(1.0, "a positive number, the count models' smoothing strength "
                         "(pseudo-counts given to the backed-off distribution)", _pos)


@dataclass(frozen=True)
class ClaimsConfig:
    """`claims`: the verdict rule, fixed before any run (pxby_lib.claims)."""

    confidence: float = param(0.95, "a number in (0, 1), the level of every interval",
                              lambda v: 0 < v < 1)
    min_seeds: int = param(3, "an integer >= 2: a comparison needs this many seeds on each "
                           "side for a verdict", lambda v: v >= 2)
    margin_centre_acc: float = param(0.02, "a positive number: differences in held-out "
                                     "centre accuracy within +- this are 'no difference'", _pos)
    margin_bleu: float = param(0.02, "a positive number: the same for paper-protocol BLEU",
                               _pos)
    margin_next_nll: float = param(0.02, "a positive number: the same for the held-out "
                                   "next-token NLL (nats per token)", _pos)
    margin_next_acc: float = param(0.01, "a positive number: the same for the held-out "
                                   "next-token accuracy", _pos)
    bootstrap: int = param(2000, "a positive integer, resamples of the item bootstrap", _pos)
    bootstrap_seed: int = param(0, "an integer >= 0", _nonneg)


@dataclass(frozen=True)
class ComputeConfig:
    """`compute`: where runs go. Part of the numerics: the thread counts follow from it."""

    device: str = param("auto", "'auto', 'cpu', 'cuda' or 'cuda:N'",
                        lambda v: v in ("auto", "cpu") or v.startswith("cuda"))
    cores: int = param(2, "a positive integer: a stage runs its seeds in up to this many "
                       "worker processes, a training job with cores // workers threads "
                       "(a fixed number, not read off the machine: results depend on it)",
                       _pos)


@dataclass(frozen=True)
class ReportConfig:
    """`report`: what the paper's figures show."""

    reference: str = param("rnn_bi_pxby_conv_d81_s64_l2", "the name of a `models` row "
                           "(the paper's reference model; the interleaved Figure 1 shows its sample)", bool)


@dataclass(frozen=True)
class CompleteConfig:
    """`complete`: completions of test sprites by the best row of each track (issue 21):
    prompt = the shape and the top third of the sprite, the model writes the rest and the
    caption (pxby_lib.complete)."""

    temperature: float = param(1.0, "a positive number: the sampled completions' temperature "
                               "(1 = the model's own distribution; greedy ones are made too)",
                               _pos)
    sample_seed: int = param(0, "an integer >= 0: item k of run seed s samples with the "
                             "generator seeded sample_seed + 1000 s + k", _nonneg)
    max_items: int = param(0, "an integer >= 0: the first N test items of each seed only "
                           "(0 = every test item)", _nonneg)
    gallery: int = param(6, "a positive integer: test items in the report's gallery", _pos)


OBJECTIVES = ("last", "every")


def is_causal(model: ModelConfig) -> bool:
    """Its output at position t depends on windows 0..t only (pxby_lib.models.base)."""
    return model.family == "transformer_causal" or (
        model.family in ("rnn", "ssm") and not model.bidirectional)


@dataclass(frozen=True)
class RowConfig:
    """One `models` row: a Table 1 architecture, the seeds it is trained with, and its
    training objective: 'last' (the paper's: the cross-entropy of one target per sample,
    the token after its last window) or 'every' (the cross-entropy at every position of
    the sample, each predicting the next centre: causal models only). A row without
    `objective` is 'last'; the rows of one objective form a track of the report. A row
    may raise its cap (`max_epochs`, default `train.max_epochs`): the every-position
    track's rows do, so that the patience rule, not the cap, ends their runs."""

    name: str
    model: ModelConfig
    seeds: tuple[int, ...]
    objective: str = "last"
    max_epochs: int | None = None  # this row's cap, where it differs from train.max_epochs


@dataclass(frozen=True)
class RunConfig:
    """One `runs` entry: a `models` row trained and evaluated on one of the `datasets`.
    Its name, `<dataset>-<row>`, names its stages (`train@<name>`, `evaluate@<name>`)."""

    dataset: str
    row: str

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.row}"


SECTIONS: dict[str, type] = {"train": TrainConfig, "evaluate": EvaluateConfig,
                             "baselines": BaselinesConfig, "claims": ClaimsConfig,
                             "compute": ComputeConfig, "report": ReportConfig,
                             "complete": CompleteConfig}


@dataclass(frozen=True)
class Config:
    datasets: dict[str, DataConfig]
    seeds: tuple[int, ...]
    models: dict[str, RowConfig]
    runs: dict[str, RunConfig]
    train: TrainConfig
    evaluate: EvaluateConfig
    baselines: BaselinesConfig
    claims: ClaimsConfig
    compute: ComputeConfig
    report: ReportConfig
    complete: CompleteConfig

    def rows_of(self, dataset: str) -> list[RowConfig]:
        """The rows trained on `dataset` (its `runs`), in `models` order."""
        wanted = {r.row for r in self.runs.values() if r.dataset == dataset}
        return [r for n, r in self.models.items() if n in wanted]


# ----------------------------------------------------------------------------- validation


def _describe(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return f"a list of {typing.get_args(tp)[0].__name__}"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[tp]


def _coerce(tp: Any, value: Any, where: str, doc: str) -> Any:
    """value checked against type tp (int -> float allowed, list -> tuple)."""
    def fail() -> ParamsError:
        return ParamsError(f"{where} = {value!r} ({type(value).__name__}): expected "
                           f"{_describe(tp)}{'; ' + doc if doc else ''}")

    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise fail()
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise fail()
        inner = typing.get_args(tp)[0]
        return tuple(_coerce(inner, v, f"{where}[{i}]", "") for i, v in enumerate(value))
    if isinstance(value, bool) != (tp is bool):
        raise fail()
    if tp is float and isinstance(value, int):
        return float(value)
    if not isinstance(value, tp):
        raise fail()
    return value


def build_section(cls: type, values: Any, where: str) -> Any:
    """A section dataclass from a mapping: every field present, nothing unknown, checked."""
    if not isinstance(values, dict):
        raise ParamsError(f"{where}: must be a mapping of keys, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ParamsError(f"{where}: unknown key(s) {unknown}; allowed keys: {names}")
    missing = [n for n in names if n not in values]
    if missing:
        defaults = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
        raise ParamsError(f"{where}: missing key(s) {missing}; add them (defaults: "
                          f"{ {k: defaults.get(k) for k in missing} })")
    out = {}
    for f in fields(cls):
        doc, check = f.metadata.get("doc", ""), f.metadata.get("check")
        value = _coerce(hints[f.name], values[f.name], f"{where}.{f.name}", doc)
        if check is not None and not check(value):
            raise ParamsError(f"{where}.{f.name} = {value!r}: allowed {doc}")
        out[f.name] = value
    return cls(**out)


def _build_row(name: Any, spec: Any, seeds: tuple[int, ...]) -> RowConfig:
    if not _is_name(name):
        raise ParamsError(f"models: name {name!r} must be letters, digits and '_'")
    if not isinstance(spec, dict):
        raise ParamsError(f"models.{name}: must be a mapping of model settings")
    spec = dict(spec)
    row_seeds = _coerce(tuple[int, ...], spec.pop("seeds", list(seeds)), f"models.{name}.seeds",
                        "seeds this row is trained with (default: the top-level seeds)")
    max_epochs = spec.pop("max_epochs", None)
    if max_epochs is not None and (isinstance(max_epochs, bool) or not isinstance(max_epochs, int)
                                   or max_epochs < 0):
        raise ParamsError(f"models.{name}.max_epochs = {max_epochs!r}: an integer >= 0, this "
                          "row's cap (default: train.max_epochs)")
    objective = spec.pop("objective", "last")
    if objective not in OBJECTIVES:
        raise ParamsError(f"models.{name}.objective = {objective!r}: allowed 'last' (the "
                          "paper's, one target per sample) or 'every' (every position)")
    if not row_seeds or len(set(row_seeds)) != len(row_seeds) or min(row_seeds) < 0:
        raise ParamsError(f"models.{name}.seeds = {list(row_seeds)}: need distinct seeds >= 0")
    try:
        model = ModelConfig.from_dict(spec)
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"models.{name}: {exc}") from exc
    if objective == "every" and not is_causal(model):
        why = ("unmasked: every position sees the whole sample" if model.family == "transformer"
               else "bidirectional: every position sees the windows after it")
        raise ParamsError(f"models.{name}.objective = 'every' needs a causal model (an RNN or "
                          f"SSM with bidirectional: false, or transformer_causal); this one is "
                          f"{why}, so its targets would be in its input")
    return RowConfig(name, model, row_seeds, objective, max_epochs)


def _is_name(name: Any) -> bool:
    """Dataset and row names: letters, digits and '_' (a run's name joins them with '-')."""
    return isinstance(name, str) and name.replace("_", "").isalnum() and name.isascii()


def _build_runs(raw: Any, datasets: dict[str, DataConfig],
                models: dict[str, RowConfig]) -> dict[str, RunConfig]:
    if not isinstance(raw, dict) or not raw:
        raise ParamsError("runs: must be a non-empty mapping <dataset>-<row> -> "
                          "{dataset: ..., row: ...}")
    out = {}
    for name, spec in raw.items():
        where = f"runs.{name}"
        if not isinstance(spec, dict) or sorted(spec) != ["dataset", "row"]:
            raise ParamsError(f"{where}: must be {{dataset: <a key of datasets>, row: <a key "
                              f"of models>}}, got {spec!r}")
        run = RunConfig(**spec)
        if run.dataset not in datasets:
            raise ParamsError(f"{where}.dataset = {run.dataset!r} is not in `datasets` "
                              f"({list(datasets)})")
        if run.row not in models:
            raise ParamsError(f"{where}.row = {run.row!r} is not in `models` ({list(models)})")
        if name != run.name:
            raise ParamsError(f"runs: {name!r} must be named after its dataset and row: "
                              f"rename it {run.name!r}")
        out[name] = run
    return out


TOP_LEVEL = ("datasets", "seeds", "models", "runs", *SECTIONS)


def build_config(raw: Any) -> Config:
    """Validate a whole params mapping into a Config."""
    if not isinstance(raw, dict):
        raise ParamsError("params.yaml must be a mapping of sections")
    unknown = sorted(set(raw) - set(TOP_LEVEL))
    missing = [k for k in TOP_LEVEL if k not in raw]
    if unknown:
        raise ParamsError(f"unknown top-level key(s) {unknown}; allowed: {list(TOP_LEVEL)}")
    if missing:
        raise ParamsError(f"missing top-level key(s) {missing}")
    seeds = _coerce(tuple[int, ...], raw["seeds"], "seeds", "the seeds k of every row: seed k "
                    "sets the item split and the training seed")
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ParamsError(f"seeds = {raw['seeds']!r}: need a non-empty list of distinct "
                          "integers >= 0")
    if not isinstance(raw["models"], dict) or not raw["models"]:
        raise ParamsError("models: must be a non-empty mapping name -> model settings")
    models = {n: _build_row(n, s, seeds) for n, s in raw["models"].items()}
    if not isinstance(raw["datasets"], dict) or not raw["datasets"]:
        raise ParamsError("datasets: must be a non-empty mapping name -> dataset settings")
    bad = [n for n in raw["datasets"] if not _is_name(n)]
    if bad:
        raise ParamsError(f"datasets: name {bad[0]!r} must be letters, digits and '_'")
    datasets = {n: build_section(DataConfig, d, f"datasets.{n}") for n, d in raw["datasets"].items()}
    runs = _build_runs(raw["runs"], datasets, models)
    sections = {s: build_section(cls, raw[s], s) for s, cls in SECTIONS.items()}
    config = Config(datasets=datasets, seeds=seeds, models=models, runs=runs, **sections)
    if config.report.reference not in models:
        raise ParamsError(f"report.reference = {config.report.reference!r} is not a row of "
                          f"`models` ({list(models)})")
    return config


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: mappings merge recursively, None deletes, else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _read_yaml(path: str | Path) -> Any:
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path} not found (run from the repository root)") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from exc


def load_raw(params_file: str | Path, profile: str | Path | None = None) -> dict:
    raw = _read_yaml(params_file)
    if profile:
        raw = merge_patch(raw, _read_yaml(profile) or {})
    return raw


def load_config(params_file: str | Path = "params.yaml", profile: str | Path | None = None) -> Config:
    """params.yaml (with a profile's overrides) as a validated Config."""
    raw = load_raw(params_file, profile)
    try:
        return build_config(raw)
    except ParamsError as exc:
        raise ParamsError(f"{params_file}{' + ' + str(profile) if profile else ''}: {exc}") from None


# ----------------------------------------------------------------------------- stages

# What each stage reads: the same entries as its `params:` in dvc.yaml ({dataset} and
# {row} are the stage's own), a whole section or single keys of it. tests/test_project.py
# keeps the two equal, and StageConfig refuses anything else at run time.
_EVALUATE_CHUNKS = tuple(f"evaluate.{k}" for k in ("prompt_len", "gen_len", "chunk_stride",
                                                   "max_items", "subset_seed", "batch_size",
                                                   "incremental", "next_positions"))
STAGE_PARAMS: dict[str, tuple[str, ...]] = {
    "prepare": tuple(f"datasets.{{dataset}}.{k}" for k in ("source", "max_size", "max_chars",
                                                         "limit_items", "kmeans_seed")),
    "baselines": ("datasets.{dataset}.test_fraction", "seeds", "train.seq_len",
                  "train.sample_stride", *_EVALUATE_CHUNKS, "baselines"),
    "train": ("datasets.{dataset}.test_fraction", "seeds", "models.{row}", "train", "compute"),
    "evaluate": ("datasets.{dataset}.test_fraction", "seeds", "models.{row}", "train.seq_len",
                 "evaluate", "compute.device"),
    # the best row of each track (held-out next-token NLL) and count_window complete sprites
    "complete": ("datasets.{dataset}.test_fraction", "seeds", "models", "runs", "train.seq_len",
                 "baselines.alpha", "claims.min_seeds", "complete", "compute.device"),
    "report": ("datasets.{dataset}", "seeds", "models", "runs", "train", "evaluate",
               "baselines.names", "claims", "report", "complete"),
    # the tour notebook: one test item, the picked checkpoints' completions, the verdicts
    "tour": ("datasets.{dataset}.test_fraction", "complete.temperature"),
}
# Read by any stage without being declared: how many worker processes run a stage's seeds
# at once, which changes no byte of its outputs (each job's thread count does: the train
# stage, whose threads per job follow from it, declares `compute` whole).
UNDECLARED = frozenset({"compute.cores"})


class Declared:
    """A section (or a dataset's settings) as a stage may read it: the declared keys only.
    `to_dict()` gives those keys (what a worker job is passed)."""

    def __init__(self, section: Any, keys: frozenset[str], stage: str, where: str):
        self._section, self._keys, self._stage, self._where = section, keys, stage, where

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        if key not in self._keys:
            raise ParamsError(f"stage {self._stage!r} reads `{self._where}.{key}`, which it does "
                              f"not declare: add it to STAGE_PARAMS[{self._stage!r}] and to the "
                              "stage's params in dvc.yaml")
        return getattr(self._section, key)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self._section, k) for k in sorted(self._keys)}


class StageConfig:
    """The parameters one stage may read: `.dataset` (its DataConfig), `.row` (its
    RowConfig, train/evaluate stages), `.rows` (the rows run on its dataset), and the
    sections (or keys) it declares. Reading anything else raises: the stage would not
    re-run when it changed."""

    def __init__(self, config: Config, stage: str, dataset: str, row: str | None = None):
        if stage not in STAGE_PARAMS:
            raise ParamsError(f"unknown stage {stage!r}; stages: {list(STAGE_PARAMS)}")
        if dataset not in config.datasets:
            raise ParamsError(f"dataset {dataset!r} is not in `datasets` ({list(config.datasets)})")
        declared = [p.format(dataset=dataset, row=row) for p in STAGE_PARAMS[stage]]
        if "models.{row}" in STAGE_PARAMS[stage]:
            if row not in config.models:
                raise ParamsError(f"stage {stage}: row {row!r} is not in `models` "
                                  f"({list(config.models)})")
            if f"{dataset}-{row}" not in config.runs:
                raise ParamsError(f"row {row!r} is not run on dataset {dataset!r}: add "
                                  f"`{dataset}-{row}: {{dataset: {dataset}, row: {row}}}` to `runs`")
        self._config, self.stage, self.dataset_name, self.row_name = config, stage, dataset, row
        self._declared = set(declared) | set(UNDECLARED)

    def _view(self, path: str, value: Any) -> Any:
        """`value` (at dotted `path`) whole if declared whole, else a view of its declared keys."""
        if path in self._declared or any(path.startswith(d + ".") for d in self._declared):
            return value
        keys = frozenset(d[len(path) + 1:] for d in self._declared
                         if d.startswith(path + ".") and "." not in d[len(path) + 1:])
        if not keys:
            raise ParamsError(f"stage {self.stage!r} reads `{path}`, which it does not declare: "
                              f"add it to STAGE_PARAMS[{self.stage!r}] and to the stage's params "
                              "in dvc.yaml")
        return Declared(value, keys, self.stage, path)

    @property
    def dataset(self) -> DataConfig:
        return self._view(f"datasets.{self.dataset_name}", self._config.datasets[self.dataset_name])

    @property
    def row(self) -> RowConfig:
        if self.row_name is None:
            raise ParamsError(f"stage {self.stage!r} has no row")
        return self._view(f"models.{self.row_name}", self._config.models[self.row_name])

    @property
    def rows(self) -> list[RowConfig]:
        self._view("runs", None)
        return [self._view(f"models.{r.name}", r) for r in self._config.rows_of(self.dataset_name)]

    def __getattr__(self, section: str) -> Any:
        if section.startswith("_") or section not in TOP_LEVEL:
            raise AttributeError(section)
        return self._view(section, getattr(self._config, section))


def stage_config(stage: str, params_file: str | Path, profile: str | Path | None = None, *,
                 dataset: str = "pokemon", row: str | None = None) -> StageConfig:
    """What a notebook calls first: its stage's view of params.yaml (+ profile)."""
    from pxby_lib.runtime import resolve

    return StageConfig(load_config(resolve(params_file), resolve(profile) if profile else None),
                       stage, dataset, row)


# ----------------------------------------------------------------------------- command line


def set_flags(patch: Any, prefix: str = "") -> list[str]:
    """`-S key=value` flags of `dvc exp run` that apply a merge patch (no deletions)."""
    flags = []
    for key, value in patch.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flags += set_flags(value, f"{name}.")
        elif value is None:
            raise ParamsError(f"{name}: `dvc exp run -S` cannot delete a key; remove it from "
                              "the profile")
        else:
            flags.append(f"-S {name}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}")
    return flags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pxby_lib.config", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("validate", help="check params.yaml (+ profile); exit 2 if bad")
    check.add_argument("params", nargs="?", default="params.yaml")
    check.add_argument("--profile")
    merge = commands.add_parser("merge", help="params.yaml with a profile applied, as YAML")
    merge.add_argument("params")
    merge.add_argument("profile")
    flags = commands.add_parser("set-flags", help="a profile as `dvc exp run -S` flags")
    flags.add_argument("profile")
    args = parser.parse_args(argv)
    try:
        if args.command == "validate":
            config = load_config(args.params, args.profile)
            n_runs = sum(len(config.models[r.row].seeds) for r in config.runs.values())
            print(f"{args.params}: ok ({len(config.models)} rows, {len(config.datasets)} "
                  f"datasets, {len(config.runs)} runs: {n_runs} trainings over seeds)")
        elif args.command == "merge":
            merged = load_raw(args.params, args.profile)
            build_config(merged)
            print(yaml.safe_dump(merged, sort_keys=False, width=120), end="")
        else:
            print(" ".join(set_flags(_read_yaml(args.profile) or {})))
    except ParamsError as exc:
        print(f"invalid parameters: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

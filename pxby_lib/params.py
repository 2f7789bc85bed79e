"""params.yaml: one schema, checked before any work starts.

`python -m pxby_lib.params [params.yaml]` validates the whole file (exit 2 with a
message naming the key and the allowed values); `make repro` runs it before `dvc repro`.
Every notebook also checks its own injected parameters with `check_section`, so a bad
value passed by hand to papermill fails in the first cell, not after an hour of training.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ParamsError(ValueError):
    pass


@dataclass(frozen=True)
class Field:
    type: type | tuple[type, ...]
    check: Any = None  # callable(value) -> bool
    allowed: str = ""  # human text for the error

    def validate(self, section: str, key: str, value: Any) -> Any:
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        ok_type = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok_type:
            names = " or ".join(t.__name__ for t in types)
            raise ParamsError(f"{section}.{key} = {value!r} ({type(value).__name__}): expected "
                              f"{names}{'; ' + self.allowed if self.allowed else ''}")
        if self.check is not None and not self.check(value):
            raise ParamsError(f"{section}.{key} = {value!r}: allowed {self.allowed}")
        return value


def _pos(v):
    return v > 0


def _nonneg(v):
    return v >= 0


SCHEMA: dict[str, dict[str, Field]] = {
    "data": {
        "source": Field(str, lambda v: bool(v), "a folder like data/pokemon or a parquet path"),
        "max_size": Field(int, lambda v: 2 <= v <= 256, "an integer in [2, 256] (paper: 25)"),
        "max_chars": Field(int, _pos, "a positive integer (caption length cap)"),
        "test_fraction": Field(float, lambda v: 0 < v < 1, "a number in (0, 1) (paper: 0.1)"),
        "seed": Field(int, _nonneg, "an integer >= 0"),
        "limit_items": Field(int, _nonneg, "an integer >= 0 (0 = all items)"),
    },
    "train": {
        "seq_len": Field(int, _pos, "a positive integer (paper: 256)"),
        "stride": Field(int, _pos, "a positive integer (paper: 32)"),
        "batch_size": Field(int, _pos, "a positive integer (paper: 32)"),
        "epochs": Field(int, _nonneg, "an integer >= 0 (paper: 200)"),
        "lr": Field(float, _pos, "a positive number (paper: 0.001)"),
        "weight_decay": Field(float, _nonneg, "a number >= 0 (paper: 0.01)"),
        "eval_every": Field(int, _pos, "a positive integer (paper: 5)"),
        "seed": Field(int, _nonneg, "an integer >= 0"),
        "device": Field(str, lambda v: v in ("auto", "cpu") or v.startswith("cuda"),
                        "'auto', 'cpu', 'cuda' or 'cuda:N'"),
    },
    "evaluate": {
        "prompt_len": Field(int, _pos, "a positive integer (paper: 64)"),
        "gen_len": Field(int, _pos, "a positive integer (paper: 16)"),
        "chunk_stride": Field(int, _pos, "a positive integer (paper: 80)"),
        "max_items": Field(int, _nonneg, "an integer >= 0 (0 = every item, as the paper)"),
        "batch_size": Field(int, _pos, "a positive integer (chunks generated at once)"),
        "checkpoint": Field(str, lambda v: v in ("last", "best"), "'last' (paper) or 'best'"),
        "sample_len": Field(int, _nonneg, "an integer >= 0 (positions of the sample item; 0 = all)"),
        "seed": Field(int, _nonneg, "an integer >= 0"),
        "incremental": Field(bool, None, "true (keep embeddings and causal states between "
                             "steps: same ids, faster) or false (re-run the whole model "
                             "at every step, the literal protocol)"),
    },
}


def check_section(section: str, values: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
    """Validate one section; unknown and (unless `partial`) missing keys are errors."""
    if section not in SCHEMA:
        raise ParamsError(f"unknown section {section!r}; allowed: {sorted(SCHEMA)}")
    schema = SCHEMA[section]
    unknown = sorted(set(values) - set(schema))
    if unknown:
        raise ParamsError(f"{section}: unknown key(s) {unknown}; allowed keys: {sorted(schema)}")
    missing = sorted(set(schema) - set(values))
    if missing and not partial:
        raise ParamsError(f"{section}: missing key(s) {missing}")
    return {k: schema[k].validate(section, k, v) for k, v in values.items()}


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """Validate a whole params.yaml mapping; returns it with numbers normalised."""
    from .models import ModelConfig

    if not isinstance(params, dict):
        raise ParamsError("params.yaml must be a mapping of sections")
    allowed = set(SCHEMA) | {"models"}
    unknown = sorted(set(params) - allowed)
    missing = sorted(allowed - set(params))
    if unknown:
        raise ParamsError(f"unknown top-level key(s) {unknown}; allowed: {sorted(allowed)}")
    if missing:
        raise ParamsError(f"missing top-level key(s) {missing}")
    out = {s: check_section(s, params[s] or {}) for s in SCHEMA}
    models = params["models"]
    if not isinstance(models, dict) or not models:
        raise ParamsError("models: must be a non-empty mapping name -> model settings")
    out["models"] = {}
    for name, cfg in models.items():
        if not isinstance(name, str) or not name.replace("_", "").isalnum():
            raise ParamsError(f"models: name {name!r} must be letters, digits and '_'")
        try:
            out["models"][name] = ModelConfig.from_dict(cfg or {}).to_dict()
        except (TypeError, ValueError) as exc:
            raise ParamsError(f"models.{name}: {exc}") from exc
    return out


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path} not found (run from the repository root)") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from exc
    return check_params(raw)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0] if argv else "params.yaml"
    try:
        params = load_params(path)
    except ParamsError as exc:
        print(f"{path}: invalid parameters: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: ok ({len(params['models'])} models, {params['train']['epochs']} epochs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def repo_root(start: str | Path | None = None) -> Path:
    """The folder holding dvc.yaml, searched upwards (notebooks run from notebooks/)."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists():
            return folder
    return here


def resolve(path: str | Path, root: Path | None = None) -> Path:
    """A repository-relative path made absolute (absolute paths pass through)."""
    path = Path(path)
    return path if path.is_absolute() else (root or repo_root()) / path

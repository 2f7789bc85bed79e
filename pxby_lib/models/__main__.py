"""Print the models of params.yaml with their parameter counts.

    python -m pxby_lib.models [--params params.yaml]

One row per entry under the `models:` key (a mapping name -> ModelConfig settings):
name, family, direction, embedding, conv, D, state, depth, parameters.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import yaml

from . import ModelConfig, build_model, count_parameters


def model_rows(models: dict) -> list[dict]:
    """One table row per named model config (validated; ValueError names the model)."""
    rows = []
    for name, settings in models.items():
        try:
            cfg = ModelConfig.from_dict(settings or {})
        except ValueError as err:
            raise ValueError(f"models.{name}: {err}") from err
        attention = cfg.family.startswith("transformer")
        rows.append({
            "name": name,
            "family": cfg.family,
            "direction": "-" if attention else ("Bi" if cfg.bidirectional else "Uni"),
            "embedding": {"pxby": "PxBy", "center": "Center"}[cfg.embedding],
            "conv": "Y" if cfg.conv else "N",
            "D": cfg.d_model,
            "state": "-" if attention else cfg.d_state,
            "depth": cfg.depth,
            "parameters": count_parameters(build_model(cfg)),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pxby_lib.models", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="YAML file with a `models:` mapping (default: params.yaml)")
    args = parser.parse_args(argv)
    if not args.params.is_file():
        print(f"error: {args.params} not found; pass --params PATH to a YAML file with a "
              "`models:` mapping", file=sys.stderr)
        return 2
    params = yaml.safe_load(args.params.read_text()) or {}
    models = params.get("models") if isinstance(params, dict) else None
    if not isinstance(models, dict) or not models:
        print(f"error: {args.params} has no `models:` mapping (name -> model settings)",
              file=sys.stderr)
        return 2
    try:
        rows = model_rows(models)
    except ValueError as err:
        print(f"error: {args.params}: {err}", file=sys.stderr)
        return 2
    table = pd.DataFrame(rows)
    try:
        print(table.to_markdown(index=False))
    except ImportError:  # tabulate not installed
        print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

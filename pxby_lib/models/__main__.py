"""Print the rows of params.yaml with their parameter counts.

    python -m pxby_lib.models [--params params.yaml] [--profile profiles/smoke.yaml]

One line per entry under `models:` (validated by `pxby_lib.config`, like every stage):
name, family, direction, embedding, conv, D, state, depth, seeds, parameters.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from pxby_lib.config import ParamsError, RowConfig, load_config

from . import build_model, count_parameters


def model_rows(rows: dict[str, RowConfig]) -> list[dict]:
    """One table line per row of the config."""
    lines = []
    for name, row in rows.items():
        cfg = row.model
        attention = cfg.family.startswith("transformer")
        lines.append({
            "name": name,
            "family": cfg.family,
            "direction": "-" if attention else ("Bi" if cfg.bidirectional else "Uni"),
            "embedding": {"pxby": "PxBy", "center": "Center"}[cfg.embedding],
            "conv": "Y" if cfg.conv else "N",
            "D": cfg.d_model,
            "state": "-" if attention else cfg.d_state,
            "depth": cfg.depth,
            "seeds": " ".join(str(s) for s in row.seeds),
            "parameters": count_parameters(build_model(cfg)),
        })
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pxby_lib.models", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="the params file (default: params.yaml)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="a profile merged over it (e.g. profiles/smoke.yaml)")
    args = parser.parse_args(argv)
    if not args.params.is_file():
        print(f"error: {args.params} not found; pass --params PATH to a params.yaml",
              file=sys.stderr)
        return 2
    try:
        config = load_config(args.params, args.profile)
    except (ParamsError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = pd.DataFrame(model_rows(config.models))
    try:
        print(table.to_markdown(index=False))
    except ImportError:  # tabulate not installed
        print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

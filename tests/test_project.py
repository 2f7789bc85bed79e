"""The project's promises about itself: environment files agree, notebooks are clean and
take exactly the parameters dvc.yaml injects, DVC is configured quietly, params validate."""

from __future__ import annotations

import ast
import configparser
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _pyproject_requirements() -> dict[str, str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = meta["dependencies"] + meta["optional-dependencies"]["dev"]
    return {Requirement(r).name.lower(): str(Requirement(r).specifier) for r in reqs}


def _environment_requirements() -> tuple[dict[str, str], list[str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    found, pip_lines = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip_lines = dep["pip"]
            continue
        name, spec = re.match(r"^([A-Za-z0-9_.\-]+)(.*)$", dep.split("#")[0].strip()).groups()
        found[name.lower()] = spec.strip().replace("=", "==", 1) if spec.startswith("=") and not spec.startswith("==") else spec.strip()
    for line in pip_lines:
        line = line.split("#")[0].strip()
        if not line.startswith("-e"):
            r = Requirement(line)
            found[r.name.lower()] = str(r.specifier)
    return found, pip_lines


def test_environment_yml_matches_pyproject():
    wanted = _pyproject_requirements()
    found, pip_lines = _environment_requirements()
    assert found.pop("python") == "==3.11"
    found.pop("pip")
    assert "nodejs" in found, "the data build needs npm"
    found.pop("nodejs")
    assert "cxx-compiler" in found, "the native scan is built with a C++ compiler"
    found.pop("cxx-compiler")
    missing = sorted(set(wanted) - set(found))
    extra = sorted(set(found) - set(wanted))
    assert not missing and not extra, f"environment.yml vs pyproject: missing {missing}, extra {extra}"
    for name, spec in wanted.items():
        assert set(found[name].split(",")) == set(spec.split(",")), f"{name}: {found[name]!r} != {spec!r}"
    assert any(line.strip().startswith("-e .") for line in pip_lines), "pip section must install this package"


def test_torch_is_pinned_exactly():
    assert _pyproject_requirements()["torch"] == "==2.13.0"


def test_dvc_config_is_quiet():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / ".dvc" / "config")
    assert cfg["core"]["analytics"] == "false"
    assert cfg["core"]["check_update"] == "false"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c.get("outputs") or c.get("execution_count")]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


def _parameter_names(path: Path) -> set[str]:
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{path.name}: exactly one cell must be tagged 'parameters'"
    src = "".join(cells[0]["source"])
    return {t.id for node in ast.parse(src).body if isinstance(node, ast.Assign) for t in node.targets}


def _injected(cmd: str, variables: dict) -> set[str]:
    for name, value in variables.items():  # ${pass} etc. expand to -p flags
        cmd = cmd.replace("${" + name + "}", value)
    return set(re.findall(r"-p (\w+) ", cmd)) | set(re.findall(r'-y "(\w+):', cmd))


def test_dvc_stages_inject_only_declared_notebook_parameters():
    pipeline = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    stages = pipeline["stages"]
    variables = {k: v for d in pipeline["vars"] for k, v in d.items()}
    assert "-k python3" in variables["nb"]
    seen = set()
    for name, stage in stages.items():
        cmd = stage.get("do", stage)["cmd"]
        nb = re.search(r"(notebooks/\S+\.ipynb)", cmd).group(1)
        seen.add(nb)
        declared = _parameter_names(ROOT / nb)
        injected = _injected(cmd, variables)
        assert injected <= declared, f"stage {name}: {sorted(injected - declared)} not in {nb}'s parameters cell"
        assert {"params_file", "profile", "root", "dataset"} <= injected, name
        assert "${nb}" in cmd and "${strip}" in cmd, f"stage {name}: papermill via ${{nb}}, then ${{strip}}"
    assert seen == {str(p.relative_to(ROOT)) for p in NOTEBOOKS}


def test_every_stage_declares_exactly_the_params_it_reads():
    """dvc.yaml's `params:` of a stage == config.STAGE_PARAMS of its kind, and the notebook
    reads its parameters only through `stage_config` of that kind (StageConfig refuses the
    sections and keys a stage does not declare, at run time). One stage per kind: over
    `datasets` (prepare, baselines, report) or over `runs` (train, evaluate)."""
    from pxby_lib.config import STAGE_PARAMS

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(STAGE_PARAMS), "one stage per kind, each declared once"
    for kind, stage in stages.items():
        per_run = kind in ("train", "evaluate")
        assert stage["foreach"] == ("${runs}" if per_run else "${datasets}"), kind
        body = stage["do"]
        dataset = "${item.dataset}" if per_run else "${key}"
        expected = [p.format(dataset=dataset, row="${item.row}") for p in STAGE_PARAMS[kind]]
        assert body["params"] == expected, f"stage {kind}: params {body['params']} != {expected}"
        nb = re.search(r"(notebooks/\S+\.ipynb)", body["cmd"]).group(1)
        code = "".join("".join(c["source"]) for c in json.loads((ROOT / nb).read_text())["cells"])
        assert f'stage_config("{kind}"' in code, f"{nb} must read its params via stage_config({kind!r})"


def test_params_and_profiles_are_valid():
    from pxby_lib.config import load_config, load_raw

    main = load_config(ROOT / "params.yaml")
    assert sum(r.objective == "last" for r in main.models.values()) == 15 and main.seeds == (0, 1, 2)
    every = [r for r in main.models.values() if r.objective == "every"]
    assert len(every) == 5 and all(len(r.seeds) == 5 for r in every if r.model.family == "rnn")
    # every row with fewer than 3 seeds is one of the costly ones the issue allows
    assert {n for n, r in main.models.items() if len(r.seeds) < 3} == {
        "ssm_bi_pxby_conv_d81_s64_l2", "ssm_uni_pxby_conv_d81_s64_l2", "att_pxby_conv_d81_l2"}
    smoke = load_config(ROOT / "params.yaml", ROOT / "profiles" / "smoke.yaml")
    families = {r.model.family for r in smoke.models.values()}
    assert families == {"rnn", "ssm", "transformer"} and smoke.compute.cores == 1
    assert any(len(r.seeds) >= 3 for r in smoke.models.values())  # verdicts are reached
    assert any(len(r.seeds) < 3 for r in smoke.models.values())  # and "no verdict" too
    paper = load_config(ROOT / "params.yaml", ROOT / "profiles" / "paper.yaml")
    assert (paper.train.seq_len, paper.train.sample_stride, paper.train.max_epochs,
            paper.train.patience, paper.train.eval_every, paper.evaluate.max_items) == (256, 32, 200, 0, 5, 0)
    # profiles are patches: they name only what they change
    for profile in ("smoke", "paper"):
        patch = yaml.safe_load((ROOT / "profiles" / f"{profile}.yaml").read_text())
        raw = load_raw(ROOT / "params.yaml")
        assert set(patch) <= set(raw)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p["models"]["rnn_bi_pxby_conv_d81_s64_l2"].update(family="gru"), "family"),
    (lambda p: p["train"].update(max_epochs=-1), "train.max_epochs"),
    (lambda p: p["train"].pop("sample_stride"), "sample_stride"),
    (lambda p: p["train"].update(batch_size="32"), "train.batch_size"),
    (lambda p: p["train"].update(patiences=2), "unknown key(s) ['patiences']"),
    (lambda p: p["evaluate"].update(checkpoint="first"), "evaluate.checkpoint"),
    (lambda p: p["datasets"]["pokemon"].update(test_fraction=1.5), "datasets.pokemon.test_fraction"),
    (lambda p: p["models"]["att_pxby_conv_d81_l1"].update(depth=0), "depth"),
    (lambda p: p["models"]["att_pxby_conv_d81_l1"].update(seeds=[1, 1]), "distinct seeds"),
    (lambda p: p["runs"].update({"emoji-gru_x": {"dataset": "emoji", "row": "gru_x"}}),
     "runs.emoji-gru_x.row = 'gru_x' is not in `models`"),
    (lambda p: p["runs"].update({"mine-att_pxby_conv_d81_l1": {"dataset": "mine", "row": "att_pxby_conv_d81_l1"}}),
     "runs.mine-att_pxby_conv_d81_l1.dataset = 'mine' is not in `datasets`"),
    (lambda p: p["runs"].update({"emoji-att": {"dataset": "emoji", "row": "att_pxby_conv_d81_l1"}}),
     "rename it 'emoji-att_pxby_conv_d81_l1'"),
    (lambda p: p["datasets"].update({"my-art": p["datasets"]["emoji"]}), "name 'my-art' must be"),
    (lambda p: p["report"].update(reference="nope"), "report.reference"),
])
def test_bad_params_are_rejected_before_work(tmp_path, edit, message):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(params)
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(params))
    run = subprocess.run([sys.executable, "-m", "pxby_lib.config", "validate", str(bad)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2
    assert message in run.stderr, run.stderr


def test_papermill_parameters_are_injected_as_literals_never_code():
    """A parameter value (e.g. a path taken from data or a user) cannot run code in the
    notebook: papermill writes it as a Python literal, which we parse back to check."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(ROOT / "notebooks" / "01_prepare_data.ipynb"))
    evil = 'data"; import os; os.system("touch /tmp/pwned"); x = "\n__import__("os")'
    out = parameterize_notebook(nb, {"source": evil, "limit_items": 3}, kernel_name="python3",
                                language="python")
    injected = next(c for c in out.cells if "injected-parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse(injected.source)
    values = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
              if isinstance(node, ast.Assign)}
    assert values == {"source": evil, "limit_items": 3}
    assert all(isinstance(node, ast.Assign) for node in tree.body)


def _pxby_imports(source: str, package: str = "pxby_lib") -> set[str]:
    """Dotted pxby_lib modules that `source` imports (anywhere, relative imports resolved
    against `package`)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("pxby_lib")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.startswith("pxby_lib"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}  # `from pxby_lib import x`
    return found


def _module_files(dotted: str) -> list[Path]:
    """Files of a dotted module, with the __init__.py of every package on the way."""
    parts, files = dotted.split("."), []
    for i in range(1, len(parts) + 1):
        path = ROOT.joinpath(*parts[:i])
        if path.with_suffix(".py").is_file():
            files.append(path.with_suffix(".py"))
        elif (path / "__init__.py").is_file():
            files.append(path / "__init__.py")
    return files


def test_every_stage_depends_on_the_code_its_notebook_runs():
    # what a stage imports, transitively, must be a DVC dependency: otherwise a change to
    # that code would not re-run the stage and its outputs would silently go stale. The
    # package's __init__ (it pins the numerics) is imported by every notebook's first line.
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        stage = stage.get("do", stage)
        deps = [ROOT / d for d in stage["deps"]]
        notebook = next(d for d in deps if d.suffix == ".ipynb")
        cells = json.loads(notebook.read_text())["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        todo, files = _pxby_imports(source), set()
        while todo:
            for path in _module_files(todo.pop()):
                if path not in files:
                    files.add(path)
                    package = ".".join(path.parent.relative_to(ROOT).parts)
                    todo |= _pxby_imports(path.read_text(), package)
        missing = sorted(str(f.relative_to(ROOT)) for f in files
                         if not any(f == d or d in f.parents for d in deps))
        assert not missing, f"stage {name!r} runs code it does not list in deps: {missing}"
        # and no more than that (plus the notebook stripper its command runs): an edit to
        # code a stage does not run must not re-run it (the raw-data builder: prepare only)
        code = {d for d in deps if "pxby_lib" in d.parts} - {ROOT / "pxby_lib/notebooks.py",
                                                             ROOT / "pxby_lib/paper_table1.csv"}
        extra = sorted(str(d.relative_to(ROOT)) for d in code
                       if not any(f == d or d in f.parents for f in files))
        assert not extra, f"stage {name!r} lists code it does not run: {extra}"
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    train_deps = stages["train"]["do"]["deps"]
    assert "pxby_lib/sources" not in train_deps and "pxby_lib/prepare.py" not in train_deps
    evaluate_deps = stages["evaluate"]["do"]["deps"]  # the evaluate stage: no trainer, no baselines
    assert "pxby_lib/train.py" not in evaluate_deps and "pxby_lib/baselines.py" not in evaluate_deps


def test_licence_and_citation():
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License") and "CC-BY 4.0" in licence and "Nintendo" in licence
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "MIT"
    assert "2409.15512" in json.dumps(citation["preferred-citation"])


def _bold_verdicts(cells: list[str]) -> list[str]:
    return [m.group(1) if (m := re.match(r"\s*\*\*([a-z ]+)\*\*", c)) else "" for c in cells]


def test_readme_quotes_the_committed_verdicts():
    """The README's verdict table says, per claim, dataset and track, what
    reports/<ds>/claims.md says (the first bold word of each cell); a re-run that changes a
    verdict fails here until the README is updated. Columns: Pokemon paper track, Pokemon
    every-position track, emoji paper track, emoji every-position track."""
    committed = {}
    for ds in ("pokemon", "emoji"):
        path = ROOT / "reports" / ds / "claims.md"
        for line in path.read_text().splitlines():
            if m := re.match(r"\| (C\d): [^|]*\| [^|]*\| \*\*([a-z ]+)\*\*[^|]*\| \*\*([a-z ]+)\*\*", line):
                committed[ds, "last", m.group(1)], committed[ds, "every", m.group(1)] = m.group(2), m.group(3)
            if m := re.match(r"C8 \(.*\): \*\*([a-z ]+)\*\*", line):
                committed[ds, "both", "C8"] = m.group(1)
    readme = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        if m := re.match(r"\| (C\d) ", line):
            cells = _bold_verdicts(line.strip().strip("|").split("|")[2:6])
            if m.group(1) == "C8":
                readme["pokemon", "both", "C8"], readme["emoji", "both", "C8"] = cells[1], cells[3]
                continue
            for (ds, track), word in zip([("pokemon", "last"), ("pokemon", "every"),
                                          ("emoji", "last"), ("emoji", "every")], cells, strict=True):
                readme[ds, track, m.group(1)] = word
    assert len(committed) == 30, "reports/<ds>/claims.md lacks C1-C7 of a track, or C8"
    assert readme == committed


def test_the_readme_and_docs_quote_the_report_tables_verbatim():
    """The README's verdict table and docs/results.md's Table 1 of each dataset are what
    scripts/results_tables.py prints from the committed reports: a re-run that changes a
    number fails here until the docs are regenerated."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("results_tables", ROOT / "scripts" / "results_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    assert tables.verdicts() in (ROOT / "README.md").read_text()
    results = (ROOT / "docs" / "results.md").read_text()
    for ds in ("pokemon", "emoji"):
        assert tables.table1(ds) in results, f"docs/results.md: Table 1 of {ds} is not the report's"


def test_readme_is_a_front_page_that_cites_nothing_a_reader_lacks():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for doc in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        assert not re.search(r"\bspec(ification)? section", doc.read_text(), re.I), doc.name
    for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), f"README links to {link}, which does not exist"

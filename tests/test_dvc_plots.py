"""`dvc plots show` renders offline: the vendored template inlines vega, vega-lite and
vega-embed, so the page loads no script from the network."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "vendor" / "dvc-plots-template.html"
DVC = Path(sys.executable).parent / "dvc"
SCRIPT_TAG = re.compile(r"<script\b[^>]*>", re.IGNORECASE)


def _dvc(*args: str, cwd: Path) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(
        [str(DVC), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout.strip()


def _pinned_cdn_versions() -> dict[str, str]:
    """The versions dvc_render's default page loads from the CDN."""
    from dvc_render.vega import VegaRenderer

    return dict(re.findall(r"npm/(vega(?:-lite|-embed)?)@([\d.]+)", VegaRenderer.SCRIPTS))


def test_template_has_placeholder_and_the_three_libraries():
    page = TEMPLATE.read_text(encoding="utf8")
    assert "{plot_divs}" in page
    # Without a scripts placeholder dvc_render has nowhere to put its CDN <script src> tags.
    assert "{scripts}" not in page
    versions = _pinned_cdn_versions()
    assert set(versions) == {"vega", "vega-lite", "vega-embed"}
    for name, version in versions.items():
        assert f"/*! {name}@{version} build/{name}.min.js (BSD-3-Clause) */" in page, name
        # The version constant compiled into each build, not just our banner.
        assert f'="{version}"' in page, f"{name}@{version} build not inlined"
    tags = SCRIPT_TAG.findall(page)
    assert tags == ["<script>"] * 3, tags
    assert page.count("</script>") == 3, "an inlined build ends its <script> early"


def test_plots_show_renders_self_contained_page(tmp_path: Path):
    setting = _dvc("config", "plots.html_template", cwd=ROOT)
    # DVC resolves a relative html_template against the .dvc/ directory.
    assert (ROOT / ".dvc" / setting).resolve() == TEMPLATE.resolve(), setting

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, timeout=30)
    _dvc("init", "-q", cwd=tmp_path)
    vendored = tmp_path / ".dvc" / setting
    vendored.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(TEMPLATE, vendored)
    _dvc("config", "plots.html_template", setting, cwd=tmp_path)

    log = tmp_path / "models" / "tiny" / "history.csv"
    log.parent.mkdir(parents=True)
    log.write_text("epoch,test_loss,train_eval_loss\n1,2.71828,2.5\n2,1.41421,1.25\n")
    (tmp_path / "dvc.yaml").write_text(
        "plots:\n"
        "  - models/tiny/history.csv:\n"
        "      x: epoch\n"
        "      y: [test_loss, train_eval_loss]\n"
    )

    _dvc("plots", "show", "--out", "rendered", cwd=tmp_path)
    html = (tmp_path / "rendered" / "index.html").read_text(encoding="utf8")

    assert "2.71828" in html and "1.41421" in html and "train_eval_loss" in html
    assert "vegaEmbed(" in html
    assert "/*! vega-embed@" in html, "page was not built from the vendored template"
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.IGNORECASE), "external script"
    assert "cdn.jsdelivr.net" not in html


def test_plots_show_draws_the_four_curve_charts_of_both_datasets():
    """`dvc plots show` on the committed reports: exactly the charts dvc.yaml declares, a
    test loss and a test accuracy chart per dataset, each with every run's points and a
    colour for every model family (no chart drawn against a row index, nothing uncoloured)."""
    import json

    import pandas as pd

    charts = json.loads(_dvc("plots", "show", "--json", cwd=ROOT))["data"]
    expected = {f"Test {score} per logged epoch, every run ({ds})"
                for score in ("loss", "accuracy (%)") for ds in ("Pokemon", "emoji")}
    assert set(charts) == expected
    for title, [chart] in charts.items():
        spec = chart["content"]
        points = spec["data"]["values"]
        source = {p["filename"] for p in points}
        assert len(source) == 1 and source <= {"reports/pokemon/curves.csv", "reports/emoji/curves.csv"}
        curves = pd.read_csv(ROOT / source.pop())
        assert len(points) == len(curves), title
        assert spec["encoding"]["x"]["field"] == "epoch"
        domain = spec["encoding"]["color"]["scale"]["domain"]
        assert set(curves["family"]) <= set(domain), (title, set(curves["family"]) - set(domain))


def test_the_documented_exp_show_recipe_is_as_wide_as_it_says():
    """docs/pipeline.md gives a `dvc exp show` command and its width in columns: run it
    (wide terminal) and compare, so the recipe cannot silently grow (it once printed 285
    columns where the README said 161)."""
    import shlex

    doc = (ROOT / "docs" / "pipeline.md").read_text()
    command = re.search(r"`(dvc exp show [^`]+)`", doc).group(1)
    stated = int(re.search(r"\((\d+)\s+columns", doc[doc.index(command):]).group(1))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "COLUMNS": "1000"}
    done = subprocess.run([str(DVC), *shlex.split(command)[1:], "--no-pager"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line.rstrip() for line in done.stdout.splitlines() if line.strip()]
    assert "Experiment" in lines[1] and "train.max_epochs" in lines[1]
    assert max(len(line) for line in lines) == stated

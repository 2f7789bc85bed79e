#!/usr/bin/env bash
# `make smoke`: the whole pipeline (both datasets, every stage, both reports) on the tiny
# settings of profiles/smoke.yaml (a merge patch of params.yaml), in a temporary copy of
# the repository, so the real outputs are left alone. SMOKE_DIR=path keeps the copy.
# Checks: every artifact is written, re-running a model gives byte-identical files, and
# a second `dvc repro` does nothing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
if [ -n "${SMOKE_DIR:-}" ]; then
  dir=$(mkdir -p "$SMOKE_DIR" && cd "$SMOKE_DIR" && pwd)
  [ -z "$(ls -A "$dir")" ] || { echo "SMOKE_DIR=$dir is not empty; choose a new folder" >&2; exit 2; }
else
  dir=$(mktemp -d "${TMPDIR:-/tmp}/pxby-smoke.XXXXXX")
  trap 'rm -rf "$dir"' EXIT
fi
[ -d data/pokemon ] || { echo "data/ is missing: run 'make data' first" >&2; exit 2; }

# The working tree as git sees it (tracked + untracked-not-ignored files), plus data/.
git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do
  case "$f" in  # the real pipeline's outputs and lock stay behind: the smoke run makes its own
    dvc.lock|artifacts/*|models/*|eval/*|metrics/*|reports/*|timings/*) continue ;;
  esac
  [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$dir"
cp -r data "$dir/"
python -m pxby_lib.config merge params.yaml profiles/smoke.yaml > "$dir/params.yaml"
cd "$dir"
rm -rf .dvc/tmp
git init -q && git add -A >/dev/null && git -c user.name=smoke -c user.email=smoke@localhost commit -qm smoke
python -m pxby_lib.config validate params.yaml
start=$(date +%s)
PXBY_PROGRESS=0 dvc repro --quiet report report_emoji
echo "smoke: dvc repro took $(( $(date +%s) - start )) s in $dir"
for f in reports/table1.md reports/table1.csv reports/table1.tex reports/claims.md \
         reports/claims.csv reports/compute.md reports/curves.csv \
         reports/figures/figure1_generation.png reports/figures/figure2_training.png \
         reports/figures/gallery.png reports/emoji/table1.md reports/emoji/claims.md; do
  [ -s "$f" ] || { echo "smoke: missing output $f" >&2; exit 1; }
done
[ "$(ls metrics/pokemon/*.json | wc -l)" -eq "$(python -c 'import yaml; print(len(yaml.safe_load(open("params.yaml"))["models"]))')" ] \
  || { echo "smoke: not every model has metrics" >&2; exit 1; }
# Determinism: re-run the reference model's stages and the report from scratch; the
# model files, metrics, tables and executed notebooks must come out byte-identical, and
# git must see no change (timings of a reproduced run are kept, notebooks are stripped).
git add -A >/dev/null && git -c user.name=smoke -c user.email=smoke@localhost commit -qm outputs
ref=rnn_bi_pxby_conv_d81_s64_l2
outputs="$(ls models/pokemon/$ref/s*/* eval/pokemon/$ref/s*/* eval/pokemon/$ref/sample.*) metrics/pokemon/$ref.json reports/table1.csv reports/table1.md reports/claims.csv reports/notebooks/train/$ref.ipynb reports/notebooks/evaluate/$ref.ipynb reports/notebooks/report.ipynb"
before=$(sha256sum $outputs)
for stage in "train@$ref" "evaluate@$ref" report; do
  PXBY_PROGRESS=0 dvc repro --quiet --force --single-item "$stage"
done
after=$(sha256sum $outputs)
if [ "$before" != "$after" ]; then
  echo "smoke: re-running $ref changed its outputs:" >&2
  diff <(echo "$before") <(echo "$after") >&2 || true
  exit 1
fi
dirty=$(git status --porcelain)
[ -z "$dirty" ] || { echo "smoke: the forced re-run changed files in git:" >&2; echo "$dirty" >&2; exit 1; }
echo "smoke: re-run of $ref and the report is byte-identical (executed notebooks included), git status clean"
second=$(dvc repro 2>&1)
echo "$second" | grep -q "up to date" || { echo "smoke: second dvc repro was not a no-op:" >&2; echo "$second" >&2; exit 1; }
dvc metrics show > /dev/null
echo "smoke: ok (all stages ran, outputs deterministic, second repro is a no-op)"

#!/usr/bin/env bash
# `make smoke`: the whole pipeline (every dataset: Pokemon, emoji and a folder of images
# with a captions.csv; every stage, every report) on the tiny settings of
# profiles/smoke.yaml (a merge patch of params.yaml), in a temporary copy of the
# repository, so the real outputs are left alone. SMOKE_DIR=path keeps the copy.
# Checks: every artifact is written, re-running a model gives byte-identical files, a
# second `dvc repro` does nothing, and an edit of the trainer (of the evaluation) makes
# exactly the train (evaluate) stages stale.
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
# your own images: a folder source (images + captions.csv), here 12 emoji written as one
python -m pxby_lib.sources folder --from data/emoji --limit 12 --out smoke_folder
git init -q && git add -A >/dev/null && git -c user.name=smoke -c user.email=smoke@localhost commit -qm smoke
python -m pxby_lib.config validate params.yaml
start=$(date +%s)
PXBY_PROGRESS=0 dvc repro --quiet
echo "smoke: dvc repro took $(( $(date +%s) - start )) s in $dir"
for ds in pokemon emoji smoke_folder; do
  for f in table1.md table1.csv table1.tex claims.md claims.csv compute.md curves.csv completions.md \
           figures/figure1_generation.png figures/figure1_interleaved.png figures/figure2_training.png \
           figures/gallery.png figures/completions_paper.png figures/completions_baseline.png; do
    [ -s "reports/$ds/$f" ] || { echo "smoke: missing output reports/$ds/$f" >&2; exit 1; }
  done
  for stage in prepare baselines complete report; do
    [ -s "timings/$ds/$stage.json" ] || { echo "smoke: no timing record timings/$ds/$stage.json" >&2; exit 1; }
  done
  [ -s "reports/notebooks/tour/$ds.ipynb" ] || { echo "smoke: the tour did not run on $ds" >&2; exit 1; }
done
[ "$(ls metrics/pokemon/*.json | wc -l)" -eq "$(python -c 'import yaml; print(sum(r["dataset"] == "pokemon" for r in yaml.safe_load(open("params.yaml"))["runs"].values()))')" ] \
  || { echo "smoke: not every Pokemon run has metrics" >&2; exit 1; }
[ -s timings/pokemon/train/rnn_bi_pxby_conv_d81_s64_l2.json ] && python scripts/stage_timings.py > /dev/null \
  || { echo "smoke: scripts/stage_timings.py cannot read the timing records" >&2; exit 1; }
# Determinism: re-run the reference model's stages and the report from scratch; the
# model files, metrics, tables and executed notebooks must come out byte-identical, and
# git must see no change (timings of a reproduced run are kept, notebooks are stripped).
git add -A >/dev/null && git -c user.name=smoke -c user.email=smoke@localhost commit -qm outputs
ref=rnn_bi_pxby_conv_d81_s64_l2
outputs="$(ls models/pokemon/$ref/s*/* eval/pokemon/$ref/s*/* eval/pokemon/$ref/sample.*) metrics/pokemon/$ref.json reports/pokemon/table1.csv reports/pokemon/table1.md reports/pokemon/claims.csv reports/notebooks/train/pokemon-$ref.ipynb reports/notebooks/evaluate/pokemon-$ref.ipynb reports/notebooks/report/pokemon.ipynb timings/pokemon/train/$ref.json"
before=$(sha256sum $outputs)
for stage in "train@pokemon-$ref" "evaluate@pokemon-$ref" report@pokemon; do
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
# Each stage depends on exactly what it reads: an edit of the trainer makes the train
# stages stale and nothing else (evaluate and report follow once the models change), an
# edit of the evaluation code the evaluate, baselines and complete stages (and the tour,
# which completes a sprite) only, of the completion code the complete stage and the tour
# (the report reads its outputs, not its code), of the report code the report stages.
stale_after() {  # the stage names `dvc status` lists after appending a comment to $1
  cp "$1" "$1.orig" && echo "# an edit" >> "$1"
  dvc status 2>/dev/null | grep -E '^[a-z_]+(@[A-Za-z0-9_-]+)?:$' | tr -d ':' | sed 's/@.*//' | sort -u | tr '\n' ' '
  mv "$1.orig" "$1"
}
for check in "pxby_lib/train.py:train " "pxby_lib/scoring.py:baselines complete evaluate tour " "pxby_lib/complete.py:complete tour " "pxby_lib/report.py:report "; do
  file=${check%%:*} expected=${check#*:}
  got=$(stale_after "$file")
  [ "$got" = "$expected" ] || { echo "smoke: editing $file made stale: '$got' (expected '$expected')" >&2; exit 1; }
  echo "smoke: editing $file makes stale exactly: $expected"
done
echo "smoke: ok (all stages ran, outputs deterministic, second repro is a no-op, stages depend on what they read)"

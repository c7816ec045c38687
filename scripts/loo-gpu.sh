#!/usr/bin/env bash
# Leave-one-book-out on a GPU machine with PyTorch (no TensorFlow needed there).
#
#   scripts/loo-gpu.sh REAL_ARRAYS TEXT_DIR OUT BOOK... -- TRAIN_TORCH_ARGS...
#   scripts/loo-gpu.sh data/real gs-text runs/loo-gpu IbnAthir IbnFaqih IbnQutayba Dhahabi IbnJawzi \
#       -- --epochs 20 --lr 1e-3 --lr-schedule cosine
#
# REAL_ARRAYS: every book's real lines preprocessed once (training.preprocess, any split); each fold re-splits them
# by book (train_torch --val-source). TEXT_DIR: the books' transcriptions (NAME.gt.txt in one folder per book), the
# text the synthetic lines are drawn from, the held-out book's left out (--exclude-corpus), plus datasets/corpus.
# First, for each BOOK: render SYNTH_LINES synthetic lines (seed SYNTH_SEED) without that book's text and preprocess
# them at REAL_ARRAYS' height (its manifest's input_height), on all cores; then start every fold's training side by
# side (rendering beside training slowed the trainings' first epochs 5-10x on the first run); every fold gets the
# same TRAIN_TORCH_ARGS. OUT/BOOK/ holds synth-arrays/, synth.json (how they were rendered), run/ (last.pt,
# history.csv, run.json) and train.log (appended to when a fold resumes). Export and evaluation need TensorFlow: python -m training.loo_finish, on the CPU machine.
# A fold whose rendering or training fails is named at the end and the exit status is 1; the other folds go on.
#
# Environment: SYNTH_LINES (45000), SYNTH_SEED (2026), SYNTH_ARGS (more training.synth options, e.g.
# "--eulogy-ligature-rate 0.3"; none), WORKERS (CPU cores for rendering and preprocessing: all),
# LOADER_WORKERS (batch-making processes per training: 2), PYTHON (python3), RENDER_ONLY (1: stop after rendering,
# e.g. to render several series' lines before any of them trains; a fold whose synth-arrays/ are there is not
# rendered again, so OUT/BOOK/synth-arrays may also be another series' folder or a link to it).
set -euo pipefail
# One brace group, parsed whole before any of it runs: bash reads a script as it executes it, so an edit to this
# file (a git pull) while folds train would otherwise make the running copy read shifted lines when they end.
{

if [[ $# -lt 5 || "$1" == -h || "$1" == --help ]]; then
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
real=$1 text=$2 out=$3
shift 3
books=()
while [[ $# -gt 0 && "$1" != "--" ]]; do books+=("$1"); shift; done
[[ "${1:-}" == "--" ]] && shift
[[ ${#books[@]} -gt 0 ]] || { echo "no BOOK given" >&2; exit 2; }

py=${PYTHON:-python3}
lines=${SYNTH_LINES:-45000}
seed=${SYNTH_SEED:-2026}
workers=${WORKERS:-$(nproc)}
loaders=${LOADER_WORKERS:-2}
read -ra synth_args <<< "${SYNTH_ARGS:-}"
here=$(cd "$(dirname "$0")/.." && pwd)
# train_torch refuses bf16 on a CPU that would emulate it: say so now, not after rendering every fold's lines.
if [[ ${RENDER_ONLY:-0} != 1 && " $* " == *" bf16 "* ]] && ! (cd "$here" && "$py" -c \
        'import sys; from training.machine import native_bf16; sys.exit(native_bf16() is False)'); then
    echo "--precision bf16 needs a CPU with AVX512-BF16 or AMX; this one has neither: use --precision fp32" >&2
    exit 2
fi
# The synthetic lines must have the real lines' height (a tiny-preset series has 32, not preprocess's default).
height=$("$py" -c 'import json, sys; print(json.load(open(sys.argv[1]))["input_height"])' "$real/manifest.json") \
    || { echo "$real: no manifest.json with input_height (training.preprocess's output)" >&2; exit 2; }
mkdir -p "$out"
render() {  # BOOK FOLD: the fold's synthetic lines, without the book's text, preprocessed
    "$py" -m training.synth --lines "$lines" --out "$2/synth" --corpus "$text" "$here/datasets/corpus" \
        --exclude-corpus "$1" --seed "$seed" --workers "$workers" ${synth_args[@]+"${synth_args[@]}"} \
        > "$2/synth.log" 2>&1 || return 1
    "$py" -m training.preprocess "$2/synth" --out "$2/synth-arrays" --height "$height" --workers "$workers" \
        > "$2/preprocess.log" 2>&1 || return 1
    cp "$2/synth/synth.json" "$2/synth.json"   # how they were rendered (corpus, exclusions, options), kept
    rm -rf "$2/synth"  # the arrays are what training reads; the PNGs are gigabytes
}

pids=() trained=() ready=() failed=()
for book in "${books[@]}"; do
    fold=$out/$book
    mkdir -p "$fold"
    if [[ ! -f $fold/synth-arrays/manifest.json ]]; then
        echo "$(date -u +%T) $book: rendering $lines synthetic lines without its text"
        # Not under set -e: one fold's failure must not stop the others.
        if ! render "$book" "$fold"; then
            echo "$(date -u +%T) $book: FAILED making its synthetic lines (see $fold/synth.log, preprocess.log)" >&2
            failed+=("$book")
            continue
        fi
    fi
    # Lines rendered earlier (or linked from another series) are not rendered again: say so where nothing tells how.
    [[ -f $fold/synth.json ]] || echo "$(date -u +%T) $book: WARNING its synthetic lines have no synth.json (how they were rendered is not recorded)" >&2
    ready+=("$book")
done
if [[ ${RENDER_ONLY:-0} == 1 ]]; then
    [[ ${#failed[@]} -eq 0 ]] || { echo "$(date -u +%T) FAILED: ${failed[*]}" >&2; exit 1; }
    echo "$(date -u +%T) rendered: ${ready[*]} (RENDER_ONLY: not training)"
    exit 0
fi
for book in "${ready[@]}"; do
    fold=$out/$book
    echo "$(date -u +%T) $book: training (log: $fold/train.log)"
    PYTHONUNBUFFERED=1 "$py" -m training.train_torch --data "$real" --val-source "$book" \
        --synth "$fold/synth-arrays" --out "$fold/run" --workers "$loaders" "$@" >> "$fold/train.log" 2>&1 &
    pids+=($!) trained+=("$book")
done
for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
        echo "$(date -u +%T) ${trained[$i]}: training FAILED (see $out/${trained[$i]}/train.log)" >&2
        failed+=("${trained[$i]}")
    fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "$(date -u +%T) folds finished; FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "$(date -u +%T) all ${#books[@]} folds finished"
exit
}

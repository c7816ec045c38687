#!/usr/bin/env bash
# Copy each fold's latest weights (last.pt without the optimizer state: a third of the size) to DEST, and every
# fold's records and logs (no arrays, images or weights) to DEST/records.tgz.
#
#   scripts/gpu/collect.sh DEST [SERIES...]     (SERIES: folders under $W, default out; e.g. out v3)
#
# The weights of series "out" land as DEST/fold-BOOK.pt, those of any other series as DEST/SERIES-BOOK.pt.
# Here: for each BOOK, put the .pt at SERIES/BOOK/run/last.pt beside the unpacked records, then
# python -m training.loo_finish SERIES LINES_DIR --parity-data REAL_ARRAYS.
set -euo pipefail
dest=${1:?usage: scripts/gpu/collect.sh DEST [SERIES...]}
shift
series=("$@")
[[ ${#series[@]} -gt 0 ]] || series=(out)
W=${W:-/tmp/loo}
PYTHON=${PYTHON:-python3}
mkdir -p "$dest"
"$PYTHON" - "$W" "$dest" "${series[@]}" <<'PY'
import glob, sys, torch
work, dest, *series = sys.argv[1:]
for name in series:
    prefix = "fold" if name == "out" else name
    for path in sorted(glob.glob(f"{work}/{name}/*/run/last.pt")):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors and containers, as train_torch saves them
        checkpoint.pop("optimizer", None)
        torch.save(checkpoint, f"{dest}/{prefix}-{path.split('/')[-3]}.pt")
PY
tar czf "$dest/records.tgz" --exclude='*.npz' --exclude='*.pt' --exclude='*.png' --exclude='*/synth' -C "$W" "${series[@]}"
ls -la "$dest"

#!/usr/bin/env bash
# Copy each fold's latest weights (last.pt without the optimizer state: a third of the size) to DEST/fold-BOOK.pt,
# and every fold's records and logs (no arrays, images or weights) to DEST/records.tgz.
# Here: for each BOOK, put fold-BOOK.pt at OUT/BOOK/run/last.pt beside the unpacked records, then
# python -m training.loo_finish OUT LINES_DIR --parity-data REAL_ARRAYS.
set -euo pipefail
dest=${1:?usage: scripts/gpu/collect.sh DEST}
W=${W:-/tmp/loo}
mkdir -p "$dest"
python3 - "$W" "$dest" <<'PY'
import glob, sys, torch
work, dest = sys.argv[1:]
for path in sorted(glob.glob(f"{work}/out/*/run/last.pt")):
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors and containers, as train_torch saves them
    checkpoint.pop("optimizer", None)
    torch.save(checkpoint, f"{dest}/fold-{path.split('/')[-3]}.pt")
PY
tar czf "$dest/records.tgz" --exclude='*.npz' --exclude='*.pt' --exclude='*.png' --exclude='*/synth' -C "$W" out
ls -la "$dest"

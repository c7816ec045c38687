#!/usr/bin/env bash
# Pack what a bare GPU machine needs to run scripts/loo-gpu.sh: one with Python, PyTorch (CUDA), NumPy, OpenCV and
# Pillow, but no TensorFlow and no internet (the device machines lent to some sessions).
#
#   scripts/gpu/bundle.sh REAL_ARRAYS LINES_DIR BUNDLE
#   scripts/gpu/bundle.sh data/real ../shared/datasets/openiti-gs .gpu
#
# BUNDLE/ gets: real.tar.xz (REAL_ARRAYS, every book's lines preprocessed, e.g. training.preprocess output),
# text.tar.xz (LINES_DIR's transcriptions only, NAME.gt.txt, the synthetic lines' text), fonts.tar.xz (the faces
# training.fonts finds here, under their /usr/share/fonts paths), debs/ (libraqm and what it links: Pillow shapes
# Arabic through it) and whl/ (rapidfuzz and python-bidi, which recognition imports, built for PYVER: 3.12).
# About 30 MB for the shared books. On the machine, from the repository root:
#   source scripts/gpu/bootstrap.sh BUNDLE      (unpacks into $W, default /tmp/loo; checks what is there)
#   scripts/loo-gpu.sh $W/real $W/text/$(basename LINES_DIR) $W/out BOOK... -- --epochs 20 ...
#   scripts/gpu/monitor.sh SECONDS; scripts/gpu/collect.sh DEST   (weights without optimizer state, records)
set -euo pipefail
if [[ $# -ne 3 || "$1" == -h || "$1" == --help ]]; then sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2; fi
real=$1 lines=$2 bundle=$3
py=${PYTHON:-.venv/bin/python}
pyver=${PYVER:-3.12}
mkdir -p "$bundle/debs" "$bundle/whl"
tar cf - -C "$(dirname "$real")" "$(basename "$real")" --transform "s|^$(basename "$real")|real|" \
    | xz -9 -T0 > "$bundle/real.tar.xz"
(cd "$(dirname "$lines")" && find "$(basename "$lines")" -name '*.gt.txt' -print0 \
    | tar cJf - --null -T - --transform 's|^|text/|') > "$bundle/text.tar.xz"
"$py" - "$bundle" <<'PY'
import os, sys, tarfile
from training.fonts import FONT_DIRS, find_book_fonts
faces = find_book_fonts()
with tarfile.open(os.path.join(sys.argv[1], "fonts.tar.xz"), "w:xz") as archive:
    for face in faces:
        archive.add(face.path, arcname=os.path.relpath(face.path, FONT_DIRS[0]))
print(f"{len(faces)} font faces packed")
PY
(cd "$bundle/debs" && apt-get download libraqm0 libfribidi0 libharfbuzz0b libgraphite2-3 libglib2.0-0 libfreetype6 \
    libpng16-16 libbrotli1 libpcre2-8-0 2>/dev/null)
pins=$(grep -E '^(rapidfuzz|python-bidi)==' requirements.txt)
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d "$bundle/whl" $pins
du -sh --apparent-size "$bundle"

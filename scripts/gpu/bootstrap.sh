# Source it on the GPU machine, from the repository root: source scripts/gpu/bootstrap.sh BUNDLE
# Unpacks scripts/gpu/bundle.sh's BUNDLE into $W (default /tmp/loo) once per machine, puts the faces under
# /usr/share/fonts (where training.fonts looks), libraqm on LD_LIBRARY_PATH and the wheels on PYTHONPATH, then
# prints what the machine has: every line of it must be there for scripts/loo-gpu.sh.
bundle=${1:?usage: source scripts/gpu/bootstrap.sh BUNDLE}
export PYTHONUNBUFFERED=1 W=${W:-/tmp/loo}
export LD_LIBRARY_PATH=/tmp/libs/usr/lib/x86_64-linux-gnu:/tmp/libs/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONPATH=/tmp/site:$PWD
if [ ! -f "$W/.ready" ]; then
  mkdir -p "$W" /tmp/libs /tmp/site /usr/share/fonts
  for deb in "$bundle"/debs/*.deb; do dpkg -x "$deb" /tmp/libs; done
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$bundle"/whl/*.whl
  tar xJf "$bundle/fonts.tar.xz" -C /usr/share/fonts
  tar xJf "$bundle/text.tar.xz" -C "$W" && tar xJf "$bundle/real.tar.xz" -C "$W"
  touch "$W/.ready"
fi
python3 - <<'PY'
import os, torch, PIL, cv2, numpy, rapidfuzz, bidi
from PIL import features
from training.fonts import find_book_fonts
print("torch", torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name(), "| Pillow", PIL.__version__,
      "raqm", features.check("raqm"), "| cv2", cv2.__version__, "| numpy", numpy.__version__,
      "| faces", len(find_book_fonts()), "| cpus", os.cpu_count())
PY

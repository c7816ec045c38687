"""python manage.py recognize: local recognition without the HTTP service."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_line_folder

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def run_recognize(*args, env_extra=None):
    import os

    env = {**os.environ, "OCR_VAR_DIR": str(Path(args[-1]).parent / "var"), **(env_extra or {})}
    return subprocess.run([sys.executable, "manage.py", "recognize", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_jsonl_over_folders_recursively(tmp_path, tiny_model):
    write_line_folder(tmp_path / "pages" / "a", ["قال أبو محمد", "سنة 45"], "Amiri-Regular")
    write_line_folder(tmp_path / "pages" / "b" / "deeper", ["ثم دخلت سنة"], "Amiri-Regular")
    (tmp_path / "pages" / "b" / "broken.png").write_bytes(b"")
    result = run_recognize("--jsonl", "--model", str(tiny_model), str(tmp_path / "pages"))
    assert result.returncode == 1, result.stderr  # a file failed: scripts must be able to tell
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 4
    ok = [r for r in records if "text" in r]
    assert len(ok) == 3 and all(set(r) == {"file", "text", "confidence", "characters"} for r in ok)
    assert all("".join(c["char"] for c in r["characters"]) == r["text"] for r in ok)
    assert {Path(r["file"]).name for r in ok} == {"000000.png", "000001.png"}
    assert [r["error"]["code"] for r in records if "error" in r] == ["empty_file"]
    assert "1 of 4 files could not be read" in result.stderr


def test_missing_path_is_a_clear_error(tmp_path, tiny_model):
    result = run_recognize("--model", str(tiny_model), str(tmp_path / "nowhere"))
    assert result.returncode != 0 and "no such file or folder" in result.stderr


def test_it_decodes_as_the_service_does_with_the_language_model_setting(tmp_path):
    paths = write_line_folder(tmp_path / "lines", ["قال أبو محمد"], "Amiri-Regular")
    model = ROOT / "models" / "arabic-crnn-v2-int8.onnx"
    with_lm = run_recognize("--jsonl", "--model", str(model), str(paths[0]),
                            env_extra={"OCR_LANGUAGE_MODEL": str(ROOT / "models" / "arabic-char-lm.npz")})
    assert with_lm.returncode == 0, with_lm.stderr
    assert json.loads(with_lm.stdout)["text"] == "قال أبو محمد"
    broken = run_recognize("--model", str(model), str(paths[0]),
                           env_extra={"OCR_LANGUAGE_MODEL": str(tmp_path / "missing.npz")})
    assert broken.returncode != 0 and "OCR_LANGUAGE_MODEL" in broken.stderr and "missing.npz" in broken.stderr

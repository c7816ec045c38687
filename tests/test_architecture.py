"""Dependencies point one way: ocr_app -> recognition <- training; serving never loads TensorFlow."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("tensorflow", "keras", "tf2onnx", "onnx", "training", "torch")


def test_serving_stack_imports_without_tensorflow():
    code = (
        "import os, sys, django\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'ocr_project.settings')\n"
        "django.setup()\n"
        "import ocr_project.urls, ocr_app.apis, ocr_app.services, ocr_app.admin, ocr_app.engine, ocr_app.registry\n"
        "import ocr_app.exports, client.ocr_client, recognition.recognizer\n"
        "import recognition.page, recognition.page_loader, recognition.page_formats, recognition.layout\n"
        "import recognition.page_select, ocr_project.celery, ocr_app.jobs.tasks, ocr_app.jobs.services\n"
        f"loaded = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={"OCR_VAR_DIR": str(ROOT / "var"), "PATH": "/usr/bin:/bin",
                                 "OCR_WARM_UP": "0"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"serving imported: {result.stdout.strip()}"


def _imports(folder: str) -> set[str]:
    names = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_the_core_knows_nothing_of_django_training_or_tensorflow():
    assert not _imports("recognition") & {"django", "rest_framework", "training", "ocr_app", "tensorflow", "keras",
                                          "torch"}


def test_training_knows_nothing_of_django():
    assert not _imports("training") & {"django", "rest_framework", "ocr_app", "ocr_project"}


def test_torch_training_imports_without_tensorflow():
    """The GPU machine that runs train_torch has PyTorch but no TensorFlow or Keras."""
    code = ("import sys, training.train_torch, training.torch_crnn\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'))))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"train_torch imported: {result.stdout.strip()}"


def test_service_and_client_do_not_import_training():
    assert not (_imports("ocr_app") | _imports("ocr_project") | _imports("client")) & {
        "training", "tensorflow", "keras", "tf2onnx", "torch"}

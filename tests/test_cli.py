"""arabic-ocr: the Django-free command line, and the package that installs it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from recognition import cli
from tests.conftest import write_line_folder

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_INT8 = ROOT / "models" / "arabic-crnn-v1-int8.onnx"


def arabic_ocr(*args: str, executable: list[str] | None = None, env_extra: dict | None = None,
               text: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(env_extra or {})
    command = executable or [sys.executable, "-m", "recognition.cli"]
    return subprocess.run([*command, *args], cwd=ROOT, env=env, capture_output=True, text=text, timeout=120)


def test_lines_prints_a_json_object_per_image_and_fails_if_any_failed(tmp_path):
    write_line_folder(tmp_path / "book" / "a", ["قال أبو محمد", "سنة 45"], "Amiri-Regular")
    (tmp_path / "book" / "broken.png").write_bytes(b"")
    result = arabic_ocr("lines", str(tmp_path / "book"), "--model", str(SHIPPED_INT8), "--batch", "1",
                        "--threads", "1")
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["file"]).name for r in records] == ["000000.png", "000001.png", "broken.png"]
    assert records[2]["error"]["code"] == "empty_file" and "text" not in records[2]
    for record in records[:2]:
        assert set(record) == {"file", "text", "confidence", "characters"}
        assert "".join(c["char"] for c in record["characters"]) == record["text"]
    assert records[0]["text"].startswith("قال") and records[1]["text"].startswith("سنة")
    assert "1 of 3 images could not be read" in result.stderr
    assert "django" not in result.stderr.lower()


def test_all_good_exits_zero_and_the_default_model_is_the_checkouts(tmp_path):
    paths = write_line_folder(tmp_path, ["ثم دخلت سنة"], "Amiri-Regular")
    result = arabic_ocr("lines", str(paths[0]))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["text"]


def test_lines_and_pages_decode_with_a_language_model_when_asked(tmp_path):
    paths = write_line_folder(tmp_path / "lines", ["قال أبو محمد", "ثم دخلت سنة"], "Amiri-Regular")
    lm = ROOT / "models" / "arabic-char-lm.npz"
    result = arabic_ocr("lines", *map(str, paths), "--lm", str(lm), "--lm-weight", "0.3", "--beam", "4")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in records] == ["قال أبو محمد", "ثم دخلت سنة"]
    assert all("".join(c["char"] for c in r["characters"]) == r["text"] for r in records)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a model")
    for command in (["lines", str(paths[0])], ["pages", str(paths[0]), "--out", str(tmp_path / "out")]):
        refused = arabic_ocr(*command, "--lm", str(broken))
        assert refused.returncode == 2 and "not a language model file" in refused.stderr, refused.stderr
    assert not (tmp_path / "out").exists()  # refused before any page
    page = arabic_ocr("pages", str(paths[0]), "--out", str(tmp_path / "out"), "--lm", str(lm))
    assert page.returncode == 0, page.stderr
    assert (tmp_path / "out" / "000000.txt").read_text(encoding="utf-8").strip() == "قال أبو محمد"


def test_usage_errors_exit_2_with_a_message(tmp_path):
    missing = arabic_ocr("lines", str(tmp_path / "nowhere"), "--model", str(SHIPPED_INT8))
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    no_model = arabic_ocr("lines", str(tmp_path), "--model", str(tmp_path / "none.onnx"))
    assert no_model.returncode == 2 and "--model" in no_model.stderr


def test_help_explains_the_command_and_its_output():
    top = arabic_ocr("--help")
    assert top.returncode == 0 and "lines" in top.stdout and "logical" in top.stdout
    lines = arabic_ocr("lines", "--help")
    for word in ("--model", "--batch", "--threads", "characters", "error", "Exits with 1"):
        assert word in lines.stdout


def test_the_package_declares_the_console_script_and_the_core_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    module, _, function = project["scripts"]["arabic-ocr"].partition(":")
    assert module == "recognition.cli" and getattr(cli, function) is cli.console_main
    serving = {line.split("==")[0].lower() for line in (ROOT / "requirements.txt").read_text().splitlines()
               if "==" in line}
    core = {dep.split(">")[0].split("<")[0].split("[")[0].lower() for dep in project["dependencies"]}
    assert core <= serving  # the core needs nothing the service does not install
    assert not any("tensorflow" in dep or "django" in dep.lower() for dep in project["dependencies"])
    assert any("tensorflow" in dep for dep in project["optional-dependencies"]["train"])


def test_the_installed_console_script_runs(tmp_path):
    script = Path(sys.executable).with_name("arabic-ocr")
    if not script.exists():
        pytest.skip("the project is not installed in this environment (make test installs it)")
    paths = write_line_folder(tmp_path, ["قال أبو محمد"], "Amiri-Regular")
    result = arabic_ocr("lines", str(paths[0]), "--model", str(SHIPPED_INT8), executable=[str(script)])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["text"]


def test_decoding_options_default_to_what_the_bench_chose():
    from recognition import cli_decoding

    parse = cli.parser().parse_args
    assert cli_decoding.recognizer_options(parse(["lines", "x.png"])) == {}  # greedy
    with_lm = cli_decoding.recognizer_options(parse(["lines", "x.png", "--lm", "lm.npz"]))
    assert with_lm["language_model"] == Path("lm.npz") and with_lm["beam_search"].beta == 1.5
    beam_only = cli_decoding.recognizer_options(parse(["lines", "x.png", "--beam", "4"]))
    assert beam_only["language_model"] is None
    assert (beam_only["beam_search"].beam, beam_only["beam_search"].beta) == (4, cli_decoding.BONUS_WITHOUT_LM)
    assert with_lm["beam_search"].alpha == cli_decoding.DEFAULTS.alpha


@pytest.mark.parametrize("options, message", [
    (["--beam", "0"], "--beam must be at least 1"),
    (["--lm", "lm.npz", "--beam", "-3"], "--beam must be at least 1"),
    (["--lm", "lm.npz", "--lm-weight", "nan"], "--lm-weight must be a finite number >= 0"),
    (["--lm", "lm.npz", "--lm-weight", "inf"], "--lm-weight must be a finite number >= 0"),
    (["--lm", "lm.npz", "--lm-weight", "-0.5"], "--lm-weight must be a finite number >= 0"),
    (["--lm", "lm.npz", "--lm-bonus", "nan"], "--lm-bonus must be a finite number"),
    (["--lm-weight", "0.3"], "give --lm FILE too"),
    (["--beam", "4", "--lm-weight", "0.3"], "give --lm FILE too"),
    (["--lm-bonus", "1"], "give --lm FILE or --beam N too"),
])
def test_decoding_options_that_would_be_ignored_or_changed_are_refused(options, message):
    from recognition import cli_decoding

    with pytest.raises(ValueError, match=message):
        cli_decoding.recognizer_options(cli.parser().parse_args(["lines", "x.png", *options]))


def test_a_refused_decoding_option_exits_2_before_any_work(tmp_path):
    for command in (["lines", "x.png"], ["pages", "x.png", "--out", str(tmp_path / "out")]):
        result = arabic_ocr(*command, "--beam", "0")
        assert result.returncode == 2 and "--beam must be at least 1" in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_pages_refuses_an_lm_built_on_another_text_convention_before_any_page(tmp_path):
    from recognition.char_lm import save
    from training import char_lm

    header, tables = char_lm.build(["قال أبو محمد", "ثم دخلت سنة"], order=3)
    other = tmp_path / "other-convention.npz"
    save(other, {**header, "text_normalisation": "keep-harakat-v9"}, tables)
    paths = write_line_folder(tmp_path / "lines", ["قال أبو محمد"], "Amiri-Regular")
    for jobs in ("1", "2"):
        result = arabic_ocr("pages", str(paths[0]), "--out", str(tmp_path / "out"), "--lm", str(other),
                            "--jobs", jobs)
        assert result.returncode == 2 and "normalised as 'keep-harakat-v9'" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


# -- file names, model files, vanished files (audit 2) -----------------------------------------------------------

@pytest.mark.parametrize("encoding", [None, "utf-8", "latin-1"])
def test_lines_writes_utf8_json_lines_for_a_file_name_that_is_not_utf8(tmp_path, encoding):
    """A name's bytes that are not UTF-8 (a surrogate escape in Python) are written as U+FFFD: the raw byte
    made the output invalid UTF-8, and with PYTHONIOENCODING=utf-8 a traceback lost the files after it. The
    output is UTF-8 whatever the locale says."""
    write_line_folder(tmp_path / "in", ["قال أبو محمد", "سنة 45"], "Amiri-Regular")
    os.rename(tmp_path / "in" / "000000.png", tmp_path / "in" / os.fsdecode(b"a\xff.png"))
    result = arabic_ocr("lines", str(tmp_path / "in"), "--model", str(SHIPPED_INT8), "--threads", "1", text=False,
                        env_extra={"PYTHONIOENCODING": encoding} if encoding else None)
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
    records = [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]
    assert [Path(r["file"]).name for r in records] == ["000001.png", "a\ufffd.png"]
    assert records[1]["text"].startswith("قال")


def test_a_model_file_that_is_not_an_onnx_model_is_bad_usage(tmp_path):
    paths = write_line_folder(tmp_path / "lines", ["قال أبو محمد"], "Amiri-Regular")
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a model")
    out = tmp_path / "out"
    for command in (["lines", str(paths[0])], ["pages", str(paths[0]), "--out", str(out)],
                    ["pages", str(paths[0]), "--out", str(out), "--jobs", "2"]):
        result = arabic_ocr(*command, "--model", str(bad))
        assert result.returncode == 2 and "Traceback" not in result.stderr, (command, result.stderr)
        assert result.stderr.startswith(f"arabic-ocr: {bad} is not a loadable ONNX model (")
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not out.exists()   # refused before the output folder is made


def test_a_file_gone_since_it_was_listed_is_that_files_error_only(tmp_path):
    from recognition import Recognizer

    paths = write_line_folder(tmp_path, ["قال أبو محمد"], "Amiri-Regular")
    out = io.StringIO()
    total, failures = cli.recognize_files(Recognizer(SHIPPED_INT8, threads=1), [tmp_path / "gone.png", paths[0]],
                                          out)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert (total, failures) == (2, 1)
    assert records[0]["error"]["code"] == "unreadable_file" and "gone.png" in records[0]["error"]["message"]
    assert records[1]["text"].startswith("قال")

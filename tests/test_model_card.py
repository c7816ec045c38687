"""The model card says what was measured in the run it is given, and nothing it was not given."""

import json

from training import evaluate, model_card


def test_card_comes_from_the_run_the_metadata_and_the_measurements(tiny_model, tiny_run, rendered_books, tmp_path):
    evaluation = tmp_path / "eval"
    evaluate.main([str(tiny_model), str(rendered_books), "--out", str(evaluation)])
    synth = tmp_path / "synth.json"
    synth.write_text(json.dumps({"lines": 12, "seed": 3, "fonts": ["Amiri-Regular", "Scheherazade-Regular"],
                                 "fonts_used_this_run": {"Amiri-Regular": 12}}), encoding="utf-8")
    out = tmp_path / "card" / "MODEL_CARD.md"
    out.parent.mkdir()
    assert model_card.main([str(tiny_model), "--run", str(tiny_run), "--evaluation", str(evaluation / "evaluation.json"),
                            "--leave-one-out", f"book_naskh={evaluation / 'evaluation.json'}",
                            "--synth", str(synth), "--out", str(out)]) == 0
    card = out.read_text(encoding="utf-8")
    state = json.loads((tiny_run / "state.json").read_text(encoding="utf-8"))
    measured = json.loads((evaluation / "evaluation.json").read_text(encoding="utf-8"))

    assert card.startswith("# Model card: tiny-test 1")
    assert f"- {len(state['history'])} epochs, {state['step']} steps of batch 8" in card
    assert "book_amiri (" in card and "book_naskh (" in card  # training data with line counts
    assert "2 font faces: Amiri-Regular, Scheherazade-Regular; 1 of them drew lines" in card
    naskh = next(v for k, v in measured["results"].items() if k.endswith("book_naskh"))
    assert f"| book_naskh | {naskh['lines']} | {100 * naskh['cer']:.2f}% |" in card
    assert "no (held out)" in card and "| mean of 1 |" in card
    assert "errors in lowest 10%" in card  # the evaluation's confidence measures
    assert "carries no calibration" in card  # the tiny model was never calibrated
    assert state["machine"] in card
    for v1_fact in ("five printed", "39 Debian", "39 faces", "CPU only", "arabic-crnn-v1", "halving", "Tesseract"):
        assert v1_fact not in card, v1_fact


def test_sections_without_their_files_are_left_out_or_say_so(tiny_model, tmp_path):
    out = tmp_path / "MODEL_CARD.md"
    model_card.main([str(tiny_model), "--out", str(out)])
    card = out.read_text(encoding="utf-8")
    assert "Leave-one-book-out" in card and "Not measured for this model." in card
    assert "Accuracy per book" not in card and "Speed" not in card
    assert " steps" not in card and "font faces" not in card  # no run, no synth.json: no epochs, no fonts



def test_a_last_epoch_is_called_unchosen_only_when_nothing_on_the_validation_book_steered_the_run():
    from training.model_card import _unsteered

    planned = {"args": {"lr_schedule": "cosine", "patience": 100, "epochs": 6}, "stop_reason": "epochs done"}
    assert _unsteered(planned)
    assert not _unsteered({**planned, "args": {**planned["args"], "lr_schedule": "plateau"}})  # LR halved on it
    assert not _unsteered({**planned, "args": {**planned["args"], "patience": 3}})  # could have stopped early
    assert not _unsteered({**planned, "stop_reason": "early stop: no improvement for 3 epochs"})
    assert not _unsteered({k: v for k, v in planned.items() if k != "stop_reason"})  # older runs say nothing
    assert not _unsteered(None)

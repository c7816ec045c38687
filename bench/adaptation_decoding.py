"""The decoding chosen for one point of ``bench.adaptation`` (``--tune-decoding``): on the corrected lines only.

Which corrected lines: those neither the model nor the LM has read. The adapted model trained on
four fifths of the N corrected lines and reads them better than lines it has not seen (at N = 200:
1.29% against 1.93% on the held-out fifth), and its errors there are not the ones it will make on the
rest of the book; the gate's held-out fifth is what it has not seen (only its best check was chosen
on it). With the
base model (N = 0) nothing was seen: the general LM's settings are chosen on all the first
``--base-tune-lines`` lines. A book LM adds the text of the lines the model trained on (for N = 0,
the same four fifths of the first lines) and is chosen on the fifth left. The lines scored (the rest
of the book) are never looked at while choosing. For the control, the choice made on all N corrected
lines is scored too.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from recognition.char_lm import CharacterLanguageModel
from training.tune_decoding import build_book_lm, decoder_for, lm_shape, model_outputs, read, reviewed_text, score, tune

SHIPPED = {"decoder": "beam + LM", "alpha": 0.2, "beta": 1.5, "beam": 8}   # the opt-in defaults (issue 15)


def tune_point(model: Path, corrected: list, model_saw: list, book_lm_text: list, rest: list,
               lm: CharacterLanguageModel, general_lines: list[str] | None, log) -> dict:
    """Choose on the corrected lines the model (and the book LM) did not read; score the rest with each choice.

    ``corrected``: the reviewed lines; ``model_saw``: those the model trained on; ``book_lm_text``: those
    whose text the book LM adds to ``general_lines`` (the book left out; None: no book LM); ``rest``: the
    lines scored. Where the model trained on some, the choice made on all of them is reported too (a control).
    """
    seen, in_lm = {id(s) for s in model_saw}, {id(s) for s in book_lm_text}
    tune_general = [s for s in corrected if id(s) not in seen]
    tune_book = [s for s in tune_general if id(s) not in in_lm]
    recognizer, outputs, ms = model_outputs(model, tune_general + rest + model_saw)
    by_sample = dict(zip(map(id, tune_general + rest + model_saw), outputs))
    rest_outputs = outputs[len(tune_general):len(tune_general) + len(rest)]

    log(f"  choosing with the general LM on {len(tune_general)} corrected lines")
    chosen, table = tune(recognizer, outputs[:len(tune_general)], tune_general, lm)
    decoders = {"greedy": None, "chosen": decoder_for(recognizer, chosen, lm),
                "shipped settings": decoder_for(recognizer, SHIPPED, lm)}
    report = {"tuned_on": {"general_lm": len(tune_general)}, "chosen": chosen, "table": table}
    if general_lines is not None:
        book_lm = build_book_lm(general_lines, reviewed_text(book_lm_text), *lm_shape(lm))
        log(f"  choosing with a book LM ({len(book_lm_text)} corrected lines' text) on {len(tune_book)} lines")
        book_chosen, book_table = tune(recognizer, [by_sample[id(s)] for s in tune_book], tune_book, book_lm)
        decoders["chosen, book LM"] = decoder_for(recognizer, book_chosen, book_lm)
        # The book's text alone, the settings fixed: does the book LM beat the general one where nothing is chosen?
        decoders["shipped settings, book LM"] = decoder_for(recognizer, SHIPPED, book_lm)
        report.update(book_lm=book_lm.header["training_text"], book_chosen=book_chosen, book_table=book_table)
        report["tuned_on"]["book_lm"] = len(tune_book)

    if model_saw:
        # The control for "why not all N": the same choice made on every corrected line, those trained on included.
        everything = [by_sample[id(s)] for s in corrected]
        all_chosen, all_table = tune(recognizer, everything, corrected, lm)
        seen_greedy = score(model_saw, read(recognizer, [by_sample[id(s)] for s in model_saw], None))
        decoders["chosen on all N"] = decoder_for(recognizer, all_chosen, lm)
        report["all_corrected"] = {"chosen": all_chosen, "table": all_table, "trained_on_greedy": seen_greedy}

    from bench.language_model import decoding_ms

    times = decoding_ms(recognizer, rest_outputs, decoders)
    report["model_ms"] = statistics.mean(ms[len(tune_general):len(tune_general) + len(rest)])
    report["rest"] = {name: {**score(rest, read(recognizer, rest_outputs, decoder)),
                             "decoding_ms": statistics.mean(times[name])} for name, decoder in decoders.items()}
    for name, r in report["rest"].items():
        log(f"  rest, {name}: CER {100 * r['cer']:.2f}%, {r['decoding_ms']:.2f} ms/line decoding")
    return report

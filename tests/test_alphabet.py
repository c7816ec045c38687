import pytest

from recognition.alphabet import BLANK_INDEX, Alphabet, UnknownCharacterError


def test_round_trip_and_blank_at_zero():
    alphabet = Alphabet.from_texts(["قال أبو محمد", "سنة 123"])
    text = "محمد قال 321"
    encoded = alphabet.encode(text)
    assert BLANK_INDEX not in encoded
    assert alphabet.decode(encoded) == text
    assert alphabet.num_classes == len(alphabet) + 1


def test_decode_skips_blank():
    alphabet = Alphabet(["ا", "ب"])
    assert alphabet.decode([0, 1, 0, 2, 0]) == "اب"


def test_unknown_characters_are_reported_not_dropped():
    alphabet = Alphabet(["ا", "ب"])
    with pytest.raises(UnknownCharacterError) as info:
        alphabet.encode("اتب~")
    assert info.value.characters == {"ت", "~"}
    assert "U+062A" in str(info.value)


def test_json_round_trip_and_extension_keeps_old_indices():
    alphabet = Alphabet(["ب", "ا"])
    assert Alphabet.from_json(alphabet.to_json()) == alphabet
    grown = alphabet.extended(["بات٣"])
    assert grown.characters[:2] == alphabet.characters
    assert set(grown.characters[2:]) == {"ت", "٣"}
    assert grown.encode("با") == alphabet.encode("با")


def test_rejects_duplicates_and_multi_character_entries():
    with pytest.raises(ValueError):
        Alphabet(["ا", "ا"])
    with pytest.raises(ValueError):
        Alphabet(["لا"])


def test_extending_skips_characters_rarer_than_the_minimum():
    base = Alphabet("اب")
    extended = base.extended(["بت~", "تث", "ت"], min_count=2)
    assert extended.characters == ("ا", "ب", "ت")  # old indices kept; ~ and ث seen once
    assert base.extended(["~"]).characters[-1] == "~"

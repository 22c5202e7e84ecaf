"""`gptlab tokenizer encode` shows each token's id, text and exact bytes, coloured per token."""

from gptlab.cli import main
from gptlab.cli.tokenizer import RESET
from gptlab.tokenizers.base import GPT2Tokenizer, token_bytes


def encode(capsys, *argv) -> list[str]:
    assert main(["tokenizer", "encode", *argv]) == 0
    return capsys.readouterr().out.splitlines()


def test_the_bytes_of_the_pieces_are_the_text():
    text = "Wherefore art thou, naïve 🙂?\n"
    tokenizer = GPT2Tokenizer()
    pieces = token_bytes(tokenizer, tokenizer.encode(text))
    assert b"".join(pieces) == text.encode("utf-8")
    # GPT-2 spells the giraffe's 4 UTF-8 bytes with three tokens, none a character on its own.
    assert token_bytes(tokenizer, tokenizer.encode("🦒")) == [b"\xf0\x9f", b"\xa6", b"\x92"]


def test_a_split_character_shows_exactly_in_the_bytes_column(capsys):
    lines = encode(capsys, "--text", "🦒", "--color", "never")
    assert lines[0] == "\ufffd|\ufffd|\ufffd"
    assert [line.split()[-2:] for line in lines[4:]][0] == ["f0", "9f"]


def test_table_rows_are_id_text_and_hex_bytes(capsys):
    lines = encode(capsys, "--text", "Hi\nthere", "--color", "never")
    ids = GPT2Tokenizer().encode("Hi\nthere")
    assert lines[0] == "Hi|\\n|there"  # boundaries marked, the newline escaped
    assert lines[1] == f"{len(ids)} tokens, 8 bytes (2.67 bytes/token)"
    rows = [line.split() for line in lines[4:]]
    assert [int(row[1]) for row in rows] == ids
    assert rows[0][2:] == ["'Hi'", "48", "69"] and rows[1][2:] == ["'\\n'", "0a"]


def test_colour_marks_each_token_and_ids_only_is_for_scripts(capsys):
    ids = GPT2Tokenizer().encode("To be, or not")
    first = encode(capsys, "--text", "To be, or not", "--color", "always")[0]
    assert first.count(RESET) == len(ids)
    assert encode(capsys, "--text", "To be, or not", "--ids-only") == [" ".join(map(str, ids))]

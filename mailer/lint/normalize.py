"""Text normalisation before any word check, shared by the lint and the send-time check (issue 13).

A keyword check is only as good as the text it reads: a Cyrillic "о" in "yоur results",
a zero-width space or a soft hyphen inside "diag\u00adnosis" defeats it. `fold` returns
text in which such tricks are undone:

- Unicode NFKC (full-width letters, ligatures, compatibility forms);
- invisible format characters removed (zero-width space/joiners, soft hyphen, word
  joiner, BOM, bidi marks, the combining grapheme joiner);
- confusables folded to the Latin letter they imitate (Cyrillic, Greek and a few other
  look-alikes from Unicode's confusables.txt that matter for Latin-script English and
  Spanish), so "yоur" (Cyrillic о) reads "your". Accented Latin letters are left alone:
  "diagnóstico" must stay Spanish.

`fold_map` also returns, for each character of the folded text, the offset of the
character it came from, so a finding still points at the right place in the file.
Text that is plain ASCII is returned as it is (the common case costs one `isascii`).
"""

from __future__ import annotations

import unicodedata

# Invisible characters that split words without showing anything (Cf and friends).
INVISIBLE = frozenset(
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u200b\u200c\u200d\u200e\u200f"
    "\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\u206a"
    "\u206b\u206c\u206d\u206e\u206f\u3164\ufe00\ufe01\ufe02\ufe03\ufe04\ufe05\ufe06\ufe07\ufe08"
    "\ufe09\ufe0a\ufe0b\ufe0c\ufe0d\ufe0e\ufe0f\ufeff\uffa0"
)

# Look-alike letters -> the Latin letter they imitate (subset of Unicode confusables.txt).
_CONFUSABLES = {
    # Cyrillic
    "а": "a", "в": "b", "с": "c", "ԁ": "d", "е": "e", "ё": "e", "һ": "h", "і": "i", "ї": "i",
    "ј": "j", "к": "k", "ӏ": "l", "м": "m", "н": "h", "о": "o", "р": "p", "ԛ": "q", "г": "r",
    "ѕ": "s", "т": "t", "у": "y", "ѵ": "v", "ԝ": "w", "х": "x", "ү": "y", "ь": "b", "п": "n",
    "А": "A", "В": "B", "С": "C", "Е": "E", "Н": "H", "І": "I", "Ј": "J", "К": "K", "М": "M",
    "О": "O", "Р": "P", "Ѕ": "S", "Т": "T", "Х": "X", "У": "Y", "Ү": "Y", "Ԁ": "D", "Ԛ": "Q",
    "Ԝ": "W", "Ӏ": "I", "Ь": "b",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ϲ": "c", "ϳ": "j", "ѡ": "w", "ω": "w",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϲ": "C",
    # Armenian, Cherokee and Latin extensions that imitate plain letters
    "օ": "o", "ս": "u", "ո": "n", "ց": "g", "զ": "q", "հ": "h", "Ꭺ": "A", "Ꭼ": "E", "Ꮃ": "W",
    "ı": "i", "ȷ": "j", "ɑ": "a", "ɡ": "g", "ɩ": "i", "ʏ": "y", "ᴄ": "c", "ᴏ": "o", "ᴠ": "v",
    "ᴡ": "w", "ᴢ": "z", "ꓲ": "I",
    # punctuation look-alikes that hide a "Re:" prefix or a separator
    "꞉": ":", "∶": ":", "ː": ":", "˸": ":", "։": ":", "׃": ":",
}
_TABLE = {ord(k): v for k, v in _CONFUSABLES.items()} | {ord(c): None for c in INVISIBLE}


def fold(text: str) -> str:
    """TEXT normalised for word checks (NFKC, invisibles removed, confusables folded)."""
    if text.isascii():
        return text
    return unicodedata.normalize("NFC", unicodedata.normalize("NFKC", text).translate(_TABLE))


def fold_map(text: str) -> tuple[str, list[int] | None]:
    """(folded text, offsets): offsets[i] is where folded character i came from in TEXT.

    Offsets is None when nothing changed (ASCII text), so callers can skip the mapping.
    The folding is done character by character (NFKC of one character), so offsets are
    exact; the few NFKC compositions across characters that this misses (a base letter
    and a separate combining accent) are composed by a final NFC on each character run.
    """
    if text.isascii() or (unicodedata.is_normalized("NFKC", text) and text.translate(_TABLE) == text):
        return text, None
    out: list[str] = []
    offsets: list[int] = []
    for i, ch in enumerate(text):
        if ch.isascii():
            out.append(ch)
            offsets.append(i)
            continue
        piece = unicodedata.normalize("NFKC", ch).translate(_TABLE)
        if piece and unicodedata.combining(piece[0]) and out:
            # a combining mark composes with the previous character (e + ́ -> é)
            merged = unicodedata.normalize("NFC", out[-1] + piece)
            if len(merged) == 1:
                out[-1] = merged
                continue
        for c in piece:
            out.append(c)
            offsets.append(i)
    return "".join(out), offsets


def origin(offsets: list[int] | None, index: int, length: int) -> int:
    """Offset in the original text of folded character INDEX (LENGTH: the original's length)."""
    if offsets is None:
        return index
    if index < len(offsets):
        return offsets[index]
    return length

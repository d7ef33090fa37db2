"""The languages Whisper knows, by the codes it uses (ISO 639-1, plus ``haw`` and ``yue``),
and the scripts written without spaces between words.

Plain data, no torch: the API's ``language`` upload option and the CLI's ``--language`` are
read by :func:`language_code`.
"""

_CODES = (
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw"
    " he hi hr ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt"
    " my ne nl nn no oc pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl"
    " tr tt uk ur uz vi yi yo zh yue"
)
WHISPER_LANGUAGES = frozenset(_CODES.split(" "))


def language_code(value: str | None) -> str | None:
    """A spoken-language option as Whisper's code: None for auto-detection (None, empty or
    ``auto``), else the code in lower case.

    Raises:
        ValueError: A code Whisper does not know.
    """
    code = (value or "").strip().lower()
    if code in ("", "auto"):
        return None
    if code not in WHISPER_LANGUAGES:
        raise ValueError(
            f"unknown language {value!r}: use an ISO 639-1 code (en, de, ru, ...) or auto"
        )
    return code


# Scripts written without spaces between words (Chinese, Japanese): one character, one token.
SPACELESS_RANGES = (
    (0x3040, 0x30FF),  # hiragana, katakana
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x2FFFF),  # CJK extensions B-F
)


def spaceless(char: str) -> bool:
    """Whether ``char`` belongs to a script written without spaces between words."""
    code = ord(char)
    return any(low <= code <= high for low, high in SPACELESS_RANGES)


def spaceless_class() -> str:
    """:data:`SPACELESS_RANGES` as the inside of a regular-expression character class."""
    return "".join(f"{chr(low)}-{chr(high)}" for low, high in SPACELESS_RANGES)

"""Jinja filters that put free-text answers safely into TOML and Python files.

Cookiecutter loads this module through `_extensions` in cookiecutter.json.
"""

from cookiecutter.utils import simple_filter

_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escaped(value: str, quote: str) -> str:
    """`value` between `quote`s, with what cannot stand there escaped. Non-ASCII text is kept as
    it is: JSON (`tojson`) escapes characters outside the BMP as surrogate pairs, which TOML
    rejects."""
    out = []
    for char in value:
        if char == quote:
            out.append("\\" + char)
        elif char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return quote + "".join(out) + quote


@simple_filter
def toml_string(value: object) -> str:
    """`value` as a TOML basic string (double-quoted: a single-quoted one escapes nothing)."""
    return _escaped(str(value), '"')


@simple_filter
def python_string(value: object) -> str:
    """`value` as a Python string literal, quoted as `ruff format` quotes it: in double quotes,
    unless the text holds more of those than of single ones."""
    text = str(value)
    return _escaped(text, "'" if text.count('"') > text.count("'") else '"')


@simple_filter
def one_line(value: object) -> str:
    """Collapse white space, newlines included, into single spaces: metadata wants one line."""
    return " ".join(str(value).split())

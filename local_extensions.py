"""Jinja filters that put free-text answers safely into TOML and Python files.

Cookiecutter loads this module through `_extensions` in cookiecutter.json.
"""

from cookiecutter.utils import simple_filter

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


@simple_filter
def quoted(value: object) -> str:
    """Return `value` as a double-quoted literal, valid both as a TOML basic string and in Python.

    Unlike `tojson`, it keeps non-ASCII text as it is: JSON escapes characters outside the BMP as
    surrogate pairs, which TOML rejects.
    """
    out = []
    for char in str(value):
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


@simple_filter
def one_line(value: object) -> str:
    """Collapse white space, newlines included, into single spaces: metadata wants one line."""
    return " ".join(str(value).split())

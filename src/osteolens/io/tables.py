"""CSV tables read as text, with one loud error for a file that is missing, empty or not CSV.

Every table osteolens reads from a user (manifests, predictions, clinical data, labels of an
import) goes through :func:`read_text_table`, so each says what is wrong with it the same way,
under the error type of the module that reads it.
"""

from __future__ import annotations

import codecs
import io
from pathlib import Path

import pandas as pd

from osteolens.errors import OsteolensError


def read_text_table(path: str | Path, what: str, error: type[OsteolensError] = OsteolensError) -> pd.DataFrame:
    """A CSV file with every column as text and no value read as missing (empty cells stay ``""``).

    Tables as spreadsheets save them are read too: UTF-8 (with or without a byte-order mark),
    UTF-16 with its mark ("Unicode text"), else Windows-1252 (Excel's "CSV" on Windows in Western
    Europe); cells separated by commas, or by semicolons or tabs where the header has no comma
    (Excel's "CSV" where the decimal mark is a comma).

    Args:
        path: the CSV file.
        what: what the table is, for the message (``"manifest"``, ``"predictions"``).
        error: the error type to raise.

    Raises:
        error: the file is missing, or is empty, binary or malformed CSV.

    >>> read_text_table("nowhere.csv", "predictions")
    Traceback (most recent call last):
    ...
    osteolens.errors.OsteolensError: nowhere.csv: predictions file not found
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} file not found")
    try:
        text = _decoded(path.read_bytes())
        header = text.split("\n", 1)[0]
        sep = "," if "," in header else ";" if ";" in header else "\t" if "\t" in header else ","
        return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not a readable CSV {what} ({type(exc).__name__}: {exc})") from exc


def _decoded(data: bytes) -> str:
    """A text file's bytes as text: UTF-16 with a byte-order mark, UTF-8, else Windows-1252.

    Raises:
        UnicodeDecodeError: binary data (a NUL byte outside UTF-16, or bytes no encoding here reads).
    """
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return data.decode("utf-16")
    if b"\x00" in data:
        raise UnicodeDecodeError("utf-8", data, data.index(b"\x00"), data.index(b"\x00") + 1, "a NUL byte: binary data, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252")


def decimal_number(text) -> float:
    """A number written with a decimal point or, as spreadsheets write it where that is the decimal mark,
    a decimal comma (one comma and no point).

    Raises:
        ValueError: the text is not a number.

    >>> decimal_number("0,25"), decimal_number(" 1e-3 "), decimal_number(48)
    (0.25, 0.001, 48.0)
    """
    t = str(text).strip()
    if t.count(",") == 1 and "." not in t:
        t = t.replace(",", ".")
    return float(t)


def repeated_rows(keys: list[str], what: str, first_line: int = 2) -> str:
    """Which keys of a table's rows (in order, the first on line ``first_line``) repeat, in words.

    Returns ``""`` when every key is unique.

    >>> repeated_rows(["a", "b", "a"], "image")
    "1 image(s) have more than one row ('a' on lines 2, 4)"
    """
    lines: dict[str, list[int]] = {}
    for line, key in enumerate(keys, start=first_line):
        lines.setdefault(key, []).append(line)
    repeated = {k: v for k, v in lines.items() if len(v) > 1}
    if not repeated:
        return ""
    shown = "; ".join(f"{k!r} on lines {', '.join(map(str, v))}" for k, v in list(repeated.items())[:5])
    return f"{len(repeated)} {what}(s) have more than one row ({shown}{'; ...' if len(repeated) > 5 else ''})"

"""CSV tables read as text, with one loud error for a file that is missing, empty or not CSV.

Every table osteolens reads from a user (manifests, predictions, clinical data, labels of an
import) goes through :func:`read_text_table`, so each says what is wrong with it the same way,
under the error type of the module that reads it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from osteolens.errors import OsteolensError


def read_text_table(path: str | Path, what: str, error: type[OsteolensError] = OsteolensError) -> pd.DataFrame:
    """A CSV file with every column as text and no value read as missing (empty cells stay ``""``).

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
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not a readable CSV {what} ({type(exc).__name__}: {exc})") from exc


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

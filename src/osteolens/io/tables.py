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

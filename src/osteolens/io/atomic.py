"""Write a file so that readers see the old version or the new one, never half of one.

>>> import tempfile
>>> from pathlib import Path
>>> folder = Path(tempfile.mkdtemp())
>>> with replaced_atomically(folder / "state.json") as tmp:
...     _ = tmp.write_text("{}")
>>> [p.name for p in folder.iterdir()]
['state.json']
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_atomically(path: str | Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; when the block ends without an error it replaces ``path``.

    Each call gets a temporary name of its own (ending in ``path``'s suffix, so that writers which add
    one, such as ``numpy.savez``, keep it), so two writers of one file never rename each other's file
    away: the last to finish wins, whole. On an error the temporary file is removed and ``path`` is
    left as it was.

    Args:
        path: the file to write; its folder is created if missing.

    Yields:
        The temporary file's path (an empty file) to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f"{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)

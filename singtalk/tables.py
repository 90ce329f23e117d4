"""Reading a user's CSV file, with what is wrong with it said in plain words.

pandas' own errors ("Error tokenizing data. C error: Expected 1 fields in line 3, saw 2") name its
parser, not the file; :func:`read_csv` turns them into a :class:`~singtalk.errors.DatasetError` that
says which line is wrong and how a CSV should look.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from .errors import DatasetError

_FIELDS = re.compile(r"Expected (\d+) fields? in line (\d+), saw (\d+)")
_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")  # row: 0-based line number


def read_csv(path: str | os.PathLike, *, shape: str = "path,label", **kwargs) -> pd.DataFrame:
    """``pd.read_csv(path, dtype=str, keep_default_na=False, **kwargs)``; a :class:`DatasetError` in plain words.

    ``shape`` is the header the file should start with (shown in the messages). An empty file gives
    an empty frame.
    """
    path = Path(path)
    options = {"dtype": str, "keep_default_na": False, **kwargs}
    try:
        frame = pd.read_csv(path, **options)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except FileNotFoundError as err:
        raise DatasetError(f"There is no file at {path}.") from err
    except IsADirectoryError as err:
        raise DatasetError(f"{path} is a folder; give the CSV file in it.") from err
    except PermissionError as err:
        raise DatasetError(f"{path.name} cannot be opened: permission denied.") from err
    except UnicodeDecodeError as err:
        raise DatasetError(f"{path.name} is not a text file (it holds binary data); "
                           f"save it as CSV text (UTF-8) starting with a line {shape}.") from err
    except (pd.errors.ParserError, ValueError, OSError) as err:
        raise DatasetError(f"{path.name}: {_plain(str(err), shape)}") from err
    if not isinstance(frame.index, pd.RangeIndex):  # line 2 had more values: pandas made the extra an index
        raise DatasetError(f"{path.name}: {_more_values(2, frame.index.nlevels, len(frame.columns), shape)}")
    return frame


def _plain(error: str, shape: str) -> str:
    """pandas' parser error as a sentence about the file."""
    fields = _FIELDS.search(error)
    if fields:
        expected, line, saw = (int(g) for g in fields.groups())
        return _more_values(line, saw - expected, expected, shape)
    quote = _QUOTE.search(error)
    if quote:
        return f"a double quote opened on line {int(quote.group(1)) + 1} is never closed; close it or remove it."
    return (f"it is not a CSV file that can be read. It should be comma-separated text starting with a "
            f"line {shape}, then one line per file.")


def _more_values(line: int, extra: int, expected: int, shape: str) -> str:
    return (f"line {line} has {expected + extra} comma-separated values but the first line has {expected}. "
            f"A CSV here starts with a line {shape}, then one line per file with as many values; "
            "put a value that contains a comma in double quotes.")

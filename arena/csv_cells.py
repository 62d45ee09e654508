"""CSV cells a spreadsheet will not run: text that starts like a formula is made inert.

Prompts, checkpoint and config names are typed by voters and trainers; a cell such as
``=HYPERLINK("http://...")`` or ``@SUM(...)`` would run as a formula when an operator opens
the export in a spreadsheet. Following OWASP's advice on CSV injection, a text cell that begins
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading apostrophe (shown
by spreadsheets as plain text). Numbers are numbers and stay as they are.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["FORMULA_STARTS", "inert_cell", "inert_frame"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert_cell(value: Any) -> Any:
    """``value``, with an apostrophe before a text that a spreadsheet would read as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def inert_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells (and column names) are inert."""
    out = frame.rename(columns=lambda c: inert_cell(str(c)))
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column]):
            out[column] = out[column].map(inert_cell)
    return out

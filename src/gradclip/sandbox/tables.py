"""The experiments' result tables, as aligned plain text (for the terminal) and as Markdown (summary.md)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["markdown_table", "text_table"]


def text_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Right-aligned columns under ``head``, a rule below it.

    Examples:
        >>> from gradclip.sandbox.tables import text_table
        >>> print(text_table(["arm", "loss"], [["none", "2.80"], ["fixed", "2.99"]]))
          arm  loss
        -----------
         none  2.80
        fixed  2.99
    """
    table = [list(head), *map(list, rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in table]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The same table in Markdown.

    Examples:
        >>> from gradclip.sandbox.tables import markdown_table
        >>> print(markdown_table(["arm", "loss"], [["none", "2.80"]]))
        | arm | loss |
        |---|---|
        | none | 2.80 |
    """
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])

"""Query parameters as clients send them: whole numbers. Pure, no I/O."""

from __future__ import annotations

import re

_ASCII_DIGITS = re.compile("[0-9]+")


def whole_number(text: str, max_digits: int) -> int | None:
    """`text` as a whole number if it is 1 to `max_digits` ASCII digits; else None.

    `str.isdigit` and `int` are no check: both take any Unicode digit ("²"
    passes the one and fails the other, "١٢" passes both), and `int` refuses
    a string of more than 4300 digits with a ValueError.
    """
    if len(text) > max_digits or not _ASCII_DIGITS.fullmatch(text):
        return None
    return int(text)

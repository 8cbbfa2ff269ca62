"""The verdict of a critique: ``right``, ``wrong`` or ``none``.

The paper's rule (reference section 2): split on ``Conclusion``, take the last part lower-cased;
``wrong``/``incorrect`` there means wrong, else ``right``/``correct`` means right, else no verdict.
Teachers also write ``**Conclusion: Incorrect**``, drop the ``[END]``, or say
``Conclusion: The solution is correct``; the rule covers those because it only reads the words
after the last ``Conclusion``. Two refinements on top: the split is case-insensitive
(``CONCLUSION:``), and ``not correct`` / ``not right`` read as wrong (the paper's substring rule
would call them right).
"""

from __future__ import annotations

import re

_SPLIT = re.compile(r"conclusion", re.I)
_WRONG = re.compile(r"\b(wrong|incorrect|not correct|not right)\b")
_RIGHT = re.compile(r"\b(right|correct)\b")


def parse_verdict(critique: str | None) -> str:
    """'right' | 'wrong' | 'none' by the paper's rule on the text after the last ``Conclusion``."""
    if not critique:
        return "none"
    parts = _SPLIT.split(critique)
    if len(parts) < 2:
        return "none"
    tail = parts[-1].lower()
    if _WRONG.search(tail):
        return "wrong"
    if _RIGHT.search(tail):
        return "right"
    return "none"

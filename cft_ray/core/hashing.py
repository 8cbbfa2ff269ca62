"""Stable short content hashes: the keys of stages, steps and cached models."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def section_hash(value: Any) -> str:
    """Stable short hash of any JSON-able value (a whole config, one section, a list of keys)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]

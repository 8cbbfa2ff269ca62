"""Training sets from critiqued rows, each written as Parquet plus a dataset card.

Built-in builders (reference sections 1 and 3): ``cft`` (instruction / input / output of the
released data), ``sft`` (the original responses), ``sft-verified`` (only rows whose critique
concludes right) and ``sft-teacher`` (teacher-written answers); user templates from
``data.templates``. Every set keeps ``id``, ``source`` and ``verdict`` beside the alpaca fields.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cft_ray.config import UserTemplate
from cft_ray.core.formats import cft_row, render_prompt, render_target, sft_row
from cft_ray.report.markdown import markdown_table

ALPACA = ["instruction", "input", "output"]


def _has(df: pd.DataFrame, column: str) -> pd.Series:
    if column not in df.columns:
        return pd.Series(False, index=df.index)
    return df[column].fillna("").astype(str).str.strip().str.len() > 0


def build_rows(builder: str, rows: pd.DataFrame, templates: dict[str, UserTemplate]) -> pd.DataFrame:
    """The training rows of one builder (alpaca fields + id, source, verdict)."""
    if builder == "cft":
        keep = rows[_has(rows, "critique")]
        fields = [cft_row(q, r, c) for q, r, c in zip(keep["question"], keep["response"], keep["critique"])]
    elif builder in ("sft", "sft-verified"):
        keep = rows if builder == "sft" else rows[rows["verdict"] == "right"]
        fields = [sft_row(q, r) for q, r in zip(keep["question"], keep["response"])]
    elif builder == "sft-teacher":
        keep = rows[_has(rows, "teacher_answer")]
        fields = [sft_row(q, a) for q, a in zip(keep["question"], keep["teacher_answer"])]
    elif builder in templates:
        template = templates[builder]
        keep = rows if template.verdict is None else rows[rows["verdict"] == template.verdict]
        try:
            fields = [
                {"instruction": template.instruction.format(**r), "input": template.input.format(**r),
                 "output": template.output.format(**r)}
                for r in keep.to_dict("records")
            ]
        except KeyError as exc:
            raise ValueError(f"template {builder!r} names column {exc} that the rows lack; have {list(rows.columns)}") from None
    else:
        raise ValueError(f"unknown builder {builder!r}")
    out = pd.DataFrame(fields, columns=ALPACA, index=keep.index)
    for column in ("id", "source", "verdict"):
        out[column] = keep[column] if column in keep.columns else None
    return out.reset_index(drop=True)


def _percentiles(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    arr = np.asarray(values)
    return {"mean": round(float(arr.mean()), 1), "p50": float(np.percentile(arr, 50)),
            "p90": float(np.percentile(arr, 90)), "p99": float(np.percentile(arr, 99)), "max": int(arr.max())}


def token_lengths(rows: pd.DataFrame, tokenizer) -> dict[str, dict[str, float]]:
    """Token-length percentiles of the prompt, the target (which carries the loss) and both,
    as the trainer renders them."""
    prompts = [render_prompt(i, x) for i, x in zip(rows["instruction"], rows["input"])]
    targets = [render_target(o) for o in rows["output"]]
    p = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]] if prompts else []
    t = [len(ids) for ids in tokenizer(targets, add_special_tokens=False)["input_ids"]] if targets else []
    return {"prompt": _percentiles(p), "output": _percentiles(t), "total": _percentiles([a + b for a, b in zip(p, t)])}


def make_card(builder: str, rows: pd.DataFrame, tokenizer, extra: dict[str, Any]) -> dict[str, Any]:
    verdicts = Counter(rows["verdict"].fillna("none"))
    n = len(rows)
    return {
        "builder": builder,
        "rows": n,
        "verdicts": dict(verdicts),
        "right_ratio": round(verdicts.get("right", 0) / n, 4) if n else None,
        "sources": dict(Counter(rows["source"])),
        "tokens": token_lengths(rows, tokenizer),
        "tokenizer": getattr(tokenizer, "name_or_path", str(tokenizer)),
        **extra,
    }


def card_markdown(card: dict[str, Any]) -> str:
    stats = ("mean", "p50", "p90", "p99", "max")
    rows = [[part, *(values[k] for k in stats)] for part, values in card["tokens"].items() if values]
    lines = [f"# {card['builder']} dataset", "", f"- rows: {card['rows']}",
             f"- verdicts: {card['verdicts']} (right ratio {card['right_ratio']})",
             f"- sources: {card['sources']}", f"- config hash: `{card.get('config_hash')}`", "",
             *markdown_table(["tokens", *stats], rows)]
    return "\n".join(lines) + "\n"


def write_dataset(rows: pd.DataFrame, directory: str | Path, builder: str, tokenizer, extra: dict[str, Any]) -> dict:
    """``data.parquet`` + ``card.json`` + ``card.md`` in ``directory``; returns the card."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rows.to_parquet(directory / "data.parquet", index=False)
    card = make_card(builder, rows, tokenizer, extra)
    (directory / "card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    (directory / "card.md").write_text(card_markdown(card))
    return card

"""Source loaders: every input set becomes rows of one schema.

``id``, ``question``, ``response``, ``reference_answer``, ``source`` (+ ``critique`` for the released
CFT data), with the source's other columns kept (renamed ``orig_<name>`` when they collide). Ids are
content hashes of source + question + response, so later stages can join and resume on them.

Hub sets are read from the hub's Parquet conversion (``refs/convert/parquet``) through
``huggingface_hub.HfFileSystem`` and pyarrow; ``path=`` reads a local copy shaped like the real one
(Parquet, JSONL or JSON). Loading never fails on a bad row: type problems are recorded in
``quarantine_reason`` (see :mod:`cft_ray.data.validate`) and the row travels on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from cft_ray.config import SourceConfig
from cft_ray.core.formats import CFT_INSTRUCTION
from cft_ray.core.synthetic import arithmetic_problems
from cft_ray.data.validate import REASON, coerce_types
from cft_ray.core.extract import last_boxed

log = logging.getLogger(__name__)

SCHEMA = ("id", "question", "response", "reference_answer", "source")
# Columns a loader may fill besides SCHEMA; every other source column is kept as it is.
KNOWN = (*SCHEMA, "critique", REASON)


def content_id(source: str, question: str, response: str) -> str:
    """Stable row id: the same source, question and response always get the same id."""
    digest = hashlib.sha256("\x1f".join((source, question, response)).encode())
    return digest.hexdigest()[:20]


def _metamath_answer(row: dict) -> dict:
    # MetaMathQA responses end with "The answer is: X".
    response = row.get("response")
    if isinstance(response, str) and "The answer is:" in response:
        row["reference_answer"] = response.rsplit("The answer is:", 1)[1].strip()
    return row


def _boxed_answer(row: dict) -> dict:
    if isinstance(row.get("response"), str):
        row["reference_answer"] = last_boxed(row["response"])
    return row


_CFT_INPUT = re.compile(r"\AQuestion:\n(?P<question>.*?)\n\nSolution:\n(?P<response>.*)\n\Z", re.S)


def _parse_cft(row: dict) -> dict:
    """Released alpaca CFT row -> question / response / critique (inverse of formats.cft_row)."""
    text, output = row.pop("input", None), row.pop("output", None)
    instruction = row.pop("instruction", None)
    match = _CFT_INPUT.match(text) if isinstance(text, str) else None
    if match is None or not isinstance(output, str):
        row[REASON] = "webinstruct-cft: input is not 'Question:\\n...\\n\\nSolution:\\n...\\n' or output missing"
        row.update(question=text, response=None, critique=output)
        return row
    if isinstance(instruction, str) and instruction.strip() != CFT_INSTRUCTION.strip():
        row["orig_instruction"] = instruction
    row.update(match.groupdict(), critique=output.removeprefix("Critique:\n"))
    return row


@dataclass(frozen=True)
class SourceSpec:
    """Where a known set lives on the hub and how its columns map to ours."""

    hub_id: str | None = None
    hub_config: str = "default"
    column_map: dict[str, str] = field(default_factory=dict)  # ours -> theirs
    parse: Callable[[dict], dict] | None = None


SPECS: dict[str, SourceSpec] = {
    # WebInstructSub: question / answer (+ orig_question, orig_answer, source, index).
    "webinstruct": SourceSpec("TIGER-Lab/WebInstructSub", column_map={"response": "answer"}),
    # MetaMathQA: query / response / type / original_question.
    "metamathqa": SourceSpec("meta-math/MetaMathQA", column_map={"question": "query"}, parse=_metamath_answer),
    # NuminaMath-CoT: source / problem / solution / messages.
    "numinamath": SourceSpec(
        "AI-MO/NuminaMath-CoT", column_map={"question": "problem", "response": "solution"}, parse=_boxed_answer
    ),
    # The released critiques, alpaca instruction / input / output; configs WebInstruct-CFT-{4K,50K,600K}.
    "webinstruct-cft": SourceSpec("TIGER-Lab/WebInstruct-CFT", "WebInstruct-CFT-50K", parse=_parse_cft),
    "local": SourceSpec(),
}


def hub_parquet_files(hub_id: str, config: str, split: str) -> tuple[list[str], Any]:
    """The Parquet files of one hub config/split (the hub's own conversion of every dataset)."""
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem()
    root = f"datasets/{hub_id}@refs%2Fconvert%2Fparquet/{config}"
    files = fs.glob(f"{root}/{split}/*.parquet") or fs.glob(f"{root}/partial-{split}/*.parquet")
    if not files:
        raise FileNotFoundError(f"no Parquet files for {hub_id} config={config!r} split={split!r} on the hub")
    return sorted(files), fs


def _read_json_records(path: Path) -> list[dict]:
    """JSONL (one object a line) or JSON (a list of objects); a line that does not parse
    becomes a row carrying the reason, so it is quarantined and counted, not lost."""
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a JSON list of row objects, got {type(data).__name__}")
        lines = [json.dumps(item) for item in data]
    else:
        lines = [line for line in text.splitlines() if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            record = {REASON: f"line {number}: not valid JSON ({exc.msg})", "raw": line[:1000]}
        if not isinstance(record, dict):
            record = {REASON: f"line {number}: not a JSON object", "raw": line[:1000]}
        records.append(record)
    return records


def read_raw(cfg: SourceConfig) -> pd.DataFrame:
    """The source's rows as they are, from ``path`` or else the hub."""
    if cfg.path:
        path = Path(cfg.path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"source path {path} does not exist")
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        parquet = [f for f in files if f.suffix == ".parquet"]
        if parquet:
            table = pads.dataset(parquet, format="parquet")
            return (table.head(cfg.limit) if cfg.limit else table.to_table()).to_pandas()
        records = [r for f in files if f.suffix in (".jsonl", ".json") for r in _read_json_records(f)]
        if not records and not files:
            raise FileNotFoundError(f"no .parquet/.jsonl/.json files under {path}")
        return pd.DataFrame.from_records(records[: cfg.limit] if cfg.limit else records)
    spec = SPECS[cfg.kind]
    hub_id = cfg.hub_id or spec.hub_id
    if hub_id is None:
        raise ValueError(f"source kind={cfg.kind!r} needs path= (a local file or folder) or hub_id=")
    files, fs = hub_parquet_files(hub_id, cfg.hub_config or spec.hub_config, cfg.split)
    log.info("reading %s (%d Parquet files) from the hub", hub_id, len(files))
    table = pads.dataset(files, format="parquet", filesystem=fs)
    return (table.head(cfg.limit) if cfg.limit else table.to_table()).to_pandas()


def source_name(cfg: SourceConfig) -> str:
    if cfg.name:
        return cfg.name
    if cfg.kind == "local":
        return f"local:{Path(cfg.path or '').name}"
    return cfg.hub_id or (SPECS[cfg.kind].hub_id if cfg.kind in SPECS else None) or cfg.kind


def normalise(raw: pd.DataFrame, cfg: SourceConfig) -> pd.DataFrame:
    """Rename to our schema, parse source-specific formats, coerce types, add ids."""
    spec = SPECS.get(cfg.kind, SourceSpec())
    mapping = {**spec.column_map, **cfg.column_map}  # ours -> theirs
    theirs_to_ours = {theirs: ours for ours, theirs in mapping.items()}
    fed = set(mapping)  # our columns that a differently named source column feeds
    rows = []
    for record in raw.to_dict("records"):
        row: dict[str, Any] = {}
        for column, value in record.items():
            if column in theirs_to_ours:
                row[theirs_to_ours[column]] = value
            elif column in ("id", "source") or column in fed:
                row[f"orig_{column}"] = value  # keep the source's own column beside ours
            else:
                row[column] = value
        rows.append(spec.parse(row) if spec.parse else row)
    df = pd.DataFrame.from_records(rows)
    for column in (*SCHEMA, REASON):
        if column not in df.columns:
            df[column] = None
    df["source"] = source_name(cfg)
    df = coerce_types(df, required=("question", "response"), optional=("reference_answer", "critique"))
    df["id"] = [content_id(s, q or "", r or "") for s, q, r in zip(df["source"], df["question"], df["response"])]
    return df[[*[c for c in KNOWN if c in df.columns], *[c for c in df.columns if c not in KNOWN]]]


def synthetic_source(cfg: SourceConfig) -> pd.DataFrame:
    return pd.DataFrame(arithmetic_problems(cfg.num_rows, cfg.seed))


def load_source(cfg: SourceConfig) -> pd.DataFrame:
    """One source, normalised; rows with type problems carry a ``quarantine_reason``."""
    raw = synthetic_source(cfg) if cfg.kind == "synthetic" else read_raw(cfg)
    if cfg.limit:
        raw = raw.head(cfg.limit)
    df = normalise(raw, cfg)
    log.info("loaded %d rows from %s", len(df), source_name(cfg))
    return df


def to_arrow(df: pd.DataFrame) -> pa.Table:
    """Arrow table of a loaded frame; an extra column of mixed types is kept as JSON text."""
    columns = {}
    for name in df.columns:
        try:
            columns[name] = pa.array(df[name].tolist(), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[name] = pa.array([None if v is None else json.dumps(v, default=str) for v in df[name]])
    return pa.table(columns)

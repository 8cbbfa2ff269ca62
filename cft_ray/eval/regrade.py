"""Re-grading saved completions (``cft-ray grade``): one output row per input row, written as it goes.

Input: JSONL rows with ``completion`` and ``reference`` (and optionally ``benchmark``, for the
option letters of multiple-choice sets). Each input line becomes exactly one output line, in order:
the row plus ``extracted``, ``correct``, ``timed_out`` and ``error``; or, for a line that cannot be
a row (invalid UTF-8, not JSON, not an object, a missing field), ``{"line", "raw", "error"}``.
Rows are graded and written a batch at a time, so a crash loses at most one batch; a rerun with
the same settings (kept beside the output in ``<output>.settings.json``) skips the rows already
written, and one with other settings starts the output again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cft_ray.core.benchmarks import BENCHMARKS, LETTERS
from cft_ray.core.scores import ScoreMode
from cft_ray.eval.equivalence import Backend
from cft_ray.eval.grader import Grader


@dataclass
class RegradeSummary:
    rows: int  # output rows: graded plus bad lines
    graded: int
    correct: int
    timed_out: int
    grade_errors: int  # rows whose grading raised (they count as wrong)
    bad_lines: int
    resumed_from: int  # rows found already written


def _input_rows(path: Path) -> Iterator[tuple[dict, bool]]:
    """(row, True) for every non-blank line that is a row, else (its error record, False)."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                yield {"line": number, "raw": text[:1000], "error": f"line {number}: not valid UTF-8 ({exc.reason})"}, False
                continue
            except json.JSONDecodeError as exc:
                yield {"line": number, "raw": text[:1000], "error": f"line {number}: not valid JSON ({exc.msg})"}, False
                continue
            missing = [k for k in ("completion", "reference") if not isinstance(row, dict) or row.get(k) is None]
            if missing:
                what = "not a JSON object" if not isinstance(row, dict) else f"missing {', '.join(missing)}"
                yield {"line": number, "raw": text[:1000], "error": f"line {number}: {what}"}, False
                continue
            yield row, True


def _letters(row: dict) -> str | None:
    bench = BENCHMARKS.get(str(row.get("benchmark", "")))
    return LETTERS[: bench.num_options] if bench is not None and bench.num_options else None


def _rows_written(output: Path) -> int:
    """Complete lines already in ``output``; a torn last line (a crash mid-write) is cut off."""
    data = output.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        output.write_bytes(complete)
    return complete.count(b"\n")


def regrade(input_path: str | Path, output_path: str | Path, mode: ScoreMode, timeout_s: float = 3.0,
            workers: int = 2, backend: Backend = "math-verify", batch_size: int = 256) -> RegradeSummary:
    input_path, output = Path(input_path), Path(output_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    settings_file = output.with_name(output.name + ".settings.json")
    settings = {"input": str(input_path.resolve()), "mode": mode, "timeout_s": timeout_s, "backend": backend}
    same = settings_file.exists() and output.exists() and json.loads(settings_file.read_text()) == settings
    done = _rows_written(output) if same else 0
    if not same:
        output.write_text("")
        settings_file.write_text(json.dumps(settings))

    with Grader(modes=(mode,), timeout_s=timeout_s, num_workers=workers, backend=backend) as grader, \
            output.open("a") as out:
        batch: list[tuple[dict, bool]] = []

        def flush() -> None:
            good = [row for row, ok in batch if ok]
            grades = grader.grade([str(r["completion"]) for r in good], [str(r["reference"]) for r in good],
                                  [_letters(r) for r in good])
            for row, grade in zip(good, grades):
                row.update(extracted=grade.extracted, correct=grade.correct[mode], timed_out=grade.timed_out,
                           error=grade.error)
            out.write("".join(json.dumps(row, ensure_ascii=False) + "\n" for row, _ in batch))
            out.flush()
            batch.clear()

        for index, item in enumerate(_input_rows(input_path)):
            if index < done:
                continue
            batch.append(item)
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
    return _summarize(output, done)


def _summarize(output: Path, resumed_from: int) -> RegradeSummary:
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    graded = [r for r in rows if "timed_out" in r]
    return RegradeSummary(
        rows=len(rows), graded=len(graded), correct=sum(bool(r["correct"]) for r in graded),
        timed_out=sum(bool(r["timed_out"]) for r in graded),
        grade_errors=sum(bool(r["error"]) and not r["timed_out"] for r in graded),
        bad_lines=len(rows) - len(graded), resumed_from=resumed_from,
    )

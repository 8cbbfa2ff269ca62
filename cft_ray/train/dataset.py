"""Training samples: alpaca rows -> ChatML token ids with loss on the assistant part only,
the cutoff policy, the per-step plan (which samples each worker packs into which micro batch)
and, from it, the rows of each worker's Ray Dataset: its collated micro batches in plan order.

Rendering goes through :mod:`cft_ray.core.formats`, so the bytes trained on are those of
reference section 1: ``prompt + output + "<|im_end|>" + "\\n"``. Loss is on
``output + "<|im_end|>"``; the trailing newline is part of the text but carries no loss.

Cutoff policy: a row longer than ``cutoff_len`` tokens loses the *end of its input* (the
solution's tail) first. The assistant part is never cut: a row whose prompt head, tail and
full target cannot fit even with an empty input is dropped, counted and reported.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cft_ray.core.formats import render_prompt, render_target

IGNORE_INDEX = -100
_SLOT = "\x00CFT_RAY_INPUT_SLOT\x00"  # marks where the input sits inside the rendered prompt


class TrainDataError(ValueError):
    """A training dataset that cannot be trained on, with the reason and how to fix it."""


@dataclass
class Samples:
    """Tokenised samples as flat arrays (cheap to ship through Ray's object store).

    Sample ``i`` is ``tokens[offsets[i]:offsets[i+1]]``; its first ``prompt_lens[i]``
    tokens and its last ``tail_lens[i]`` tokens (the closing newline) carry no loss.
    """

    tokens: np.ndarray
    offsets: np.ndarray
    prompt_lens: np.ndarray
    tail_lens: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def input_ids(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    def labels(self, i: int) -> np.ndarray:
        labels = self.input_ids(i).astype(np.int64)
        labels[: self.prompt_lens[i]] = IGNORE_INDEX
        if self.tail_lens[i]:
            labels[-self.tail_lens[i] :] = IGNORE_INDEX
        return labels

    def num_loss_tokens(self, i: int) -> int:
        return int(self.offsets[i + 1] - self.offsets[i] - self.prompt_lens[i] - self.tail_lens[i])


@dataclass
class DataReport:
    """What happened to every input row: trained on (maybe with a cut input) or dropped."""

    rows: int = 0
    kept: int = 0
    inputs_truncated: int = 0
    dropped_too_long: int = 0
    dropped: list[dict] = field(default_factory=list)  # {"id", "reason", "tokens"}

    def summary(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "dropped"}


def read_rows(path: str | Path) -> list[dict]:
    """Alpaca rows from a Parquet file or a folder of them (a data builder's output folder)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise TrainDataError(f"training data {path} does not exist; build it with `cft-ray data` first")
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files:
        raise TrainDataError(f"no .parquet files in {path}")
    rows = [row for f in files for row in pq.read_table(f).to_pylist()]
    missing = {"instruction", "output"} - set(rows[0]) if rows else set()
    if missing:
        raise TrainDataError(f"{path}: columns {sorted(missing)} are missing; expected instruction, input, output")
    return rows


def tokenize_rows(rows: list[dict], tokenizer, system: str, cutoff_len: int) -> tuple[Samples, DataReport]:
    """Tokenise rows with the cutoff policy. Raises :class:`TrainDataError` on an empty set,
    on rows with no assistant part, and when no row fits at all."""
    if not rows:
        raise TrainDataError("the training dataset has no rows")
    empty = [str(r.get("id", i)) for i, r in enumerate(rows) if not (r.get("output") or "").strip()]
    if empty:
        raise TrainDataError(
            f"{len(empty)} of {len(rows)} rows have no assistant part (empty `output`), e.g. ids "
            f"{empty[:5]}; every training row needs the text the model should learn to write"
        )

    def encode(texts: list[str]) -> list[list[int]]:
        return tokenizer(texts, add_special_tokens=False)["input_ids"]

    probes = [render_prompt(r["instruction"], _SLOT, system) for r in rows]
    heads = encode([p[: p.index(_SLOT)] for p in probes])
    tails = encode([p[p.index(_SLOT) + len(_SLOT) :] for p in probes])
    inputs = encode([r.get("input") or "" for r in rows])
    targets = encode([render_target(r["output"]) for r in rows])
    newline = encode(["\n"])[0]
    no_input_prompts = {i: encode([render_prompt(r["instruction"], "", system)])[0] for i, r in enumerate(rows) if not r.get("input")}

    report = DataReport(rows=len(rows))
    pieces, prompt_lens, tail_lens = [], [], []
    for i, row in enumerate(rows):
        if i in no_input_prompts:  # user text is the instruction alone (no "\n" joiner)
            prompt = no_input_prompts[i]
        else:
            room = cutoff_len - len(heads[i]) - len(tails[i]) - len(targets[i]) - len(newline)
            kept_input = inputs[i][: max(room, 0)]
            if len(kept_input) < len(inputs[i]):
                report.inputs_truncated += 1
            prompt = heads[i] + kept_input + tails[i]
        sample = prompt + targets[i] + newline
        if len(sample) > cutoff_len:
            report.dropped_too_long += 1
            report.dropped.append({"id": str(row.get("id", i)), "reason": "target does not fit cutoff_len", "tokens": len(sample)})
            continue
        pieces.append(sample)
        prompt_lens.append(len(prompt))
        tail_lens.append(len(newline))
    report.kept = len(pieces)
    if not pieces:
        shortest = min(d["tokens"] for d in report.dropped)
        raise TrainDataError(
            f"cutoff_len={cutoff_len} is too small: none of the {len(rows)} rows fits even with its "
            f"input cut away (the shortest needs {shortest} tokens); raise train.cutoff_len"
        )
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p in pieces])
    samples = Samples(
        tokens=np.fromiter((t for p in pieces for t in p), dtype=np.int32, count=int(offsets[-1])),
        offsets=offsets,
        prompt_lens=np.asarray(prompt_lens, dtype=np.int64),
        tail_lens=np.asarray(tail_lens, dtype=np.int64),
    )
    return samples, report


def write_dropped(report: DataReport, path: Path) -> None:
    path.write_text("".join(json.dumps(d) + "\n" for d in report.dropped))


# --- the plan: which sample goes where, step by step -------------------------------------------


def pack(sample_ids: list[int], lengths: np.ndarray, capacity: int) -> list[list[int]]:
    """First-fit-decreasing bin packing of samples into sequences of at most ``capacity`` tokens."""
    bins: list[list[int]] = []
    room: list[int] = []
    for s in sorted(sample_ids, key=lambda s: -lengths[s]):
        for b, free in enumerate(room):
            if lengths[s] <= free:
                bins[b].append(s)
                room[b] -= lengths[s]
                break
        else:
            bins.append([s])
            room.append(capacity - lengths[s])
    # Fullest first, so the sequences batched together have similar lengths (less padding).
    return [bins[b] for b in sorted(range(len(bins)), key=lambda b: room[b])]


def plan_steps(
    lengths: np.ndarray,
    *,
    global_batch_size: int,
    num_workers: int,
    micro_batch_size: int,
    num_epochs: float,
    max_steps: int | None,
    packing: bool,
    cutoff_len: int,
    seed: int,
) -> list[list[list[list[list[int]]]]]:
    """``plan[step][rank]`` is that rank's list of micro batches; a micro batch is a list of
    sequences; a sequence is a list of sample ids (one id unless packed).

    Every optimizer step takes ``global_batch_size`` samples (the last one of an epoch may take
    fewer), so packing changes the number of forward passes, not what a step learns from.
    Samples are spread over ranks by tokens (longest first onto the least loaded rank), and
    every rank gets the same number of micro batches (ZeRO's collectives run per forward), a
    short rank padding with empty micro batches.
    """
    n = len(lengths)
    rng = random.Random(seed)
    order: list[int] = []
    epochs = int(np.ceil(num_epochs))
    for _ in range(epochs):
        perm = list(range(n))
        rng.shuffle(perm)
        order.extend(perm)
    order = order[: int(round(n * num_epochs))] or order[:1]
    batches = [order[i : i + global_batch_size] for i in range(0, len(order), global_batch_size)]
    if max_steps is not None:
        while len(batches) < max_steps:  # max_steps beyond the data: keep cycling, reshuffled
            perm = list(range(n))
            rng.shuffle(perm)
            batches.extend(perm[i : i + global_batch_size] for i in range(0, n, global_batch_size))
        batches = batches[:max_steps]

    plan = []
    for batch in batches:
        per_rank: list[list[int]] = [[] for _ in range(num_workers)]
        load = [0] * num_workers
        for s in sorted(batch, key=lambda s: -lengths[s]):
            r = load.index(min(load))
            per_rank[r].append(s)
            load[r] += int(lengths[s])
        step = []
        for ids in per_rank:
            seqs = pack(ids, lengths, cutoff_len) if packing else [[s] for s in ids]
            step.append([seqs[i : i + micro_batch_size] for i in range(0, len(seqs), micro_batch_size)])
        most = max(len(m) for m in step)
        plan.append([m + [[] for _ in range(most - len(m))] for m in step])
    return plan


def collate(samples: Samples, micro_batch: list[list[int]], pad_token_id: int) -> dict[str, np.ndarray]:
    """One micro batch as ``input_ids`` / ``labels`` / ``position_ids`` (int64, right padded).

    No attention mask: positions restart at 0 for every sample (and for the padding), and
    transformers then builds a block-diagonal causal mask from the position ids, so no token
    attends across samples. An empty micro batch (a rank with less work this step) becomes one
    padding token with no loss, so the rank still joins the collectives.
    """
    if not micro_batch:
        micro_batch = [[]]
    rows = []
    for seq in micro_batch:
        ids = [samples.input_ids(s) for s in seq] or [np.asarray([pad_token_id], dtype=np.int32)]
        labels = [samples.labels(s) for s in seq] or [np.asarray([IGNORE_INDEX])]
        rows.append((np.concatenate(ids), np.concatenate(labels), np.concatenate([np.arange(len(x)) for x in ids])))
    width = max(len(r[0]) for r in rows)
    out = {
        "input_ids": np.full((len(rows), width), pad_token_id, dtype=np.int64),
        "labels": np.full((len(rows), width), IGNORE_INDEX, dtype=np.int64),
        "position_ids": np.zeros((len(rows), width), dtype=np.int64),
    }
    for b, (ids, labels, pos) in enumerate(rows):
        out["input_ids"][b, : len(ids)] = ids
        out["labels"][b, : len(ids)] = labels
        out["position_ids"][b, : len(ids)] = pos
        out["position_ids"][b, len(ids) :] = np.arange(width - len(ids))  # padding: its own segment
    return out


def rank_rows(samples: Samples, plan: list, pad_token_id: int) -> list[list[dict]]:
    """The plan as the rows of one Ray Dataset per rank: ``rows[rank]`` holds one row per
    (step, micro batch) of that rank, in plan order, with the collated micro batch and three
    counts over the whole global batch of its step (every rank, every micro batch):
    ``step_loss_tokens`` (the loss normaliser, known before the step's first forward),
    ``step_tokens`` (real tokens) and ``step_positions`` (real and padding)."""
    lengths = samples.lengths()
    rows: list[list[dict]] = [[] for _ in plan[0]]
    for step, per_rank in enumerate(plan):
        batches = [[collate(samples, mb, pad_token_id) for mb in micro_batches] for micro_batches in per_rank]
        counts = {
            "step_loss_tokens": sum(int((b["labels"][:, 1:] != IGNORE_INDEX).sum()) for bs in batches for b in bs),
            "step_tokens": sum(int(lengths[s]) for mbs in per_rank for mb in mbs for seq in mb for s in seq),
            "step_positions": sum(b["input_ids"].size for bs in batches for b in bs),
        }
        for rank, bs in enumerate(batches):
            # int32 in the object store (half of int64: token ids, labels and positions all fit);
            # the worker widens them to the int64 torch wants.
            rows[rank].extend({"step": step, "micro_batch": i, **{k: v.astype(np.int32) for k, v in b.items()},
                               **counts} for i, b in enumerate(bs))
    return rows

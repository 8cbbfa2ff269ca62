"""Training samples without Ray: rendering, labels, the cutoff policy, packing exactness, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cft_ray.config import load_config
from cft_ray.core.formats import DEFAULT_SYSTEM_PROMPT, cft_row, render_chat, render_target
from cft_ray.core.synthetic import arithmetic_problems
from cft_ray.train import TrainDataError, train
from cft_ray.train.dataset import IGNORE_INDEX, collate, plan_steps, rank_rows, tokenize_rows
from cft_ray.train.trainer import token_loss_sum


def cft_rows(n: int, seed: int = 0) -> list[dict]:
    rows = []
    for i, p in enumerate(arithmetic_problems(n, seed=seed)):
        verdict = "right" if p["response_is_correct"] else "wrong"
        critique = f"The steps give {p['reference_answer']}.\nConclusion: {verdict} [END]"
        rows.append({"id": f"r{i}", **cft_row(p["question"], p["response"], critique)})
    return rows


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_text_is_reference_rendering_and_only_the_critique_carries_loss(tokenizer):
    rows = cft_rows(6)
    samples, report = tokenize_rows(rows, tokenizer, DEFAULT_SYSTEM_PROMPT, cutoff_len=2048)
    assert report.kept == 6 and report.inputs_truncated == 0
    for i, row in enumerate(rows):
        text = tokenizer.decode(samples.input_ids(i))
        assert text == render_chat(row["instruction"], row["input"], row["output"])  # byte for byte
        # Reference section 1, written out literally for the first row.
        if i == 0:
            assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                                   "Please critique whether the following solution to the question is correct.\n\n\n"
                                   "Question:\n")
            assert text.endswith("<|im_start|>assistant\nCritique:\n" + row["output"].removeprefix("Critique:\n")
                                 + "<|im_end|>\n")
        labels = samples.labels(i)
        trained = tokenizer.decode([t for t in labels if t != IGNORE_INDEX])
        assert trained == render_target(row["output"])  # the critique and <|im_end|>, nothing else


def test_cutoff_cuts_the_input_never_the_conclusion(tokenizer):
    rows = cft_rows(4)
    full, _ = tokenize_rows(rows, tokenizer, DEFAULT_SYSTEM_PROMPT, cutoff_len=4096)
    target_len = full.num_loss_tokens(0)
    cutoff = int(full.lengths().min()) - 5
    cut, report = tokenize_rows(rows, tokenizer, DEFAULT_SYSTEM_PROMPT, cutoff_len=cutoff)
    assert report.inputs_truncated == 4 and report.kept == 4
    assert cut.lengths().max() <= cutoff
    assert tokenizer.decode([t for t in cut.labels(0) if t != IGNORE_INDEX]) == render_target(rows[0]["output"])
    assert cut.num_loss_tokens(0) == target_len
    assert "Conclusion: " in tokenizer.decode(cut.input_ids(0))

    # A critique that cannot fit even with the whole input cut: dropped, counted, reported.
    long_rows = rows + [{"id": "long", **cft_row("q?", "r", "blah " * 400 + "Conclusion: right [END]")}]
    _, report = tokenize_rows(long_rows, tokenizer, DEFAULT_SYSTEM_PROMPT, cutoff_len=cutoff)
    assert report.dropped_too_long == 1 and report.dropped[0]["id"] == "long" and report.kept == 4


def test_packed_loss_equals_unpacked_loss(tokenizer, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    samples, _ = tokenize_rows(cft_rows(7), tokenizer, DEFAULT_SYSTEM_PROMPT, cutoff_len=2048)
    ids = list(range(7))
    kwargs = dict(global_batch_size=7, num_workers=1, num_epochs=1.0, max_steps=None, cutoff_len=1024, seed=0)
    packed_plan = plan_steps(samples.lengths(), micro_batch_size=1, packing=True, **kwargs)
    plain_plan = plan_steps(samples.lengths(), micro_batch_size=3, packing=False, **kwargs)
    packed_mbs = packed_plan[0][0]
    assert sorted(s for mb in packed_mbs for seq in mb for s in seq) == ids
    assert max(len(seq) for mb in packed_mbs for seq in mb) > 1  # really packed

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa").eval()

    def mean_loss(micro_batches):
        total, tokens = 0.0, 0
        for mb in micro_batches:
            batch = {k: torch.from_numpy(v) for k, v in collate(samples, mb, tokenizer.pad_token_id).items()}
            with torch.no_grad():
                total += token_loss_sum(model, batch).item()
            tokens += int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        return total / tokens, tokens

    packed, packed_tokens = mean_loss(packed_mbs)
    plain, plain_tokens = mean_loss(plain_plan[0][0])
    single, _ = mean_loss([[[s]] for s in ids])  # one sample per forward, no padding at all
    assert packed_tokens == plain_tokens == sum(samples.num_loss_tokens(i) for i in ids)
    assert packed == pytest.approx(single, rel=1e-5) and plain == pytest.approx(single, rel=1e-5)
    # Packing (one packed sequence per forward) leaves no padding; plain batches do.
    positions = lambda mbs: sum(collate(samples, mb, 0)["input_ids"].size for mb in mbs)  # noqa: E731
    assert positions(packed_mbs) == int(samples.lengths().sum()) < positions(plain_plan[0][0])


def test_plan_gives_every_rank_the_same_number_of_micro_batches():
    lengths = np.array([100, 90, 5, 5, 5, 5, 5, 5, 300, 20, 7, 8])
    plan = plan_steps(lengths, global_batch_size=6, num_workers=2, micro_batch_size=1, num_epochs=1.0,
                      max_steps=None, packing=True, cutoff_len=310, seed=1)
    assert len(plan) == 2
    seen = sorted(s for step in plan for rank in step for mb in rank for seq in mb for s in seq)
    assert seen == list(range(12))  # one epoch: each sample exactly once
    for step in plan:
        assert len(step[0]) == len(step[1])
    assert len(plan_steps(lengths, global_batch_size=6, num_workers=2, micro_batch_size=1, num_epochs=1.0,
                          max_steps=5, packing=False, cutoff_len=310, seed=1)) == 5



def test_rank_rows_are_each_ranks_plan_in_order_with_the_global_counts(tokenizer):
    samples, _ = tokenize_rows(cft_rows(10), tokenizer, DEFAULT_SYSTEM_PROMPT, cutoff_len=2048)
    plan = plan_steps(samples.lengths(), global_batch_size=4, num_workers=2, micro_batch_size=1, num_epochs=1.0,
                      max_steps=None, packing=False, cutoff_len=2048, seed=0)
    rows = rank_rows(samples, plan, tokenizer.pad_token_id)
    assert len(rows) == 2 and len(plan) == 3
    for rank, own in enumerate(rows):
        assert [(r["step"], r["micro_batch"]) for r in own] == [
            (s, i) for s, step in enumerate(plan) for i in range(len(step[rank]))]
        for r in own:
            expected = collate(samples, plan[r["step"]][rank][r["micro_batch"]], tokenizer.pad_token_id)
            assert all(np.array_equal(r[k], v) for k, v in expected.items())
    for s, step in enumerate(plan):
        ids = [i for mbs in step for mb in mbs for seq in mb for i in seq]
        counts = {(r["step_loss_tokens"], r["step_tokens"]) for own in rows for r in own if r["step"] == s}
        assert counts == {(sum(samples.num_loss_tokens(i) for i in ids), int(samples.lengths()[ids].sum()))}


def _write(rows: list[dict], path) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows) if rows else pa.table({"instruction": pa.array([], pa.string()),
                   "input": pa.array([], pa.string()), "output": pa.array([], pa.string())}), path)
    return str(path)


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty", "has no rows"),
        ("no-output", "no assistant part"),
        ("tiny-cutoff", "cutoff_len=16 is too small"),
        ("missing-model", "does not exist"),
    ],
)
def test_bad_input_fails_before_any_worker(case, message, tmp_path, tiny_model_dir):

    rows = cft_rows(3)
    overrides = []
    if case == "no-output":
        rows[1]["output"] = ""
    if case == "tiny-cutoff":
        overrides.append("train.cutoff_len=16")
    if case == "missing-model":
        overrides.append(f"model.name_or_path={tmp_path / 'no-such-model'}")
    path = _write([] if case == "empty" else rows, tmp_path / "data.parquet")
    config = load_config("smoke", overrides=overrides)
    with pytest.raises(TrainDataError, match=message):
        train(tmp_path / "out", dataset=path, model=config.model, train=config.train, ray=config.ray)
    assert not (tmp_path / "out").exists()  # failed before planning, so before any worker

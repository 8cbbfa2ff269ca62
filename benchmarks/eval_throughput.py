"""Evaluation throughput: the grader (rate and agreement) and generation (actor pool vs bare vLLM
vs transformers ``generate``), all measured in this run. Writes benchmarks/results/eval_throughput.json.

    python benchmarks/eval_throughput.py [--data-dir ../shared/benchdata] [--prompts 64] [--max-tokens 64]
    python benchmarks/eval_throughput.py --gpu   # a random-initialised 0.5B Qwen2 on one GPU

math-verify is compared on the same pairs (a package dependency since it is the default grading backend).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from cft_ray.core.benchmarks import BENCHMARKS, LETTERS
from cft_ray.eval.equivalence import normalize, numeric_value
from cft_ray.eval.grader import Grader

RESULTS = Path(__file__).parent / "results" / "eval_throughput.json"

# Hand-written pairs the generator below cannot derive from a reference: (answer, reference, equal?).
CURATED = [
    ("2\\sqrt{3}", "\\sqrt{12}", True), ("\\sqrt{8}", "2\\sqrt{2}", True), ("3+x+2y", "2y+x+3", True),
    ("b^2+a^2", "a^2+b^2", True), ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}", True), ("1.5\\times10^{3}", "1500", True),
    ("6.02e23", "6.02 \\times 10^{23}", True), ("x \\in [1, 5)", "[1,5)", True), ("y = 2x + 1", "2x+1", True),
    ("\\text{(C)}", "C", True), ("\\pi/4", "\\frac{\\pi}{4}", True), ("45^{\\circ}", "45", True),
    ("(x+1)(x-1)", "x^2-1", True), ("\\begin{pmatrix} 2 & 0 \\\\ 1 & 3 \\end{pmatrix}", "\\begin{pmatrix}2&0\\\\1&3\\end{pmatrix}", True),
    ("2\\sqrt{3}", "3\\sqrt{2}", False), ("3+x+2y", "2y+x+4", False), ("(1, 2)", "(2, 1)", False), ("[1,5]", "[1,5)", False),
    ("x^2+1", "x^2-1", False), ("\\frac{\\pi}{3}", "\\frac{\\pi}{4}", False), ("6.02e22", "6.02e23", False),
    ("\\begin{pmatrix} 2 & 0 \\\\ 1 & 3 \\end{pmatrix}", "\\begin{pmatrix}2&0\\\\1&4\\end{pmatrix}", False),
]


def references(data_dir: str) -> list[tuple[str, str, str | None]]:
    """(benchmark, reference, option letters or None) for every sample of every file benchmark."""
    out = []
    for name, bench in BENCHMARKS.items():
        if name == "mmlu-pro" or not (Path(data_dir) / name).exists() and name != "synthetic-arith":
            continue
        for s in bench.load(data_dir):
            out.append((name, s.reference, LETTERS[: len(s.choices)] if s.choices else None))
    return out


def rewritings(ref: str) -> list[tuple[str, bool]]:
    """Equivalent rewritings and near misses of one reference: (answer, equal?)."""
    pairs: list[tuple[str, bool]] = []
    low = ref.strip().lower()
    if low in ("true", "false", "yes", "no"):
        other = {"true": "False", "false": "True", "yes": "No", "no": "Yes"}[low]
        return [(f"\\text{{{ref}}}", True), (ref.upper(), True), (other, False)]
    if len(ref) == 1 and ref in LETTERS:
        return [(f"({ref})", True), (LETTERS[(LETTERS.index(ref) + 1) % 4], False)]
    value = numeric_value(normalize(ref))
    if value is None:
        return [(ref.replace("\\frac", "\\dfrac"), True), (f"{ref}+1", False)]
    if value == int(value) and abs(value) < 1e12:
        n = int(value)
        pairs += [(f"{n:,}", True), (f"x = {n}", True), (f"\\${n}", True), (f"{n}^\\circ", True),
                  (f"{n}\\%", True), (f"{n}.0", True), (f"{n:.6e}", True), (f"{n} \\text{{ units}}", True),
                  (f"{n * 1.001 + (1 if n >= 0 else -1):.6g}", False)]  # beyond the 1e-4 tolerance
    else:
        pairs += [(f"{value:.8g}", True), (f"{value * (1 + 5e-5):.10g}", True), (f"{value:.4e}", True),
                  (f"{value * 1.001 + 0.002:.8g}", False)]
    if "\\frac" in ref:
        pairs.append((ref.replace("\\frac", "\\dfrac"), True))
    return pairs


def agreement_set(refs) -> list[tuple[str, str, str | None, bool]]:
    """(completion, reference, letters, expected) over every reference, plus several-answer completions."""
    rows = []
    for _, ref, letters in refs:
        for answer, expected in rewritings(ref):
            rows.append((f"Reasoning... The answer is \\boxed{{{answer}}}.", ref, letters, expected))
    for answer, ref, expected in CURATED:
        rows.append((f"So \\boxed{{{answer}}}", ref, None, expected))
    for _, ref, letters in refs[::5]:  # several answers in one completion: the last one counts
        wrong = next(answer for answer, equal in rewritings(ref) if not equal)
        rows.append((f"First \\boxed{{{wrong}}}, but fixing a slip: \\boxed{{{ref}}}", ref, letters, True))
        rows.append((f"First \\boxed{{{ref}}}, but on reflection \\boxed{{{wrong}}}", ref, letters, False))
    return rows


def bench_grader(data_dir: str, workers: int) -> dict:
    refs = references(data_dir)
    gold = [f"Step one gives 12. The answer is \\boxed{{{r}}}." for _, r, _ in refs]
    with Grader(modes=("strict",), num_workers=workers) as grader:
        start = time.perf_counter()
        graded = grader.grade(gold, [r for _, r, _ in refs], [lt for *_, lt in refs])
        gold_s = time.perf_counter() - start
        rows = agreement_set(refs[::10])  # every 10th reference: thousands of pairs, minutes not hours
        start = time.perf_counter()
        verdicts = grader.grade([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])
        agree_s = time.perf_counter() - start
        timeouts = grader.timeouts
    agree = [v.correct["strict"] == r[3] for v, r in zip(verdicts, rows)]
    result = {
        "references": len(refs), "gold_correct": sum(g.correct["strict"] for g in graded),
        "gold_rate_per_s": round(len(refs) / gold_s, 1),
        "agreement_pairs": len(rows), "agreement_pct": round(100 * sum(agree) / len(rows), 2),
        "agreement_rate_per_s": round(len(rows) / agree_s, 1), "timeouts": timeouts, "workers": workers,
        "disagreements": [(r[0][-80:], r[1], r[3]) for r, ok in zip(rows, agree) if not ok][:20],
    }
    result["math_verify"] = bench_math_verify(rows)
    return result


def bench_math_verify(rows) -> dict | str:
    try:
        from math_verify import parse, verify
    except ImportError:
        return "not installed"
    start, agree = time.perf_counter(), 0
    for completion, ref, _, expected in rows:
        try:
            verdict = bool(verify(parse(f"${ref}$"), parse(completion)))
        except Exception:  # noqa: BLE001 - its failures count as "not equal"
            verdict = False
        agree += verdict == expected
    return {"agreement_pct": round(100 * agree / len(rows), 2), "rate_per_s": round(len(rows) / (time.perf_counter() - start), 1)}


def bench_generation(model: str, prompts: list[str], max_tokens: int, use_gpu: bool) -> dict:
    import ray

    from cft_ray.models.generation import EngineSpec, Sampling, generate

    engine, sampling = EngineSpec(model=model, use_gpu=use_gpu), Sampling(max_tokens=max_tokens)
    out: dict = {"prompts": len(prompts), "max_tokens": max_tokens}

    start = time.perf_counter()  # bare engine, as a plain script would use it
    from vllm import LLM, SamplingParams

    llm = LLM(**engine.llm_kwargs())
    started = time.perf_counter()
    results = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=max_tokens), use_tqdm=False)
    out["bare_vllm"] = {"total_s": round(time.perf_counter() - start, 2), "generate_s": round(time.perf_counter() - started, 2),
                        "tokens": sum(len(r.outputs[0].token_ids) for r in results)}
    del llm

    from cft_ray.raycluster import connect

    connect()
    start = time.perf_counter()  # the actor pool, engine start included like the bare total
    rows = generate(ray.data.from_items([{"prompt": p} for p in prompts]), engine, sampling).take_all()
    out["actor_pool"] = {"total_s": round(time.perf_counter() - start, 2), "tokens": int(sum(r["completion_tokens"] for r in rows))}

    out["transformers"] = bench_transformers(model, prompts, max_tokens, use_gpu)
    out["pool_over_bare"] = round(out["actor_pool"]["total_s"] / out["bare_vllm"]["total_s"], 3)
    out["transformers_over_bare_generate"] = round(out["transformers"]["generate_s"] / out["bare_vllm"]["generate_s"], 3)
    return out


def bench_transformers(model: str, prompts: list[str], max_tokens: int, use_gpu: bool) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model, padding_side="left")
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32 if not use_gpu else torch.bfloat16)
    lm = lm.to("cuda" if use_gpu else "cpu").eval()
    start, tokens = time.perf_counter(), 0
    with torch.no_grad():
        for i in range(0, len(prompts), 32):
            batch = tok(prompts[i : i + 32], return_tensors="pt", padding=True).to(lm.device)
            gen = lm.generate(**batch, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
            tokens += int((gen[:, batch["input_ids"].shape[1] :] != tok.pad_token_id).sum())
    return {"generate_s": round(time.perf_counter() - start, 2), "tokens": tokens, "batch_size": 32}


def random_qwen2(folder: Path, tokenizer_from: str) -> str:
    """A random-initialised ~0.5B Qwen2 (GPU run; no weights are downloaded)."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_from)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=4096,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "benchdata"))
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--gpu", action="store_true")
    parser.add_argument("--skip-generation", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

    result: dict = {"grader": bench_grader(args.data_dir, args.workers)}
    g = result["grader"]
    print(f"grader: {g['references']} references at {g['gold_rate_per_s']}/s ({g['gold_correct']} correct); "
          f"agreement {g['agreement_pct']}% on {g['agreement_pairs']} pairs at {g['agreement_rate_per_s']}/s; "
          f"timeouts {g['timeouts']}; math-verify: {g['math_verify']}")
    if not args.skip_generation:
        from cft_ray.config import ModelConfig
        from cft_ray.eval.prompts import render
        from cft_ray.models.tiny import resolve_model

        model = str(resolve_model(ModelConfig()))
        if args.gpu:
            model = random_qwen2(Path("/tmp/cft-ray-qwen2-0.5b-random"), model)
        samples = BENCHMARKS["math-500"].load(args.data_dir)[: args.prompts]
        prompts = [render(s, "qwen25-math-cot") for s in samples]
        result["generation"] = bench_generation(model, prompts, args.max_tokens, args.gpu)
        gen = result["generation"]
        print(f"generation: actor pool {gen['actor_pool']['total_s']} s vs bare vLLM {gen['bare_vllm']['total_s']} s "
              f"(x{gen['pool_over_bare']}); transformers generate {gen['transformers']['generate_s']} s vs bare vLLM "
              f"generate {gen['bare_vllm']['generate_s']} s (x{gen['transformers_over_bare_generate']})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()

"""Teacher generation throughput of the synthesize stage: batched against one chunk at a time, in
the same run, with the stage's own ``HFGenerator`` (left padding, chat template, seeded sampling).

    .venv/bin/python benchmarks/synthesis_batching.py

The teacher is a random llama built on the spot (hidden 256, 4 layers, vocab 2,000: a small model
that still spends its time in matmuls, not Python), with a byte-level BPE trained on the prompts.
Each request is the real task prompt around a ~200-token chunk, and asks for MAX_NEW tokens at
temperature 0.7. A random model almost never emits EOS, so every row decodes MAX_NEW tokens and
the token counts are equal across settings; tokens/s is counted from the replies' token ids.
torch is pinned to 2 threads: on 2 shared cores free threading makes the timing noise.
"""

from __future__ import annotations

import statistics
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from distill.runtime.sources.tokenizer import SPECIAL_TOKENS, train_byte_bpe
from distill.runtime.synthesis.generate import HFGenerator, Request
from distill.runtime.synthesis.prompts import default_prompt, task_messages

CHUNKS = 16
MAX_NEW = 48
BATCHES = (1, 4, 16)
RUNS = 2
CONFIG = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4,
          "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 2000, "max_position_embeddings": 2048}
TEMPLATE = ("{% for m in messages %}<|{{ m.role }}|>\n{{ m.content }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def chunk_text(i: int) -> str:
    sentences = [f"Unit {i}.{j} of the pump keeps pressure at {40 + j} kPa for {j + 2} hours; "
                 f"its seal is replaced every {j + 3} months and tested with water." for j in range(8)]
    return " ".join(sentences)


def teacher() -> tuple[torch.nn.Module, PreTrainedTokenizerFast]:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**CONFIG)).eval()
    corpus = [chunk_text(i) for i in range(CHUNKS)] + [default_prompt("qa", False)]
    eos, pad = SPECIAL_TOKENS
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=train_byte_bpe(corpus, CONFIG["vocab_size"]),
                                        eos_token=eos, pad_token=pad)
    tokenizer.chat_template = TEMPLATE
    return model, tokenizer


def timed(generator: HFGenerator, requests: list[Request], batch: int) -> tuple[float, list[str]]:
    start = time.perf_counter()
    replies: list[str] = []
    for i in range(0, len(requests), batch):
        replies += generator.generate(requests[i:i + batch])
    return time.perf_counter() - start, replies


def main() -> None:
    torch.set_num_threads(2)
    model, tokenizer = teacher()
    template = default_prompt("qa", False)
    requests = [Request(f"chunk{i}:qa:0", tuple(task_messages(template, chunk_text(i), 3))) for i in range(CHUNKS)]
    prompt_tokens = statistics.mean(len(tokenizer.apply_chat_template(list(r.messages))) for r in requests)
    generator = HFGenerator(model, tokenizer, MAX_NEW, 0.7, seed=0)
    print(f"teacher: llama hidden {CONFIG['hidden_size']}, {CONFIG['num_hidden_layers']} layers; {CHUNKS} chunks, "
          f"prompt {prompt_tokens:.0f} tokens, {MAX_NEW} new tokens each, torch threads 2")
    baseline = None
    reference: list[str] | None = None
    for batch in BATCHES:
        seconds, replies = min((timed(generator, requests, batch) for _ in range(RUNS)), key=lambda r: r[0])
        tokens = sum(len(tokenizer(reply, add_special_tokens=False)["input_ids"]) for reply in replies)
        rate = tokens / seconds
        baseline = baseline or rate
        same = "same replies as batch 1" if reference in (None, replies) else "replies DIFFER from batch 1"
        reference = reference or replies
        print(f"batch {batch:>2}: {seconds:6.2f} s, {tokens / CHUNKS:5.1f} tokens/chunk, {rate:7.1f} tokens/s, "
              f"{rate / baseline:4.2f}x one chunk at a time; {same}")


if __name__ == "__main__":
    main()

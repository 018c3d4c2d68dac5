"""The teacher as a text generator behind one small interface, so the stage's parsing, grounding,
dedup and split run unchanged against a real model or a scripted test double.

``HFGenerator`` batches requests through ``model.generate`` with left padding and the teacher's
chat template. Sampling is seeded per request, not per batch: each request's key (its chunk id,
what is asked and the attempt) seeds its own noise, so a request gets the same reply whichever
other requests share its batch. That is what makes a resumed run equal an uninterrupted one.
A request that carries a reply schema is decoded under it (``constrain.JsonConstraint``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from distill.runtime.synthesis.constrain import JsonConstraint
from distill.runtime.synthesis.prompts import Message


@dataclass(frozen=True)
class Request:
    """One generation: ``key`` names it uniquely and seeds its sampling; ``schema`` (JSON
    Schema text, ``constrain.schema_text``), when given, is what the reply must be."""

    key: str
    messages: tuple[Message, ...]
    schema: str | None = None


class Generator(Protocol):
    def generate(self, requests: Sequence[Request]) -> list[str]:
        """One reply per request, in order."""
        ...


def request_seed(seed: int, key: str) -> int:
    """A 63-bit torch seed from the run seed and the request key (sha256: stable across
    processes, unlike ``hash()``)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class GumbelSampler:
    """A ``LogitsProcessor`` that samples at temperature T under greedy decoding: adding
    Gumbel(0, 1) noise to logits / T and taking the argmax draws exactly from softmax(logits / T)
    (the Gumbel-max trick). Each row draws its noise from its own seeded generator, so a row's
    tokens do not depend on the batch it runs in (``do_sample`` would share one global stream)."""

    def __init__(self, seeds: Sequence[int], temperature: float) -> None:
        self.temperature = temperature
        self.generators = [torch.Generator().manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        vocab = scores.shape[-1]
        # U in [tiny, 1): -log(-log(U)) stays finite.
        uniform = torch.stack([torch.rand(vocab, generator=g) for g in self.generators])
        uniform = uniform.clamp_(min=torch.finfo(torch.float32).tiny)
        gumbel = -torch.log(-torch.log(uniform))
        return scores.float() / self.temperature + gumbel.to(scores.device)


class HFGenerator:
    """A transformers causal LM and its tokenizer (with a chat template) as a ``Generator``."""

    def __init__(self, model: Any, tokenizer: Any, max_new_tokens: int, temperature: float, seed: int) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the teacher's tokenizer has no chat template")
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.temperature, self.seed = max_new_tokens, temperature, seed
        self._constraint: JsonConstraint | None = None  # built at the first request with a schema
        # Left padding: every row's prompt ends at the last position, where generation starts.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    def generate(self, requests: Sequence[Request]) -> list[str]:
        from transformers import GenerationConfig, LogitsProcessorList

        if not requests:
            return []
        texts = [self.tokenizer.apply_chat_template(list(r.messages), tokenize=False, add_generation_prompt=True)
                 for r in requests]
        # The rendered template already holds BOS where the model wants one.
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False,
                               return_token_type_ids=False)
        batch = batch.to(self.model.device)
        processors = LogitsProcessorList()
        schemas = [r.schema for r in requests]
        if any(schemas):
            # First: the grammar's mask (-inf) and forced endings survive the sampler's scaling and noise.
            processors.extend(self._json_constraint().processors(self._all_given(schemas), batch["input_ids"].shape[1],
                                                                 self.max_new_tokens))
        if self.temperature > 0:
            processors.append(GumbelSampler([request_seed(self.seed, r.key) for r in requests], self.temperature))
        config = GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=False,
                                  pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self._eos_ids(),
                                  bos_token_id=self.model.generation_config.bos_token_id)
        with torch.inference_mode():
            output = self.model.generate(**batch, generation_config=config, logits_processor=processors)
        new = output[:, batch["input_ids"].shape[1]:]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def _json_constraint(self) -> JsonConstraint:
        if self._constraint is None:
            self._constraint = JsonConstraint(self.tokenizer, self.model.config.vocab_size, self._eos_ids() or [])
        return self._constraint

    @staticmethod
    def _all_given(schemas: Sequence[str | None]) -> list[str]:
        # A row without a grammar cannot share xgrammar's processor with rows that have one.
        if not all(schemas):
            raise ValueError("a batch mixes requests with and without a reply schema")
        return [s for s in schemas if s]

    def _eos_ids(self) -> list[int] | None:
        """Stop tokens: the model's generation config (chat models list their end-of-turn token
        there) and the tokenizer's EOS."""
        ids = self.model.generation_config.eos_token_id
        ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids or None

"""Peak memory of one training micro-step, by phase, from shapes alone (no torch).

Every term is bytes. ``e`` is the size of the compute dtype (4 fp32, 2 bf16/fp16); ``t`` is tokens
in the micro-batch (micro_batch x seq_len). The activation coefficients are what HF's eager
PyTorch modules save for backward, counted per token and per layer; they were derived from the
modules' code and checked against real CPU steps traced tensor by tensor
(``benchmarks/planner_accuracy.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from distill.compiler.arch import Architecture, Head, Linear
from distill.compiler.trainstep import ComputeDtype, Quant, TrainStep

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
F32 = 4
# bitsandbytes nf4 with double quantization: 4 bits per weight, one uint8 absmax per 64-weight
# block, one fp32 absmax (plus its offset) per 256 blocks: 0.5 + 1/64 + 4/(64 x 256) bytes/weight.
NF4_BYTES_PER_WEIGHT = 0.5 + 1 / 64 + 4 / (64 * 256)
# Per quantized matrix: the nf4 code (16 fp32) and the nested 8-bit code (256 fp32).
NF4_BYTES_PER_MATRIX = (16 + 256) * F32
# LLM.int8: one int8 per weight plus one fp32 scale per output row.
INT8_BYTES_PER_WEIGHT = 1


@dataclass(frozen=True)
class Term:
    """One named amount of memory with the arithmetic that gave it."""

    name: str
    bytes: int
    why: str


@dataclass(frozen=True)
class StepMemory:
    """Peak live bytes of each phase of a micro-step, and the terms each is made of."""

    phases: dict[str, tuple[Term, ...]] = field(default_factory=dict)

    def phase_bytes(self, phase: str) -> int:
        return sum(term.bytes for term in self.phases[phase])

    @property
    def peak_phase(self) -> str:
        return max(self.phases, key=self.phase_bytes)

    @property
    def peak(self) -> int:
        return self.phase_bytes(self.peak_phase)


def weight_bytes(arch: Architecture, head: Head, dtype: ComputeDtype, quant: Quant) -> Term:
    """Weights held by a model: linear layers quantized as asked, everything else (embeddings,
    norms, biases, LM head: bitsandbytes leaves the output head alone) in the compute dtype."""
    e = DTYPE_BYTES[dtype]
    total = arch.params(head)
    if quant == "none":
        return Term("weights", total * e, f"{total:,} params x {e} B")
    linear = arch.linear_params()
    rest = total - linear
    matrices = arch.layers * len(arch.linears)
    if quant == "4bit":
        quantized = int(linear * NF4_BYTES_PER_WEIGHT) + matrices * NF4_BYTES_PER_MATRIX
        why = f"{linear:,} nf4 weights x {NF4_BYTES_PER_WEIGHT:.4f} B + {rest:,} params x {e} B"
    else:
        rows = arch.layers * sum(linear_.fan_out for linear_ in arch.linears)
        quantized = linear * INT8_BYTES_PER_WEIGHT + rows * F32
        why = f"{linear:,} int8 weights + {rows:,} fp32 row scales + {rest:,} params x {e} B"
    return Term("weights", quantized + rest * e, why)


def layer_transient(arch: Architecture, tokens: int, dtype_bytes: int) -> Term:
    """The largest working set of one layer run without autograd (a frozen teacher, a prefill):
    its MLP's gate/up/product (3 x f) beside the residual stream and norm outputs (4 x h)."""
    per_token = (3 * arch.intermediate + 4 * arch.hidden) * dtype_bytes
    return Term("layer transient", tokens * per_token, f"{tokens:,} tokens x (3 x {arch.intermediate} + 4 x "
                                                          f"{arch.hidden}) x {dtype_bytes} B, one layer's MLP")


def lora_params(arch: Architecture, step: TrainStep) -> int:
    """Adapter parameters: r x (fan_in + fan_out) for each targeted matrix in each layer."""
    targets = set(step.lora_targets)
    per_layer = sum(step.lora_r * (lin.fan_in + lin.fan_out)
                    for lin in arch.linears if lin.name in targets)
    return arch.layers * per_layer


def trainable_params(arch: Architecture, step: TrainStep, head: Head) -> tuple[int, int]:
    """(trainable parameters, bytes per trainable parameter). peft keeps adapters in fp32 even on a
    bf16 base (autocast_adapter_dtype), so LoRA grads and optimizer states are fp32."""
    if step.adapter == "none":
        return arch.params(head), DTYPE_BYTES[step.dtype]
    return lora_params(arch, step), F32


def optimizer_state_bytes(trainable: int, tensors: int, param_bytes: int, optimizer: str) -> Term:
    """AdamW keeps two moments per trainable parameter, in the parameter's dtype by default, and
    a 4-byte step counter per tensor."""
    if optimizer in ("adamw_8bit", "paged_adamw_8bit"):
        # bitsandbytes: uint8 moments, one fp32 absmax per 2048-value block per moment
        per = 2 + 2 * F32 / 2048
        return Term("optimizer states", int(trainable * per) + tensors * F32,
                    f"{trainable:,} x 2 moments x 1 B + absmax")
    per = 2 * param_bytes
    return Term("optimizer states", trainable * per + tensors * F32,
                f"{trainable:,} trainable x 2 moments x {per // 2} B + {tensors:,} step counters")


def layer_modules(arch: Architecture) -> tuple[Linear | int, ...]:
    """One layer's parameter holders in the order transformers registers them (and so
    ``named_parameters()``, the optimizer and FSDP's flat parameter see them): its linears, and
    as ints the elements of each norm tensor (an RMSNorm's weight; a LayerNorm's weight, then bias).

    Decoders register attention, MLP, then their norms; Phi-3's attention registers o_proj
    before qkv_proj; q_norm and k_norm (head_dim each) follow o_proj; GPT-2 puts ln_1 and ln_2
    before attention and MLP; encoders put a norm after the attention output and the FFN output.
    """
    linears = list(arch.linears)
    if arch.family == "phi3":
        linears[:2] = linears[1::-1]
    norm = [arch.hidden] * (arch.norm_params // arch.hidden)
    # index of the linear each norm precedes (len(linears): after the last)
    slots = (0, 2) if arch.family == "gpt2" else (4, 6) if arch.is_encoder else (len(linears),) * arch.norms_per_layer
    modules: list[Linear | int] = []
    for i in range(len(linears) + 1):
        modules += norm * slots.count(i)
        if i < len(linears):
            modules.append(linears[i])
            if linears[i].name == "o_proj" and arch.qk_norm:
                modules += [arch.head_dim] * 2
    return tuple(modules)


def module_tensors(module: Linear | int) -> tuple[int, ...]:
    """Elements of the tensors an item of ``layer_modules`` holds: a linear's weight (and bias), a norm tensor."""
    if isinstance(module, int):
        return (module,)
    return (module.fan_in * module.fan_out, module.fan_out) if module.bias else (module.fan_in * module.fan_out,)


def outer_tensors(arch: Architecture, head: Head) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Elements of each parameter tensor outside the layers, in registration order: (before the
    layers: embeddings, an encoder's embedding LayerNorm; after them: final norm and ``head``).
    Tied weights appear once, where first registered (the embedding)."""
    h, v = arch.hidden, arch.vocab
    after = [h] * (arch.norm_params // h) if arch.final_norm else []
    if head == "causal-lm" and not arch.tied_embeddings:
        after.append(v * h)
    elif head == "extractive-qa":
        after += [2 * h, 2]  # qa_outputs: Linear(h, 2)
    elif head == "masked-lm":  # a dense and a LayerNorm, then the decoder's bias (its weight is tied)
        transform = [h * h, h, h, h]
        # BERT's and RoBERTa's heads hold that bias as their own parameter: it comes before their children
        after += [*transform, v] if arch.family == "distilbert" else [v, *transform]
    elif head == "base" and arch.is_encoder and arch.family != "distilbert":
        after += [h * h, h]  # BertModel's and RobertaModel's pooler
    return arch.embedding_shapes, tuple(after)


def lora_head_copy(arch: Architecture, head: Head) -> tuple[int, ...]:
    """peft's QUESTION_ANS task trains a copy of qa_outputs (modules_to_save), in the base's
    dtype, registered after the original: weight and bias."""
    return (2 * arch.hidden, 2) if head == "extractive-qa" else ()


def trainable_shapes(arch: Architecture, step: TrainStep, head: Head) -> list[int]:
    """Sizes (elements) of the trainable tensors in the order the optimizer visits them
    (``named_parameters()`` order, ``tests/planner/test_trainable_order.py``)."""
    modules = layer_modules(arch)
    if step.adapter != "none":  # peft's lora_A (r x fan_in) then lora_B (fan_out x r)
        per_layer = [size for lin in modules if isinstance(lin, Linear) and lin.name in step.lora_targets
                     for size in (step.lora_r * lin.fan_in, lin.fan_out * step.lora_r)]
        return per_layer * arch.layers + list(lora_head_copy(arch, head))
    layer = [size for module in modules for size in module_tensors(module)]
    before, after = outer_tensors(arch, head)
    return [*before, *layer * arch.layers, *after]


def cpu_adamw_temporaries(sizes: list[int]) -> int:
    """Elements of temporaries at the peak of torch's single-tensor AdamW (the CPU default): for
    each tensor it computes ``exp_avg_sq.sqrt()`` and that over the bias correction (2 x its
    size) while ``denom`` of the previous tensor is still bound (1 x the previous size)."""
    return max(prev + 2 * cur for prev, cur in zip([0, *sizes[:-1]], sizes, strict=True))


def loss_chunk_bytes_per_row(step: TrainStep, vocab: int, teacher_dtype_bytes: int) -> tuple[int, int]:
    """(forward, backward) bytes per row of one loss chunk's temporaries at their peak.

    Measured with ``LiveBytesCounter`` on ``token_losses`` (one chunk, V = 20,000), per row and
    vocabulary entry: CE 8 + e/4 B in forward (the chunk's float32 logits and log-softmax) and
    12 B in backward (recomputed logits, the log-softmax's gradient and the logits'; alone it
    measures 12 + e/4, inside a training step 12 flat, at fp32 and bf16, autocast or not); with
    online KD 24 + (e + e_teacher)/4 B in both (float32 logits, log p and log q at T, and the
    divergence's q, log q - log p and their product; backward recomputes the same).
    """
    e = DTYPE_BYTES[step.dtype]
    if step.kd == "online":
        both = (96 + e + teacher_dtype_bytes) * vocab // 4
        return both, both
    return (32 + e) * vocab // 4, 12 * vocab


def _loss_terms(arch: Architecture, step: TrainStep, teacher: Architecture | None
                ) -> tuple[tuple[Term, ...], tuple[Term, ...], tuple[Term, ...]]:
    """What a causal LM's loss adds in forward, in backward, and (a trained head over several
    chunks) when backward sums the head's gradients (``runtime/train/losses.token_losses``, called
    by ``runtime/train/objective.py``).

    The model returns its final hidden states; the rows whose next token is learned (at most
    t - b) are gathered into one copy, which the chunks' checkpoints keep until backward. Each
    chunk of c rows makes its logits, loss and (in backward, recomputed) gradients and frees
    them before the next, so only c x vocab-sized temporaries exist at once. Backward also
    builds the rows' gradient (rows x h x e) chunk by chunk. With online KD the teacher's
    final hidden states (its backbone only) are gathered the same way and kept through
    backward; its logits are made per chunk, under no_grad. A trained LM head (full fine-tuning,
    tied or not) gets one weight gradient per chunk, which autograd sums: the running sum, the
    new chunk's and their sum are alive at once (3 x vocab x h, measured), beside the chunk's
    rows gradient.
    """
    e, t, h, v = DTYPE_BYTES[step.dtype], step.tokens, arch.hidden, arch.vocab
    rows = t - step.micro_batch
    c = min(step.loss_chunk_tokens, rows)
    et = DTYPE_BYTES[step.teacher_dtype]
    per_forward, per_backward = loss_chunk_bytes_per_row(step, v, et)
    # Under FSDP the head's weight is a shard outside the model's forward, so the loss takes the
    # model's full logits as its rows (an identity head): rows are vocab-wide, not h-wide.
    full_logits = step.processes > 1 and step.strategy == "fsdp"
    width = v if full_logits else h
    kept = Term("loss rows", rows * width * e, f"{rows:,} gathered rows x {width:,} x {e} B")
    rows_grad = Term("rows gradient", rows * width * e, f"{rows:,} x {width:,} x {e} B")
    forward: list[Term] = [kept, Term("loss chunk", c * per_forward,
                                      f"{c:,} rows x {per_forward / v:g} B x {v:,} vocab")]
    if full_logits:
        forward.append(Term("logits", t * v * e, f"the model's: {t:,} x {v:,} x {e} B"))
    # Autograd runs the chunks last to first; from the second on, the rows' gradient exists, and
    # so does a trained head's gradient summed so far.
    summed_head = (Term("head gradient so far", v * h * e, f"{v:,} x {h} x {e} B"),) \
        if step.adapter == "none" and rows > c and not full_logits else ()
    backward: list[Term] = [kept, *((rows_grad,) if rows > c else ()), *summed_head,
                            Term("loss chunk backward", c * per_backward,
                                 f"{c:,} rows x {per_backward / v:g} B x {v:,} vocab")]
    if arch.logit_softcap:
        cap = Term("logit softcap", e * c * v, f"tanh(logits / cap) kept: {c:,} x {v:,} x {e} B")
        forward.append(cap)
        backward.append(cap)
    if step.kd == "online" and teacher is not None:
        teacher_rows = Term("teacher rows", rows * teacher.hidden * et,
                            f"{rows:,} gathered teacher rows x {teacher.hidden} x {et} B")
        forward.append(teacher_rows)
        backward.append(teacher_rows)
    if step.kd == "cached":
        # The micro-batch's cached top-k (fp16 values, int32 indices) and the student's fp32
        # log-probabilities gathered at them plus the tail mass: small next to the chunk.
        cached = Term("cached top-k", t * step.top_k * (6 + 2 * F32), f"{t:,} x top-{step.top_k} x 14 B")
        forward.append(cached)
        backward.append(cached)
    summing: tuple[Term, ...] = ()
    if step.adapter == "none" and rows > c and not full_logits:
        summing = (kept, rows_grad, Term("head gradient sum", 3 * v * h * e, f"3 x {v:,} x {h} x {e} B"),
                   Term("chunk rows gradient", c * h * e, f"{c:,} x {h} x {e} B"),
                   *(term for term in backward if term.name in ("teacher rows", "cached top-k")))
    return tuple(forward), tuple(backward), summing


def _recompute_phase(arch: Architecture, step: TrainStep, head: Head, static: list[Term], layer: int,
                     shared: int, inputs: Term) -> tuple[Term, ...]:
    """Backward through a recomputed layer (``layer`` bytes per token), at its peak.

    Where in the layer: in its MLP's backward (the layer's activations less what a sandwich
    post-feedforward norm freed, f-sized gradient buffers, down_proj's gradient made) or, with
    sandwich norms, just before, in that norm's backward (the whole layer, the norm's fp32
    working set, no down_proj gradient yet). Which layer: the first (every gradient but the
    embedding's and that layer's, one input left) or the last (the head's gradients, every
    layer's input, ``inputs``, still held). The last wins under LoRA, whose gradients are small
    (traced: qwen3 LoRA was 0.65% under with the first alone, gemma3 LoRA 1.6%).
    """
    from distill.compiler import activations as act

    e, t = DTYPE_BYTES[step.dtype], step.tokens
    trainable, param_bytes = trainable_params(arch, step, head)
    down = arch.linears[-1]  # the MLP's output projection is every family's last linear
    # Traced: six tokens x f tensors are alive at the MLP's backward peak whether or not
    # down_proj keeps its input (act x up): a frozen, unadapted down_proj leaves one more buffer.
    buffers = 2 if step.adapter == "none" or down.name in step.lora_targets else 3
    freed = act.mlp_backward_freed(arch, step)
    points = [(layer - freed, 0, Term("MLP gradient buffers", buffers * e * arch.intermediate * t,
                                      f"{buffers} x {t:,} x {arch.intermediate} x {e} B"))]
    if freed:
        norm = act.post_norm_backward_bytes(arch, step)
        points.append((layer, _down_gradient(arch, step),
                       Term("norm backward", norm * t, f"{t:,} tokens x {norm:,} B")))
    # The first layer's checkpoint keeps one causal mask; a second kind went with the last layer
    # of that kind (b x s^2 bools).
    other_masks = (arch.attention_masks - 1) * step.micro_batch * step.seq_len ** 2
    first_input = Term("first layer input", e * arch.hidden * t + shared - other_masks,
                       "its checkpoint input, mask, RoPE")
    layers = ((trainable - _pending_at_first_layer(arch, step), first_input, "all but the first layer's"),
              (_made_at_last_layer(arch, step, head), inputs, "the head's and the last layer's"))
    candidates = [(*static, Term("gradients", (made - pending) * param_bytes, why), held_inputs,
                   Term("recompute", held * t, f"one layer's activations: {t:,} x {held:,} B"), working)
                  for made, held_inputs, why in layers for held, pending, working in points]
    return max(candidates, key=lambda terms: sum(term.bytes for term in terms))


def _down_gradient(arch: Architecture, step: TrainStep) -> int:
    """Elements of the gradient a layer's backward makes first: its down_proj's (or its
    adapter's); none is new with accumulation, where every gradient exists already."""
    down = arch.linears[-1]
    if step.accumulation > 1:
        return 0
    if step.adapter == "none":
        return down.params
    return step.lora_r * (down.fan_in + down.fan_out) if down.name in step.lora_targets else 0


def _pending_at_first_layer(arch: Architecture, step: TrainStep) -> int:
    """Trainable elements still without a gradient in the first layer's MLP backward: with
    accumulation none (every gradient exists from the earlier micro-steps and is added to in
    place); else that layer's but its down_proj's, made first, and the embeddings'."""
    down = arch.linears[-1]
    if step.accumulation > 1:
        return 0
    if step.adapter == "none":
        # A tied token embedding already holds the LM head's gradient; an untied one, and the
        # position/type embeddings, get theirs last.
        token, *others = arch.embedding_shapes
        return arch.layer_params - down.params + sum(others) + (0 if arch.tied_embeddings else token)
    return sum(step.lora_r * (lin.fan_in + lin.fan_out) for lin in arch.linears
               if lin.name in step.lora_targets and lin is not down)


def _made_at_last_layer(arch: Architecture, step: TrainStep, head: Head) -> int:
    """Trainable elements with a gradient in the last layer's MLP backward: all with
    accumulation; else, fully fine-tuned, the head's (a tied token embedding holds the LM
    head's), and down_proj's (or its adapter's)."""
    if step.accumulation > 1:
        return trainable_params(arch, step, head)[0]
    tied = arch.embedding_shapes[0] if arch.tied_embeddings and head == "causal-lm" else 0
    head_grads = arch.head_params(head) + tied if step.adapter == "none" else 0
    return head_grads + _down_gradient(arch, step)


def kbit_step(step: TrainStep) -> TrainStep:
    """The step as a quantized base really runs it: ``peft.prepare_model_for_kbit_training``
    casts every parameter bitsandbytes left alone (embeddings, norms, LM head) to float32, so
    the hidden states, norms, activations and logits are float32 whatever the declared dtype;
    bitsandbytes computes each matmul in the declared dtype and returns its input's (measured:
    a bfloat16 QLoRA step holds exactly the float32 one's bytes). Planning it at 16 bits
    under-predicted by 13-25% on CPU and 34% on CUDA."""
    quantized = step.adapter == "qlora" or step.base_quant != "none"
    return replace(step, dtype="float32") if quantized else step


def process_step(arch: Architecture, head: Head, step: TrainStep, device: str = "cpu",
                 teacher: Architecture | None = None) -> StepMemory:
    """Peak live bytes of each phase of one micro-step in one process, as if it trained alone
    (see ``distill.runtime.train.memtrace``); ``distributed.estimate_step`` makes it one rank of many."""
    from distill.compiler import activations as act

    step = kbit_step(step)
    e, t, h = DTYPE_BYTES[step.dtype], step.tokens, arch.hidden
    # An extractive-QA head scores 2 positions (start, end) per token instead of the vocabulary.
    v = 2 if head == "extractive-qa" else arch.vocab
    full = step.adapter == "none"
    quant = "4bit" if step.adapter == "qlora" else step.base_quant
    static = _static_terms(arch, head, step, teacher)
    trainable, param_bytes = trainable_params(arch, step, head)
    grads = Term("gradients", trainable * param_bytes, f"{trainable:,} trainable x {param_bytes} B")

    model = act.model_activations(arch, step)
    layer = model.layer
    # The final norm's output is still referenced when the loss is computed, and freed before
    # backward unless the LM head trains.
    final_norm = Term("final norm", model.head_forward * t, f"{t:,} tokens x {model.head_forward:,} B")
    final_norm_kept = Term("final norm", model.head_backward * t, "kept for backward")
    if step.checkpointing:
        # checkpoint() keeps each layer's inputs: the hidden states, and the boolean causal mask
        # and position ids that every layer shares. bitsandbytes' int8 matmul keeps its inputs
        # on ctx, out of checkpoint's reach, so every layer also keeps the distinct inputs of its
        # matmuls: both norm outputs, the attention output and act*up, (2h + q + f) x e.
        shared = model.shared + model.checkpoint_shared
        int8_inputs = (2 * h + arch.q_dim + arch.intermediate) * e if quant == "8bit" else 0
        layers = Term("activations", arch.layers * (e * h + int8_inputs) * t + shared,
                      f"checkpointed: {arch.layers} layer inputs x {t:,} tokens x {e * h + int8_inputs} B + mask")
    else:
        saved = arch.layers * layer - model.first_layer_discount
        layers = Term("activations", saved * t + model.shared,
                      f"{arch.layers} layers x {t:,} tokens x {layer:,} B/token")
    if head == "extractive-qa":  # a span loss over 2 scores per token: tiny
        loss_forward: tuple[Term, ...] = (
            Term("logits + loss", t * v * (e + (F32 if e != F32 else 0) + F32) + 8 * (t + step.micro_batch),
                 f"{t:,} tokens x {v} scores x ({e} + 4 log-softmax" + (" + 4 fp32 copy)" if e != F32 else ")")),)
        # backward starts with a hidden-size gradient
        loss_backward: tuple[Term, ...] = (Term("head gradient", e * h * t, f"{t:,} tokens x {e * h} B"),)
        summing: tuple[Term, ...] = ()
    else:
        loss_forward, loss_backward, summing = _loss_terms(arch, step, teacher)
    # From the second accumulated micro-step on, the earlier ones' gradients are alive through
    # forward, backward and recomputation (measured: exactly the trainable gradients' bytes).
    earlier = (Term("earlier gradients", grads.bytes, f"accumulation {step.accumulation}: {grads.why}"),) \
        if step.accumulation > 1 else ()
    phases = {"forward": (*static, *earlier, layers, final_norm, *loss_forward),
              "backward": (*static, *earlier, layers, final_norm_kept, *loss_backward)}
    if summing:
        phases["head gradient"] = (*static, *earlier, layers, final_norm_kept, *summing)
    if step.kd == "online" and teacher is not None and head == "causal-lm":
        # The teacher runs after the student's forward, under no_grad, beside its gathered rows.
        phases["teacher forward"] = (*static, *earlier, layers, final_norm, loss_forward[0],
                                     layer_transient(teacher, t, DTYPE_BYTES[step.teacher_dtype]))
    if step.checkpointing:
        phases["recompute"] = _recompute_phase(arch, step, head, static, layer, shared, layers)
    if full and not step.checkpointing:
        phases["backward end"] = (*static, grads, Term("input grad", e * h * t, f"{t:,} tokens x {e * h} B"))
    phases["optimizer"] = (*static, grads, _optimizer_temporaries(arch, head, step, device))
    return StepMemory(phases)


def _static_terms(arch: Architecture, head: Head, step: TrainStep, teacher: Architecture | None) -> list[Term]:
    """What lives through the whole step: weights (and adapters), optimizer states, inputs,
    buffers, and a teacher resident for online KD."""
    quant = "4bit" if step.adapter == "qlora" else step.base_quant
    trainable, param_bytes = trainable_params(arch, step, head)
    t = step.tokens
    static = [weight_bytes(arch, head, step.dtype, quant),
              optimizer_state_bytes(trainable, len(trainable_shapes(arch, step, head)), param_bytes, step.optimizer),
              Term("inputs", 2 * t * 8, f"input ids and labels: 2 x {t:,} tokens x 8 B"),
              Term("buffers", arch.buffer_bytes, f"{arch.family} buffers (RoPE frequencies, masks, ids)")]
    if step.adapter != "none":
        static.append(Term("adapter weights", trainable * F32, f"{trainable:,} LoRA params x 4 B"))
    if teacher is not None and step.kd == "online":
        static.append(Term("teacher weights", weight_bytes(teacher, "causal-lm", step.teacher_dtype,
                                                           step.teacher_quant).bytes, "resident for online KD"))
    return static


def _optimizer_temporaries(arch: Architecture, head: Head, step: TrainStep, device: str) -> Term:
    trainable, param_bytes = trainable_params(arch, step, head)
    if device == "cpu":
        elements = cpu_adamw_temporaries(trainable_shapes(arch, step, head))
        why = f"single-tensor AdamW: {elements:,} elements x {param_bytes} B"
    else:
        elements, why = trainable, "foreach AdamW: one trainable-sized list of sqrt(v)"
    return Term("optimizer temporaries", elements * param_bytes, why)

"""A lean batched sampling loop for small Llama models on CPU (the nano model).

For a 2M-parameter model, ``generate`` spends its time in overhead, not arithmetic: the DynamicCache's
``torch.cat`` on every step, mask building and logits-processor plumbing. This loop runs the model's own weights
(q/k/v and gate/up projections fused) by hand: it encodes each prompt on its own, writing its keys and values
into preallocated buffers (one row per sample), then decodes every sample of every prompt together, one step for
all rows at a time, and a row that reaches EOS leaves the batch. Only the logits of tokens some prompt allows
are computed. :func:`supports` says when it applies; otherwise the ``hf`` backend uses ``generate``.

A row's tokens do not depend, bit for bit, on which other rows share its batch, so callers may batch requests
any way they like. Three CPU behaviours would break that; the loop is built around each:

* MKL's sgemm rounds a row differently depending on how many rows the call has (measured: one row takes a gemv
  path, two or three rows another kernel, rows in full blocks of four a third). Every matmul therefore sees the
  rows padded with zeros to a multiple of :data:`ROW_BLOCK`, so each row always takes the full-block kernel
  (which also gives a row the same values whatever the other columns of the product).
* ``scaled_dot_product_attention`` blocks its key loop by the key count and splits work by batch size, so
  attention over a padded batch differs from attention over one row alone. Each row attends on its own, over
  exactly its own keys (no padding, no mask): the same call whatever the batch.
* A softmax sums over its row, and the order of that sum depends on the row's width (here, the vocabulary the
  batch's prompts allow). Sampling inverts the cumulative sum of ``exp(logit - max)`` instead: ``cumsum`` adds
  left to right, so the zeros of the tokens a row may not produce change none of its partial sums.

Each prompt is encoded alone, so its encoding cannot depend on the batch either.

**Shared prefix.** Every profile prompt opens with the same system text and instructions. :func:`encode_prefix`
computes that token prefix's keys and values once (per model: the ``hf`` backend keeps one per loaded model);
given it, :func:`sample` copies them into each matching prompt's rows and encodes only the rest of the prompt,
its queries attending over the cached keys. The prefix's keys and values are the same for every prompt, so the
batch independence above still holds; against encoding the whole prompt they may differ in the last bits (the
matmuls see fewer rows), which under greedy decoding leaves the text unchanged (tested on the nano model).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch.nn import functional as F
from transformers import LlamaForCausalLM

ROW_BLOCK = 8  # every matmul sees a multiple of this many rows (see above)


def supports(model: object) -> bool:
    """Plain Llama (no adapters left unmerged, no rope scaling, no attention bias) on the CPU."""
    if type(model) is not LlamaForCausalLM:  # exactly Llama: a subclass may compute differently
        return False
    llama = cast(LlamaForCausalLM, model)
    cfg = llama.config
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    return (
        llama.device.type == "cpu"
        and rope.get("rope_type", "default") == "default"
        and not cfg.attention_bias
        and not getattr(cfg, "mlp_bias", False)
        and cfg.hidden_act == "silu"
    )


def _padded(x: torch.Tensor) -> torch.Tensor:
    """``x`` with zero rows appended up to a multiple of :data:`ROW_BLOCK`."""
    extra = -x.shape[0] % ROW_BLOCK
    return torch.cat([x, x.new_zeros((extra, *x.shape[1:]))]) if extra else x


Weights = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: fused q/k/v and gate/up projections


class _Buffers:
    """One layer's keys and values [rows, kv_heads, width, head_dim], and a view of each row's."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        self.keys, self.values = keys, values
        self.row_keys, self.row_values = keys.unbind(), values.unbind()


Cache = list[_Buffers]


@dataclass(frozen=True, eq=False)
class Prefix:
    """A token prefix's keys and values, per layer [kv_heads, tokens, head_dim], computed once for every prompt
    that starts with it."""

    ids: tuple[int, ...]
    keys: tuple[torch.Tensor, ...]
    values: tuple[torch.Tensor, ...]

    def matches(self, ids: Sequence[int]) -> bool:
        """``ids`` starts with the prefix and has at least one token after it."""
        return len(ids) > len(self.ids) and tuple(ids[: len(self.ids)]) == self.ids


def _weights(model: LlamaForCausalLM) -> Weights:
    return [
        (
            torch.cat([layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight, layer.self_attn.v_proj.weight]),
            torch.cat([layer.mlp.gate_proj.weight, layer.mlp.up_proj.weight]),
        )
        for layer in model.model.layers
    ]


@torch.inference_mode()
def encode_prefix(model: LlamaForCausalLM, ids: Sequence[int]) -> Prefix:
    """The keys and values of ``ids`` at positions 0.. (every layer, every token)."""
    if not ids:
        raise ValueError("a prefix needs at least one token")
    core, cfg = model.model, model.config
    shape = (1, cfg.num_key_value_heads, len(ids), core.layers[0].self_attn.head_dim)
    cache = [
        _Buffers(model.lm_head.weight.new_empty(shape), model.lm_head.weight.new_empty(shape)) for _ in core.layers
    ]
    cos, sin = (t[0] for t in core.rotary_emb(model.lm_head.weight, torch.arange(len(ids))[None]))
    _encode(model, _weights(model), cache, cos, sin, ids, slice(0, 1), last_token_only=False)
    return Prefix(tuple(ids), tuple(b.keys[0].clone() for b in cache), tuple(b.values[0].clone() for b in cache))


@torch.inference_mode()
def sample(
    model: LlamaForCausalLM,
    prompts: Sequence[Sequence[int]],
    *,
    n: int,
    temperature: float,
    max_new_tokens: int,
    eos_id: int,
    allowed: Sequence[torch.Tensor] | None = None,
    generators: Sequence[torch.Generator] | None = None,
    processors: Sequence[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = (),
    constrain: Callable[[int, list[int]], torch.Tensor | None] | None = None,
    stop: Callable[[list[int]], bool] | None = None,
    prefix: Prefix | None = None,
) -> list[list[list[int]]]:
    """``n`` continuations of each prompt (each cut after its EOS), decoded as one batch; greedy when
    ``temperature`` is 0.

    ``allowed[p]`` holds the token ids prompt ``p``'s samples may produce (all when ``None``); only the logits of
    the batch's allowed tokens are computed. Prompt ``p`` samples from ``generators[p]`` (the default generator
    when ``None``): ``n`` uniform draws per step, draw ``j`` for sample ``j``. ``processors`` (transformers
    logits processors) see each row's completion so far and its scores over the whole vocabulary;
    ``constrain(row, completion)`` returns a mask of the tokens row ``row`` (= prompt * n + sample) may not
    produce next; ``stop`` ends a row early when it returns True for the row's completion. A prompt that starts
    with ``prefix`` (:func:`encode_prefix` of this model) reuses its keys and values and encodes only the rest.
    """
    from lettingo.generators.controls import apply_processors

    core, cfg = model.model, model.config
    rows = len(prompts) * n
    width = max(map(len, prompts)) + max_new_tokens
    shape = (rows, cfg.num_key_value_heads, width, core.layers[0].self_attn.head_dim)
    cache = [
        _Buffers(model.lm_head.weight.new_empty(shape), model.lm_head.weight.new_empty(shape)) for _ in core.layers
    ]
    cos, sin = (t[0] for t in core.rotary_emb(model.lm_head.weight, torch.arange(width)[None]))  # [width, head_dim]
    weights = _weights(model)
    # Per active row: the final hidden state its next token is sampled from.
    hidden = torch.cat(
        [
            _encode(
                model,
                weights,
                cache,
                cos,
                sin,
                ids,
                slice(p * n, (p + 1) * n),
                prefix=prefix if prefix is not None and prefix.matches(ids) else None,
            )
            for p, ids in enumerate(prompts)
        ]
    ).repeat_interleave(n, dim=0)
    columns = torch.arange(model.lm_head.weight.shape[0]) if allowed is None else torch.cat(list(allowed)).unique()
    head = model.lm_head.weight[columns]  # columns: sorted token ids
    bias = torch.zeros((rows, len(columns)))  # -inf where a row may not produce the column's token
    if allowed is not None:
        for p, ids in enumerate(allowed):
            bias[p * n : (p + 1) * n] = torch.where(torch.isin(columns, ids), 0.0, float("-inf"))
    # Prompt p's stream, drawn up front: the value for step s, sample j is its (s * n + j)-th draw.
    draws = torch.stack([torch.rand((max_new_tokens, n), generator=g) for g in generators or [None] * len(prompts)])
    draws = draws.transpose(1, 2).reshape(rows, max_new_tokens)
    lengths = torch.tensor([len(ids) for ids in prompts]).repeat_interleave(n)
    active = torch.arange(rows)  # rows still going (row = prompt * n + sample)
    out = torch.full((rows, max_new_tokens), eos_id)
    produced = torch.zeros(rows, dtype=torch.long)  # tokens per row, its EOS included
    for step in range(max_new_tokens):
        scores = F.linear(_padded(hidden), head)[: len(active)].float() + bias[active]
        banned = (
            [constrain(r, ids) for r, ids in zip(active.tolist(), out[active, :step].tolist(), strict=True)]
            if constrain is not None
            else ()
        )
        vocab = model.lm_head.weight.shape[0]
        scores = apply_processors(processors, out[active, :step], scores, columns, vocab, banned)
        stuck = ~torch.isfinite(scores).any(dim=-1)  # every allowed token banned: the row ends
        if bool(stuck.any()):
            scores[stuck, torch.searchsorted(columns, torch.tensor(eos_id))] = 0.0
        if temperature > 0:
            # Inverse-CDF sampling on the unnormalised cumulative sum (see the module notes).
            scaled = scores / temperature
            cdf = (scaled - scaled.max(dim=-1, keepdim=True).values).exp().cumsum(dim=-1)
            draw = (draws[active, step] * cdf[:, -1]).clamp(min=torch.finfo(cdf.dtype).tiny)
            picked = torch.searchsorted(cdf, draw[:, None]).squeeze(1)
        else:
            picked = scores.argmax(dim=-1)
        tokens = columns[picked]
        out[active, step] = tokens
        produced[active] = step + 1
        going = tokens != eos_id
        if stop is not None:
            ended = [stop(row) for row in out[active, : step + 1].tolist()]
            going &= ~torch.tensor(ended, dtype=torch.bool)
        if not bool(going.any()) or step == max_new_tokens - 1:
            break
        active, tokens = active[going], tokens[going]
        hidden = _step(model, weights, cache, cos, sin, active, tokens, lengths[active] + step)
    texts = [row[:k] for row, k in zip(out.tolist(), produced.tolist(), strict=True)]
    return [texts[p * n : (p + 1) * n] for p in range(len(prompts))]


def _norm(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    return F.rms_norm(x, x.shape[-1:], norm.weight, norm.variance_epsilon)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The rotary embedding of ``x`` [tokens, heads, head_dim] at the positions of ``cos``, ``sin`` [tokens, 1, d]."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], dim=-1) * sin


def _qkv(layer: torch.nn.Module, weight: torch.Tensor, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """Queries, keys and values [tokens, heads, head_dim] of ``hidden`` [tokens, hidden], keys and queries rotated."""
    attn = layer.self_attn
    heads = attn.config.num_attention_heads
    qkv = F.linear(_norm(hidden, layer.input_layernorm), weight).view(len(hidden), -1, attn.head_dim)
    kv_heads = (qkv.shape[1] - heads) // 2
    qk = _rotate(qkv[:, : heads + kv_heads], cos[:, None], sin[:, None])
    return qk[:, :heads], qk[:, heads:], qkv[:, heads + kv_heads :]


def _mlp(layer: torch.nn.Module, weight: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    gate, up = F.linear(_norm(hidden, layer.post_attention_layernorm), weight).chunk(2, dim=-1)
    return hidden + layer.mlp.down_proj(F.silu(gate) * up)


def _attend(
    attn: torch.nn.Module,
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    causal: bool,
    mask: torch.Tensor | None = None,
):
    """Attention of one sequence: ``q`` [heads, queries, d] over ``keys``, ``values`` [kv_heads, keys, d]."""
    return F.scaled_dot_product_attention(
        q[None],
        keys[None],
        values[None],
        attn_mask=mask,
        is_causal=causal,
        scale=attn.scaling,
        enable_gqa=len(q) != len(keys),
    )[0]


def _encode(
    model: LlamaForCausalLM,
    weights: Weights,
    cache: Cache,
    cos: torch.Tensor,
    sin: torch.Tensor,
    ids: Sequence[int],
    rows: slice,
    prefix: Prefix | None = None,
    last_token_only: bool = True,
) -> torch.Tensor:
    """The prompt's forward: its keys and values into ``rows`` of the cache, and the final hidden state of its
    last token [1, hidden]. With ``last_token_only`` the last layer runs its attention and MLP for that token
    only. With ``prefix`` (which ``ids`` starts with) its keys and values are copied and only the tokens after
    it run, their queries seeing the prefix and, causally, each other."""
    core = model.model
    start = len(prefix.ids) if prefix is not None else 0
    hidden = core.embed_tokens(torch.tensor(ids[start:]))
    at = slice(start, len(ids))
    # Query i (position start + i) sees keys 0 .. start + i: the causal mask aligned to its lower right, additive
    # (on CPU a boolean mask sends attention to a slower kernel than a float one)
    mask = None
    if prefix is not None:
        seen = torch.ones((len(ids) - start, len(ids)), dtype=torch.bool).tril(start)
        mask = torch.zeros(seen.shape).masked_fill(~seen, float("-inf"))
    for i, (layer, (qkv_weight, mlp_weight), buffers) in enumerate(zip(core.layers, weights, cache, strict=True)):
        q, k, v = (t.transpose(0, 1) for t in _qkv(layer, qkv_weight, hidden, cos[at], sin[at]))
        buffers.keys[rows, :, at], buffers.values[rows, :, at] = k, v
        if prefix is not None:
            buffers.keys[rows, :, :start], buffers.values[rows, :, :start] = prefix.keys[i], prefix.values[i]
            k, v = torch.cat([prefix.keys[i], k], dim=1), torch.cat([prefix.values[i], v], dim=1)
        if last_token_only and i == len(core.layers) - 1:
            q, hidden = q[:, -1:], hidden[-1:]
            mask = None  # the last token sees every key
        if mask is not None:
            out = _attend(layer.self_attn, q, k, v, causal=False, mask=mask)
        else:
            out = _attend(layer.self_attn, q, k, v, causal=q.shape[1] > 1)
        hidden = hidden + layer.self_attn.o_proj(out.transpose(0, 1).reshape(len(hidden), -1))
        hidden = _mlp(layer, mlp_weight, hidden)
    return _norm(hidden, core.norm)


def _step(
    model: LlamaForCausalLM,
    weights: Weights,
    cache: Cache,
    cos: torch.Tensor,
    sin: torch.Tensor,
    rows: torch.Tensor,
    tokens: torch.Tensor,
    positions: torch.Tensor,
) -> torch.Tensor:
    """One decoding step for ``rows`` (their ``tokens`` at their ``positions``): their final hidden states."""
    core = model.model
    hidden = _padded(core.embed_tokens(tokens))  # [rows padded, hidden]
    cos, sin = _padded(cos[positions]), _padded(sin[positions])
    ends = (positions + 1).tolist()
    for layer, (qkv_weight, mlp_weight), buffers in zip(core.layers, weights, cache, strict=True):
        q, k, v = _qkv(layer, qkv_weight, hidden, cos, sin)
        buffers.keys[rows, :, positions], buffers.values[rows, :, positions] = k[: len(rows)], v[: len(rows)]
        out = [
            _attend(layer.self_attn, q_row, buffers.row_keys[row][:, :end], buffers.row_values[row][:, :end], False)
            for q_row, row, end in zip(q[:, :, None].unbind(), rows.tolist(), ends, strict=False)
        ]
        hidden = hidden + layer.self_attn.o_proj(_padded(torch.cat(out).view(len(rows), -1)))
        hidden = _mlp(layer, mlp_weight, hidden)
    return _norm(hidden, core.norm)[: len(rows)]

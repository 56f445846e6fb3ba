"""A lean sampling loop for small Llama models on CPU (the nano model).

For a 2M-parameter model, ``generate`` spends its time in overhead, not arithmetic: the DynamicCache's
``torch.cat`` on every step (DESIGN measured it as most of decode time), mask building and logits-processor
plumbing. This loop encodes the prompt once with the model's own forward, copies the keys/values into
preallocated buffers shared by the ``n`` samples, and decodes with the model's own modules (same weights, same
rotary embedding), writing each step's keys/values in place. :func:`supports` says when it applies; otherwise
the ``hf`` backend uses ``generate``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F
from transformers import DynamicCache, LlamaForCausalLM
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

LogitsFilter = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def supports(model: object) -> bool:
    """Plain Llama (no adapters left unmerged, no rope scaling, no attention bias) on the CPU."""
    if type(model) is not LlamaForCausalLM:
        return False
    cfg = model.config
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    return (
        model.device.type == "cpu"
        and rope.get("rope_type", "default") == "default"
        and not cfg.attention_bias
        and not getattr(cfg, "mlp_bias", False)
        and cfg.hidden_act == "silu"
    )


@torch.inference_mode()
def sample(
    model: LlamaForCausalLM,
    prompt_ids: list[int],
    *,
    n: int,
    temperature: float,
    max_new_tokens: int,
    eos_id: int,
    logits_filter: LogitsFilter | None = None,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """``n`` continuations of one prompt (each cut after its EOS); greedy when ``temperature`` is 0."""
    core = model.model
    cfg = model.config
    prompt = torch.tensor([prompt_ids], dtype=torch.long)
    cache = DynamicCache()
    encoded = core(input_ids=prompt, past_key_values=cache, use_cache=True)
    length = prompt.shape[1]
    total = length + max_new_tokens
    keys, values = [], []
    for layer in range(cfg.num_hidden_layers):
        k, v = cache.layers[layer].keys, cache.layers[layer].values  # [1, kv_heads, P, head_dim]
        kb = k.new_empty((n, k.shape[1], total, k.shape[3]))
        vb = v.new_empty((n, v.shape[1], total, v.shape[3]))
        kb[:, :, :length] = k
        vb[:, :, :length] = v
        keys.append(kb)
        values.append(vb)
    logits = model.lm_head(encoded.last_hidden_state[:, -1]).expand(n, -1)
    tokens = torch.empty((n, total), dtype=torch.long)
    tokens[:, :length] = prompt
    # The filter is applied once, to the prompt: -inf where it forbids a token. For the title constraint this is
    # exact, since the titles a sample can produce are those of the prompt.
    bias = logits_filter(prompt, torch.zeros((1, logits.shape[-1]))) if logits_filter is not None else None
    done = torch.zeros(n, dtype=torch.bool)
    groups = cfg.num_attention_heads // cfg.num_key_value_heads
    steps = 0
    for step in range(max_new_tokens):
        pos = length + step
        scores = logits.float() if bias is None else logits.float() + bias
        if temperature > 0:
            # Inverse-CDF sampling: one uniform draw per row (torch.multinomial draws one per vocabulary entry).
            cdf = F.softmax(scores / temperature, dim=-1).cumsum(dim=-1)
            draw = torch.rand((n, 1), generator=generator) * cdf[:, -1:]
            nxt = torch.searchsorted(cdf, draw).squeeze(1).clamp(max=scores.shape[-1] - 1)
        else:
            nxt = scores.argmax(dim=-1)
        nxt = torch.where(done, torch.full_like(nxt, eos_id), nxt)
        tokens[:, pos] = nxt
        steps = step + 1
        done |= nxt == eos_id
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        hidden = core.embed_tokens(nxt[:, None])
        position = torch.full((n, 1), pos, dtype=torch.long)
        cos, sin = core.rotary_emb(hidden, position)
        for i, layer in enumerate(core.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(hidden)
            shape = (n, 1, -1, attn.head_dim)
            q = attn.q_proj(x).view(shape).transpose(1, 2)
            k = attn.k_proj(x).view(shape).transpose(1, 2)
            v = attn.v_proj(x).view(shape).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            keys[i][:, :, pos : pos + 1] = k
            values[i][:, :, pos : pos + 1] = v
            out = F.scaled_dot_product_attention(
                q, keys[i][:, :, : pos + 1], values[i][:, :, : pos + 1], scale=attn.scaling, enable_gqa=groups > 1
            )
            hidden = hidden + attn.o_proj(out.transpose(1, 2).reshape(n, 1, -1))
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
        logits = model.lm_head(core.norm(hidden))[:, -1]
    rows = tokens[:, length : length + steps].tolist()
    return [row[: row.index(eos_id) + 1] if eos_id in row else row for row in rows]

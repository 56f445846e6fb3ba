"""``hf`` backend: transformers ``generate`` on CPU or GPU, with an optional PEFT LoRA adapter.

Never downloads: models and adapters load with ``local_files_only=True``. When the tokenizer has one token per
title (the nano model), decoding only allows the titles present in the prompt.

Each prompt samples from its own random stream, seeded from the call's seed and the prompt (``sample_seed``). With
the fast decoder (small Llama on CPU) all samples of a call decode together, up to ``max_batch_rows`` rows per
batch, and a sample's text does not depend on the other prompts of its call or batch (see ``llama_decode``).
Otherwise each prompt goes through ``generate`` on its own, its ``n`` samples batched together.

Every profile prompt opens with the same system text and instructions (:func:`shared_prefix_ids`). With
``prefix_cache`` (the default) their keys and values are computed once per loaded model and reused by every
prompt that starts with them: the fast decoder copies them into each prompt's rows, ``generate`` starts from a
copy of their ``DynamicCache``. The cache belongs to the model it was computed with: a generator whose model or
``model_version`` changes (a hot swap loads a new generator anyway) computes it again.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DynamicCache,
    LogitsProcessorList,
    StoppingCriteriaList,
)

from lettingo.data import Item, Sentiment
from lettingo.generators import llama_decode
from lettingo.generators.base import Generation, Generator, GeneratorError, sample_seed
from lettingo.generators.controls import GroundingProcessor, StopCriteria, StopRule, completion_processors
from lettingo.generators.decoding import Decoding, stop_index
from lettingo.generators.grounding import GroundingRule, PromptFacts, grounding_rows
from lettingo.generators.title_constraint import PromptTitlesOnly
from lettingo.nano.tokenizer import quote_token_ids, title_token_ids
from lettingo.prompts.profile import HistoryEntry, ProfilePrompt, profile_prompt_from_entries

log = logging.getLogger(__name__)


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def shared_prefix_ids(encode: Any) -> list[int]:
    """The tokens every profile prompt starts with, as ``encode`` (prompt -> ids) writes them: the common token
    prefix of two prompts whose histories differ from their first character (none, and one entry), so a token
    that could merge with the history's first characters is left out."""
    entry = HistoryEntry(Item("0", "Prefix Probe", ("Drama",), 2000), 4.0, Sentiment.LIKE)
    a, b = encode(profile_prompt_from_entries([])), encode(profile_prompt_from_entries([entry]))
    common = 0
    while common < min(len(a), len(b)) and a[common] == b[common]:
        common += 1
    return list(a[:common])


class HFGenerator(Generator):
    def __init__(
        self,
        model_path: str,
        *,
        adapter: str | None = None,
        model_version: str | None = None,
        device: str | None = None,
        dtype: str | None = None,
        cache_implementation: str | None = None,
        decoder: str = "auto",
        use_chat_template: bool | None = None,
        merge_adapter: bool = True,
        max_batch_rows: int = 64,
        kv_budget_bytes: int = 2 << 30,
        decoding: Decoding | None = None,
        prefix_cache: bool = True,
    ) -> None:
        self.name = "hf"
        if decoder not in ("auto", "fast", "generate"):
            raise ValueError(f"decoder must be auto, fast or generate, not {decoder!r}")
        if max_batch_rows < 1:
            raise ValueError(f"max_batch_rows must be at least 1, got {max_batch_rows}")
        self.max_batch_rows = max_batch_rows
        self.kv_budget_bytes = kv_budget_bytes
        self.decoding = decoding or Decoding()
        self.device = device or _default_device()
        self.cache_implementation = cache_implementation
        self.prefix_cache = prefix_cache
        self._prefix: tuple[tuple[object, str], Any] | None = None  # (model, version) -> its prefix cache
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
            torch_dtype = getattr(torch, dtype) if dtype else ("auto" if self.device != "cpu" else torch.float32)
            model = AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True, dtype=torch_dtype)
            if adapter:
                from peft import PeftModel  # only needed with an adapter

                model = PeftModel.from_pretrained(model, adapter, local_files_only=True)
                if merge_adapter:
                    model = model.merge_and_unload()
        except (OSError, ValueError) as e:
            raise GeneratorError(
                f"hf: cannot load model {model_path!r}{f' with adapter {adapter!r}' if adapter else ''}: {e}"
            ) from e
        self.model = model.to(self.device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model_version = model_version or Path(adapter or model_path).name
        self.use_chat_template = bool(self.tokenizer.chat_template) if use_chat_template is None else use_chat_template
        titles = title_token_ids(self.tokenizer)
        vocab = self.model.get_output_embeddings().weight.shape[0]
        self.title_constraint = PromptTitlesOnly(titles, vocab, quote_token_ids(self.tokenizer)) if titles else None
        self.stop_rules: dict[tuple[str, ...], StopRule] = {}
        self.grounding = GroundingRule(self.tokenizer, vocab)
        self.fast = decoder != "generate" and llama_decode.supports(self.model)
        if decoder == "fast" and not self.fast:
            raise GeneratorError(f"hf: the fast decoder does not support {type(self.model).__name__} on {self.device}")
        log.info(
            "hf generator loaded %s (version %s, device %s, %d title tokens)",
            model_path,
            self.model_version,
            self.device,
            len(titles),
        )

    def encode(self, prompt: ProfilePrompt) -> list[int]:
        if self.use_chat_template:
            rendered = self.tokenizer.apply_chat_template(
                list(prompt.messages), add_generation_prompt=True, tokenize=False
            )
            return self.tokenizer(rendered, add_special_tokens=False)["input_ids"]
        return self.tokenizer(prompt.text)["input_ids"]

    def _shared_prefix(self) -> Any:
        """The shared prefix's keys and values for the model now loaded (a :class:`llama_decode.Prefix` for the
        fast decoder, else ``(ids, DynamicCache)``), computed on first use and again after the model or its
        version changed; None with ``prefix_cache`` off or when the prompts share no tokens."""
        if not self.prefix_cache:
            return None
        key = (self.model, self.model_version)
        if self._prefix is not None and self._prefix[0][0] is key[0] and self._prefix[0][1] == key[1]:
            return self._prefix[1]
        ids = shared_prefix_ids(self.encode)
        value: Any = None
        if ids and self.fast:
            value = llama_decode.encode_prefix(self.model, ids)
        elif ids:
            with torch.inference_mode():
                cache = DynamicCache(config=self.model.config)
                self.model(input_ids=torch.tensor([ids], device=self.device), past_key_values=cache, use_cache=True)
            value = (ids, cache)
        self._prefix = (key, value)
        log.info("hf generator %s: shared prompt prefix of %d tokens cached", self.model_version, len(ids))
        return value

    def _stop_rule(self, decoding: Decoding) -> StopRule | None:
        if not decoding.stop:
            return None
        return self.stop_rules.setdefault(decoding.stop, StopRule(self.tokenizer, decoding.stop))

    def _kv_bytes_per_token(self) -> int:
        cfg = self.model.config
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * self.model.dtype.itemsize

    def _batches(self, ids: list[list[int]], n: int, max_new_tokens: int) -> list[slice]:
        """Consecutive prompts per fast-decoder call: at most ``max_batch_rows`` rows, and their key / value
        buffers (rows x the batch's widest prompt) within ``kv_budget_bytes``; a prompt's samples stay together."""
        per_token, out, start = self._kv_bytes_per_token(), [], 0
        while start < len(ids):
            end, width = start + 1, len(ids[start]) + max_new_tokens
            while end < len(ids):
                wider = max(width, len(ids[end]) + max_new_tokens)
                rows = (end + 1 - start) * n
                if rows > max(n, self.max_batch_rows) or rows * wider * per_token > self.kv_budget_bytes:
                    break
                end, width = end + 1, wider
            out.append(slice(start, end))
            start = end
        return out

    def _generate(
        self,
        prompts: list[ProfilePrompt],
        n: int,
        temperature: float,
        max_new_tokens: int,
        seed: int,
        decoding: Decoding,
    ) -> list[list[Generation]]:
        if not self.fast:
            return [self._generate_one(p, n, temperature, max_new_tokens, seed, decoding) for p in prompts]
        processors = completion_processors(decoding, self.title_constraint is not None)
        stop = self._stop_rule(decoding)
        encoded = [self.encode(p) for p in prompts]
        out = []
        for batch in self._batches(encoded, n, max_new_tokens):
            started = time.perf_counter()
            ids = encoded[batch]
            facts = [PromptFacts.of(p) for p in prompts[batch]] if decoding.grounded else None
            rows = llama_decode.sample(
                self.model,
                ids,
                n=n,
                temperature=temperature,
                max_new_tokens=max_new_tokens,
                eos_id=self.tokenizer.eos_token_id,
                allowed=[self.title_constraint.allowed(i) for i in ids] if self.title_constraint else None,
                generators=[torch.Generator().manual_seed(sample_seed(seed, p)) for p in prompts[batch]],
                processors=processors,
                constrain=grounding_rows(self.grounding, facts, n) if facts else None,
                stop=stop.done if stop else None,
                prefix=self._shared_prefix(),
            )
            latency = time.perf_counter() - started
            out += [self._generations(r, len(i), latency, seed, decoding) for r, i in zip(rows, ids, strict=True)]
        return out

    @torch.inference_mode()
    def _generate_one(
        self, prompt: ProfilePrompt, n: int, temperature: float, max_new_tokens: int, seed: int, decoding: Decoding
    ) -> list[Generation]:
        """``generate`` for one prompt, its ``n`` samples batched, under the prompt's seed."""
        started = time.perf_counter()
        prompt_ids = self.encode(prompt)
        torch.manual_seed(sample_seed(seed, prompt))
        input_ids = torch.tensor([prompt_ids], device=self.device)
        sampling = (
            {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
            if temperature > 0
            else {"do_sample": False}
        )
        processors = [self.title_constraint] if self.title_constraint else []
        processors += completion_processors(decoding, self.title_constraint is not None, len(prompt_ids))
        if decoding.grounded:
            processors.append(GroundingProcessor(self.grounding, PromptFacts.of(prompt), len(prompt_ids)))
        stop = self._stop_rule(decoding)
        cached = self._generate_cache(prompt_ids, n)
        output = self.model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            num_return_sequences=n,
            max_new_tokens=max_new_tokens,
            logits_processor=LogitsProcessorList(processors),
            stopping_criteria=StoppingCriteriaList([StopCriteria(stop, len(prompt_ids))] if stop else []),
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
            **(
                {"past_key_values": cached}
                if cached is not None
                else {"cache_implementation": self.cache_implementation}
            ),
            **sampling,
        )
        rows = output[:, len(prompt_ids) :].tolist()
        return self._generations(rows, len(prompt_ids), time.perf_counter() - started, seed, decoding)

    def _generate_cache(self, prompt_ids: list[int], n: int) -> DynamicCache | None:
        """A copy of the shared prefix's cache, one row per sample, when the prompt starts with the prefix."""
        shared = self._shared_prefix() if self.cache_implementation is None else None
        if shared is None:
            return None
        ids, cache = shared
        if len(prompt_ids) <= len(ids) or prompt_ids[: len(ids)] != ids:
            return None
        cache = copy.deepcopy(cache)
        if n > 1:
            cache.batch_repeat_interleave(n)
        return cache

    def _generations(
        self, rows: list[list[int]], prompt_tokens: int, latency: float, seed: int, decoding: Decoding
    ) -> list[Generation]:
        """Rows cut after their EOS; a row is finished when it ended by EOS or by a stop string."""
        out = []
        for row in rows:
            ended = self.tokenizer.eos_token_id in row
            tokens = row[: row.index(self.tokenizer.eos_token_id) + 1] if ended else row
            text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
            finished = ended or stop_index(text, decoding.stop) is not None
            out.append(
                Generation(text, prompt_tokens, len(tokens), latency, self.name, self.model_version, seed, finished)
            )
        return out

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def close(self) -> None:
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

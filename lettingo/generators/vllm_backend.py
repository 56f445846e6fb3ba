"""``vllm`` backend: the offline ``vllm.LLM`` engine (GPU), one ``LoRARequest`` per model version.

vLLM is imported only when this backend is constructed, so CPU installs never import it. Each request carries
its own seed (derived from the call's seed and the prompt) and, for tokenizers with title tokens, the
``allowed_token_ids`` that keep titles to those of the prompt.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from lettingo.generators.base import Generation, Generator, GeneratorError, sample_seed
from lettingo.generators.decoding import Decoding
from lettingo.generators.title_constraint import allowed_token_ids
from lettingo.nano.tokenizer import quote_token_ids, title_token_ids
from lettingo.prompts.profile import ProfilePrompt

log = logging.getLogger(__name__)


class VLLMGenerator(Generator):
    def __init__(
        self,
        model_path: str,
        *,
        adapter: str | None = None,
        model_version: str | None = None,
        max_lora_rank: int = 64,
        use_chat_template: bool | None = None,
        decoding: Decoding | None = None,
        **engine_kwargs: Any,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as e:
            raise GeneratorError("vllm backend: vllm is not installed (pip install 'lettingo[vllm]', GPU only)") from e
        self.name = "vllm"
        self.decoding = decoding or Decoding()
        self._base_version = Path(model_path).name
        try:
            self.llm = LLM(model=model_path, enable_lora=True, max_lora_rank=max_lora_rank, **engine_kwargs)
        except Exception as e:  # vLLM raises many types on a bad model folder or no GPU
            raise GeneratorError(f"vllm: cannot start an engine for {model_path!r}: {e}") from e
        self.tokenizer = self.llm.get_tokenizer()
        self.use_chat_template = (
            bool(getattr(self.tokenizer, "chat_template", None)) if use_chat_template is None else use_chat_template
        )
        self._titles = set(title_token_ids(self.tokenizer)) if hasattr(self.tokenizer, "get_added_vocab") else set()
        self._banned = quote_token_ids(self.tokenizer) if self._titles else set()
        self._vocab_size = len(self.tokenizer)
        self._lora_ids: dict[str, int] = {}
        self._lora: Any = None
        self.model_version = model_version or self._base_version
        if adapter:
            self.set_adapter(adapter, model_version)

    def set_adapter(self, adapter: str | None, model_version: str | None = None) -> None:
        """Serve a LoRA adapter (a new model version) from now on; ``None`` goes back to the base model."""
        if adapter is None:
            self._lora, self.model_version = None, model_version or self._base_version
            return
        from vllm.lora.request import LoRARequest

        version = model_version or Path(adapter).name
        lora_id = self._lora_ids.setdefault(adapter, len(self._lora_ids) + 1)  # vLLM wants a unique positive int
        self._lora = LoRARequest(lora_name=version, lora_int_id=lora_id, lora_path=adapter)
        self.model_version = version

    def encode(self, prompt: ProfilePrompt) -> list[int]:
        if self.use_chat_template:
            text = self.tokenizer.apply_chat_template(list(prompt.messages), add_generation_prompt=True, tokenize=False)
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer(prompt.text)["input_ids"]

    def _generate(
        self,
        prompts: list[ProfilePrompt],
        n: int,
        temperature: float,
        max_new_tokens: int,
        seed: int,
        decoding: Decoding,
    ) -> list[list[Generation]]:
        """vLLM has no n-gram ban: its ``repetition_penalty`` (which also counts prompt tokens),
        ``frequency_penalty`` and ``stop`` apply, and :func:`~lettingo.generators.decoding.finish_text` cuts loops."""
        from vllm import SamplingParams

        encoded = [self.encode(p) for p in prompts]
        params = [
            SamplingParams(
                n=n,
                temperature=temperature,
                top_p=1.0,
                top_k=-1 if temperature > 0 else 1,
                max_tokens=max_new_tokens,
                seed=sample_seed(seed, p),
                repetition_penalty=decoding.repetition_penalty,
                frequency_penalty=decoding.frequency_penalty,
                stop=list(decoding.stop) or None,
                allowed_token_ids=allowed_token_ids(ids, self._titles, self._vocab_size, self._banned)
                if self._titles
                else None,
            )
            for p, ids in zip(prompts, encoded, strict=True)
        ]
        started = time.perf_counter()
        outputs = self.llm.generate(
            [{"prompt_token_ids": ids} for ids in encoded], params, lora_request=self._lora, use_tqdm=False
        )
        latency = time.perf_counter() - started
        return [
            [
                Generation(
                    c.text.strip(),
                    len(ids),
                    len(c.token_ids),
                    latency,
                    self.name,
                    self.model_version,
                    seed,
                    finished=c.finish_reason == "stop",
                )
                for c in out.outputs
            ]
            for out, ids in zip(outputs, encoded, strict=True)
        ]

    def close(self) -> None:
        self.llm = None

"""``openai`` backend: any OpenAI-compatible server, e.g. ``vllm serve BASE --enable-lora`` on a GPU, or
``transformers serve MODEL`` on a CPU (tested: ``tests/test_openai_server.py``).

Every sample is its own request (``n=1``, seed = the prompt's seed + the sample's index): servers differ on ``n``
(``transformers serve`` refuses it), and one request per sample keeps a sample's text independent of the others.
Requests go out concurrently from a thread pool. A request that cannot connect, times out (``timeout`` seconds)
or gets an error status is retried by the client ``retries`` times; then the whole call fails with
:class:`GeneratorError`, so the caller's own retry (the worker: backoff, re-queue, dead letter) takes over and no
request is lost. Repetition control is the server's: ``stop`` strings and ``frequency_penalty`` (vLLM and OpenAI
penalise output tokens by count; ``transformers serve`` maps it to ``repetition_penalty`` 1 + f), and
:func:`~lettingo.generators.decoding.finish_text` cuts any loop that remains.

LoRA adapters (model versions) are loaded and unloaded at runtime through vLLM's ``/v1/load_lora_adapter`` and
``/v1/unload_lora_adapter`` (the server needs ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``); the adapter's name
is then the model requests ask for. When a local tokenizer with title tokens is given, requests carry vLLM's
``allowed_token_ids`` so titles stay those of the prompt.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai

from lettingo.generators.base import Generation, Generator, GeneratorError, sample_seed
from lettingo.generators.decoding import Decoding
from lettingo.generators.title_constraint import allowed_token_ids
from lettingo.prompts.profile import ProfilePrompt

log = logging.getLogger(__name__)


class OpenAIGenerator(Generator):
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "EMPTY",
        model_version: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 2,
        concurrency: int = 8,
        use_chat: bool = True,
        tokenizer: str | None = None,
        decoding: Decoding | None = None,
    ) -> None:
        self.name = "openai"
        self.decoding = decoding or Decoding(frequency_penalty=0.1)
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.model_version = model_version or model
        self.use_chat = use_chat
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._client = openai.OpenAI(base_url=self.base_url, api_key=api_key, timeout=timeout_s, max_retries=retries)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="openai-gen")
        self._tokenizer: Any = None
        self._titles: set[int] = set()
        self._banned: set[int] = set()
        if tokenizer:
            from transformers import AutoTokenizer

            from lettingo.nano.tokenizer import quote_token_ids, title_token_ids

            self._tokenizer = AutoTokenizer.from_pretrained(tokenizer, local_files_only=True)
            self._titles = set(title_token_ids(self._tokenizer))
            self._banned = quote_token_ids(self._tokenizer) if self._titles else set()

    # --- adapters, loaded at runtime ---
    def _admin(self, path: str, body: dict[str, str]) -> None:
        try:
            r = httpx.post(
                f"{self.base_url}/{path}",
                json=body,
                headers={"Authorization": f"Bearer {self._api_key}"},
                timeout=self._timeout_s,
            )
        except httpx.HTTPError as e:
            raise GeneratorError(f"openai: {path} failed: {e}") from e
        if r.status_code >= 400:
            raise GeneratorError(f"openai: {path} returned {r.status_code}: {r.text[:300]}")

    def load_adapter(self, name: str, path: str) -> None:
        """Load a LoRA adapter on the server and serve it from now on as model version ``name``."""
        self._admin("load_lora_adapter", {"lora_name": name, "lora_path": path})
        self.model = self.model_version = name

    def unload_adapter(self, name: str) -> None:
        self._admin("unload_lora_adapter", {"lora_name": name})

    # --- generation ---
    def _extra_body(self, prompt: ProfilePrompt) -> dict[str, Any] | None:
        if not self._titles:
            return None
        text = self._tokenizer.apply_chat_template(list(prompt.messages), add_generation_prompt=True, tokenize=False)
        ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        return {"allowed_token_ids": allowed_token_ids(ids, self._titles, len(self._tokenizer), self._banned)}

    def _sample(
        self, prompt: ProfilePrompt, index: int, temperature: float, max_new_tokens: int, seed: int, decoding: Decoding
    ) -> Generation:
        """One sample: one request."""
        started = time.perf_counter()
        common: dict[str, Any] = {
            "model": self.model,
            "temperature": temperature,
            "max_tokens": max_new_tokens,
            "seed": sample_seed(seed, prompt) + index,
            "extra_body": self._extra_body(prompt),
        }
        if decoding.frequency_penalty:
            common["frequency_penalty"] = decoding.frequency_penalty
        if decoding.stop:
            common["stop"] = list(decoding.stop)[:4]  # the OpenAI API takes four
        try:
            if self.use_chat:
                resp = self._client.chat.completions.create(messages=list(prompt.messages), **common)  # type: ignore[arg-type]
                text, reason = resp.choices[0].message.content or "", resp.choices[0].finish_reason
            else:
                resp = self._client.completions.create(prompt=prompt.text, **common)
                text, reason = resp.choices[0].text, resp.choices[0].finish_reason
        except (openai.OpenAIError, httpx.HTTPError, IndexError) as e:
            raise GeneratorError(f"openai: request to {self.base_url} for model {self.model!r} failed: {e!r}") from e
        usage = resp.usage
        return Generation(
            text.strip(),
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
            time.perf_counter() - started,
            self.name,
            self.model_version,
            seed,
            reason == "stop",
        )

    def _generate(
        self,
        prompts: list[ProfilePrompt],
        n: int,
        temperature: float,
        max_new_tokens: int,
        seed: int,
        decoding: Decoding,
    ) -> list[list[Generation]]:
        futures = [
            [self._pool.submit(self._sample, p, j, temperature, max_new_tokens, seed, decoding) for j in range(n)]
            for p in prompts
        ]
        try:
            return [[f.result() for f in row] for row in futures]
        finally:
            for row in futures:
                for f in row:
                    f.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

"""Generator specs: one string names a backend and its model.

    hf:/path/to/model[?adapter=/path/to/lora&version=v3&device=cpu&dtype=bfloat16&cache=static&decoder=generate]
    hf:/path/to/model?no_repeat_ngram=6&repetition_penalty=1.1     (any model backend; see generators.decoding)
    vllm:/path/to/model[?adapter=/path/to/lora&version=v3]
    openai:http://host:8000/v1#served-model[?version=v3&tokenizer=/local/tokenizer&timeout=60&retries=2]
    writer:titles          writer:mix          writer:genres,era

Parsing is separate from loading, so a bad spec is rejected with a clear message before any model is touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from lettingo.errors import ConfigError
from lettingo.generators.base import Generator
from lettingo.generators.decoding import Decoding
from lettingo.writers import WRITERS

BACKENDS = ("hf", "vllm", "openai", "writer")
_DECODING = {"no_repeat_ngram", "repetition_penalty", "frequency_penalty", "grounded"}  # lettingo.generators.decoding
_OPTIONS = {
    "hf": {"adapter", "version", "device", "dtype", "cache", "chat", "decoder", *_DECODING},
    "vllm": {"adapter", "version", "chat", "gpu_memory_utilization", "max_model_len", "dtype", *_DECODING},
    "openai": {"version", "tokenizer", "api", "api_key_env", "concurrency", "timeout", "retries", *_DECODING},
    "writer": set(),
}
EXAMPLES = "hf:/path/to/model, vllm:/path/to/model, openai:http://host:8000/v1#model, writer:titles"


class GeneratorSpecError(ConfigError):
    """A generator spec that cannot be parsed or names something that does not exist."""


@dataclass(frozen=True, slots=True)
class GeneratorSpec:
    backend: str
    target: str  # model path / id, server URL, or writer names
    model: str | None = None  # openai: the served model name
    options: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return (
            f"{self.backend}:{self.target}" + (f"#{self.model}" if self.model else "") + (f"?{query}" if query else "")
        )


def _split_query(rest: str) -> tuple[str, dict[str, str]]:
    if "?" not in rest:
        return rest, {}
    head, query = rest.rsplit("?", 1)
    try:
        return head, dict(parse_qsl(query, keep_blank_values=False, strict_parsing=True))
    except ValueError as e:
        raise GeneratorSpecError(f"bad options {query!r}: expected key=value pairs joined by '&'") from e


def parse_spec(spec: str) -> GeneratorSpec:
    """Parse a spec string; raises :class:`GeneratorSpecError` with what was expected."""
    backend, sep, rest = spec.strip().partition(":")
    if not sep or backend not in BACKENDS:
        raise GeneratorSpecError(
            f"bad generator spec {spec!r}: it must start with one of {', '.join(b + ':' for b in BACKENDS)} "
            f"(e.g. {EXAMPLES})"
        )
    rest, options = _split_query(rest)
    unknown = set(options) - _OPTIONS[backend]
    if unknown:
        allowed = ", ".join(sorted(_OPTIONS[backend])) or "none"
        raise GeneratorSpecError(
            f"{spec!r}: unknown option(s) {', '.join(sorted(unknown))} for {backend} (allowed: {allowed})"
        )
    if not rest:
        raise GeneratorSpecError(f"{spec!r}: nothing after '{backend}:' (e.g. {EXAMPLES})")
    if backend == "openai":
        url, _, model = rest.partition("#")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise GeneratorSpecError(f"{spec!r}: openai needs an http(s) URL such as http://host:8000/v1#model")
        if not model:
            raise GeneratorSpecError(f"{spec!r}: openai needs the served model after '#', e.g. {url}#my-model")
        return GeneratorSpec(backend, url, model, options)
    if backend == "writer":
        names = [n.strip() for n in rest.split(",") if n.strip()]
        bad = [n for n in names if n not in WRITERS and n != "mix"]
        if bad or not names:
            raise GeneratorSpecError(
                f"{spec!r}: unknown writer(s) {', '.join(bad) or '(none)'}; known: mix, {', '.join(WRITERS)}"
            )
        return GeneratorSpec(backend, ",".join(names), None, options)
    return GeneratorSpec(backend, rest, None, options)


def _local_model(target: str, what: str) -> str:
    """A model path must exist; a bare id (``org/name``) is allowed and loaded from the local cache only."""
    looks_like_path = target.startswith((".", "/", "~")) or Path(target).exists()
    if looks_like_path and not Path(target).expanduser().exists():
        raise GeneratorSpecError(f"{what}: model folder {target!r} does not exist")
    return str(Path(target).expanduser()) if looks_like_path else target


def _decoding(parsed: GeneratorSpec, opts: dict[str, str], base: Decoding | None = None) -> Decoding:
    try:
        return Decoding.from_options(opts, base)
    except ValueError as e:
        raise GeneratorSpecError(f"{parsed}: {e}") from e


def _flag(value: str | None) -> bool | None:
    return None if value is None else value.lower() in ("1", "true", "yes", "on")


def make_generator(spec: str | GeneratorSpec, **overrides: str | None) -> Generator:
    """Build a generator from a spec; ``overrides`` (the spec's option names, ``model_version`` for ``version``)
    win over the spec's own options; ``None`` values are ignored."""
    parsed = spec if isinstance(spec, GeneratorSpec) else parse_spec(spec)
    given = {("version" if k == "model_version" else k): v for k, v in overrides.items() if v is not None}
    unknown = set(given) - _OPTIONS[parsed.backend]
    if unknown:
        raise GeneratorSpecError(f"{parsed}: unknown option(s) {', '.join(sorted(unknown))} for {parsed.backend}")
    opts = {**parsed.options, **given}
    if parsed.backend == "writer":
        from lettingo.generators.writer_backend import WriterGenerator

        return WriterGenerator(parsed.target.split(","))
    if parsed.backend == "hf":
        from lettingo.generators.hf import HFGenerator

        adapter = opts.get("adapter")
        if adapter and not Path(adapter).expanduser().exists():
            raise GeneratorSpecError(f"{parsed}: adapter folder {adapter!r} does not exist")
        return HFGenerator(
            _local_model(parsed.target, str(parsed)),
            adapter=adapter,
            model_version=opts.get("version"),
            device=opts.get("device"),
            dtype=opts.get("dtype"),
            cache_implementation=opts.get("cache"),
            decoder=opts.get("decoder", "auto"),
            use_chat_template=_flag(opts.get("chat")),
            decoding=_decoding(parsed, opts),
        )
    if parsed.backend == "vllm":
        from lettingo.generators.vllm_backend import VLLMGenerator

        engine: dict[str, Any] = {k: float(opts[k]) for k in ("gpu_memory_utilization",) if k in opts}
        engine.update({k: int(opts[k]) for k in ("max_model_len",) if k in opts})
        if "dtype" in opts:
            engine["dtype"] = opts["dtype"]
        return VLLMGenerator(
            _local_model(parsed.target, str(parsed)),
            adapter=opts.get("adapter"),
            model_version=opts.get("version"),
            use_chat_template=_flag(opts.get("chat")),
            decoding=_decoding(parsed, opts),
            **engine,
        )
    import os

    from lettingo.generators.openai_backend import OpenAIGenerator

    api_key = (
        os.environ.get(opts["api_key_env"], "") if "api_key_env" in opts else os.environ.get("OPENAI_API_KEY", "EMPTY")
    )
    return OpenAIGenerator(
        parsed.target,
        parsed.model or "",
        api_key=api_key or "EMPTY",
        model_version=opts.get("version"),
        use_chat=opts.get("api", "chat") == "chat",
        tokenizer=opts.get("tokenizer"),
        concurrency=int(opts.get("concurrency", 8)),
        timeout_s=float(opts.get("timeout", 120)),
        retries=int(opts.get("retries", 2)),
        decoding=_decoding(parsed, opts, Decoding(frequency_penalty=0.1)),
    )

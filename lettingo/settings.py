"""The core's settings: typed sections read from ``LETTINGO_*`` environment variables (and a ``.env`` file).

Each section is its own pydantic-settings class, so it reads its variables when built and validates them there,
and the documented variable names stay flat (``LETTINGO_WORKER_HISTORY_WINDOW`` is ``settings.worker.history_window``,
``LETTINGO_SEEN_EVENTS_MAX`` is ``settings.worker.seen_events_max``). Only entry points (CLI commands, the worker's
app factory) build a :class:`Settings`; library code is handed the settings or the values it needs.

The infrastructure sections (Kafka, the local broker, topics, the worker's web server, Faust) live in
:mod:`streams.settings`, which extends :class:`Settings`. The README's settings table is generated from the fields'
descriptions (``python -m lettingo.settings_doc``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from lettingo.errors import ConfigError
from lettingo.records import InputLimits

ENV_PREFIX = "LETTINGO_"


def section_config(prefix: str = "") -> SettingsConfigDict:
    """Every section reads ``LETTINGO_<prefix><FIELD>`` (or a field's own ``validation_alias``) and the ``.env``."""
    return SettingsConfigDict(
        env_prefix=ENV_PREFIX + prefix, env_file=".env", extra="ignore", populate_by_name=True, validate_default=True
    )


def env(name: str) -> Any:
    """A field's environment variable when it does not follow its section's prefix (the documented names)."""
    return ENV_PREFIX + name


class Section(BaseSettings):
    """One group of settings; built on its own (it reads the environment) or as part of a :class:`Settings`."""

    model_config = section_config()


class LimitsSettings(Section):
    """What a worker accepts on input (the dead-letter rules)."""

    max_message_bytes: int = Field(65_536, ge=1024, description="Larger input messages go to dead-letters.")
    input_ts_min: float = Field(
        0.0,
        ge=0,
        allow_inf_nan=False,
        description="Earliest input timestamp (epoch seconds); earlier ones go to dead-letters as `implausible_ts` "
        "(0: any non-negative time, so relative-time datasets replay).",
    )
    input_ts_max_ahead_seconds: float = Field(
        86_400.0,
        ge=0,
        allow_inf_nan=False,
        description="How far past the worker's wall clock an input timestamp may be (producer clock skew); later "
        "ones go to dead-letters as `implausible_ts`.",
    )
    rating_min: float = Field(
        0.0,
        allow_inf_nan=False,
        description="Lowest rating accepted on input (an interaction's `rating`, a rating feedback's `value`); "
        "lower ones go to dead-letters as `rating_out_of_scale`.",
    )
    rating_max: float = Field(
        5.0,
        allow_inf_nan=False,
        description="Highest rating accepted on input; set the pair to your data's scale (MovieLens: 0.5-5).",
    )

    @model_validator(mode="after")
    def _scale(self) -> Self:
        if self.rating_min > self.rating_max:
            raise ValueError(f"LETTINGO_RATING_MIN={self.rating_min} is above LETTINGO_RATING_MAX={self.rating_max}")
        return self

    def input_limits(self) -> InputLimits:
        """What :func:`lettingo.records.decode_record` accepts on input: size, timestamps, rating scale."""
        return InputLimits(
            max_bytes=self.max_message_bytes,
            ts_min=self.input_ts_min,
            ts_max_ahead_s=self.input_ts_max_ahead_seconds,
            rating_min=self.rating_min,
            rating_max=self.rating_max,
        )


class WorkerSettings(Section):
    """How a stream worker keeps a user's history and writes the served profile."""

    model_config = section_config("WORKER_")

    policy: str = Field(
        "writer:combined",
        description="Generator spec (`lettingo.generators`: `writer:<names>`, `hf:<model path>[?adapter=...]`, "
        "`vllm:...`, `openai:...`) served until a model version arrives.",
    )
    history_window: int = Field(10, ge=1, description="Recent interactions kept per user (h_u).")
    history_max: int = Field(
        70,
        ge=1,
        description="Older interactions kept per user (H_u, bounded); the profile prompt shows up to this many.",
    )
    cold_start_after: int = Field(5, ge=1, description="Interactions before a user's first profile.")
    seen_events_max: int = Field(
        20_000,
        ge=1,
        validation_alias=env("SEEN_EVENTS_MAX"),
        description="Event ids remembered per user for idempotent ingest.",
    )
    serve_temperature: float = Field(
        0.0,
        ge=0,
        validation_alias=env("SERVE_TEMPERATURE"),
        description="Sampling temperature of the served profile (0: greedy).",
    )
    max_new_tokens: int = Field(
        96, ge=1, validation_alias=env("MAX_NEW_TOKENS"), description="Longest generated profile, in model tokens."
    )
    prompt_max_tokens: int | None = Field(
        None,
        ge=1,
        validation_alias=env("PROMPT_MAX_TOKENS"),
        description="Token budget of the history in a profile prompt (served and explored), counted with the "
        "tokenizer of the serving policy: the most recent lines that fit are kept, as `lettingo explore "
        "--max-prompt-tokens`; unset: all of H_u. Needs a model policy (`hf:`, `vllm:`) to count tokens with.",
    )
    feedback_window_seconds: float = Field(
        30.0,
        gt=0,
        validation_alias=env("FEEDBACK_WINDOW_SECONDS"),
        description="How long an impression waits for a click.",
    )

    @property
    def keep_events(self) -> int:
        """Interactions kept per user: the recent window and the bounded older history."""
        return self.history_window + self.history_max


class DriftSettings(Section):
    """When a user's new interactions call for a new profile."""

    model_config = section_config("DRIFT_")

    threshold: float = Field(
        0.15,
        ge=0,
        le=1,
        description="Jensen-Shannon divergence (base 2) of the user's attribute / sentiment distributions that "
        "counts as drift.",
    )
    min_new_events: int = Field(5, ge=1, description="New interactions since the last profile before drift counts.")
    cooldown_seconds: float = Field(86_400.0, ge=0, description="Event time between two drift requests of one user.")


class ExploreSettings(Section):
    """The candidates a worker explores besides the served profile."""

    model_config = section_config("EXPLORE_")

    policy: str = Field(
        "writer:genres,titles,era,strictness,combined,poor",
        description="Generator spec that explores candidate profiles.",
    )
    rate: float = Field(0.5, ge=0, le=1, description="Share of regenerations that also explore K candidates.")
    k: int = Field(4, ge=0, description="Candidates explored per exploring regeneration.")
    temperature: float = Field(1.0, ge=0, description="Sampling temperature of explored candidates (the paper's 1.0).")


class RegenSettings(Section):
    """Batching, time-outs and retries of profile generation."""

    model_config = section_config("REGEN_")

    batch_size: int = Field(16, ge=1, description="Profile requests generated in one model call at most.")
    batch_seconds: float = Field(
        0.05,
        gt=0,
        description="Longest wait to fill a regeneration (and task-evaluation) batch. The requests that came while "
        "the last batch generated are in the next one at once; this wait adds to each profile's latency under a "
        "trickle, and buys larger batches only there.",
    )
    timeout_seconds: float = Field(60.0, gt=0, description="A generation batch slower than this has failed.")
    max_attempts: int = Field(
        5,
        ge=1,
        description="Times one profile request is queued before it goes to `dead-letters` (reason "
        "`generation_failed`); the previous profile stays.",
    )
    retries: int = Field(
        3,
        ge=1,
        description="Tries of one generation batch, with exponential backoff, before its requests are re-queued.",
    )
    backoff_seconds: float = Field(
        0.5, ge=0, description="First wait between tries; it doubles each try (at most 30 s)."
    )


class PairsSettings(Section):
    """Which explored candidates become preference pairs."""

    model_config = section_config("PAIRS_")

    min_rewards: int = Field(2, ge=1, description="Rewards each candidate of a round needs before the round is paired.")
    max_per_round: int = Field(
        4,
        ge=1,
        description="Preference pairs kept per explored round (widest reward gaps first), as `lettingo pairs`' "
        "`--max-pairs-per-user`.",
    )
    min_gap: float = Field(
        0.0,
        ge=0,
        description="Chosen mean reward must beat rejected by more than this, as `lettingo pairs`' `--min-gap`.",
    )


class EvalSettings(Section):
    """Streamed task evaluation (f_Rec)."""

    model_config = section_config("EVAL_")

    draws: int = Field(
        5,
        ge=1,
        description="Negative draws per new rated item in streamed task evaluation (as `lettingo evaluate --draws`).",
    )
    negatives: int = Field(9, ge=1, description="Popularity-matched unseen items ranked against the new one.")
    batch_size: int = Field(64, ge=1, description="Rated events scored in one task-evaluation batch at most.")


class BoundsSettings(Section):
    """Bounds on what a worker keeps, each value of each table; what is dropped is counted."""

    max_state_bytes: int = Field(
        512 * 1024,
        ge=128 * 1024,
        le=900_000,
        description="Largest table value a worker stores (128 KiB to 900,000, below the producer's 1 MB message "
        "limit); a user's oldest history is dropped to fit.",
    )
    max_attribute_keys: int = Field(
        256, ge=1, description="Distinct item attributes counted per user (the rarest dropped)."
    )
    max_event_attributes: int = Field(32, ge=1, description="Attributes kept per history event.")
    max_pending_impressions: int = Field(
        64, ge=1, description="Open impressions per user awaiting clicks (the oldest dropped, without a reward)."
    )
    max_impression_items: int = Field(100, ge=1, description="Item ids kept per open impression.")
    max_early_clicks: int = Field(
        256, ge=1, description="Clicks per user waiting for their impression (the oldest dropped)."
    )
    max_round_candidates: int = Field(16, ge=2, description="Candidates filed per explored round (later ones dropped).")
    max_candidate_rewards: int = Field(512, ge=1, description="Rewards counted per candidate (later ones dropped).")


class TrainerSettings(Section):
    """The DPO trainer's service settings (its round's options are `lettingo train`'s)."""

    model_config = section_config("TRAINER_")

    metrics_port: int = Field(
        6067,
        ge=1,
        le=65535,
        description="Port of `lettingo train --watch`'s `/metrics` (rounds by outcome, pairs, durations, last "
        "success), bound to `LETTINGO_WEB_BIND`.",
    )
    gate_users: int = Field(
        60,
        ge=1,
        validation_alias=env("GATE_USERS"),
        description="Validation users on whom the gate compares candidate and champion "
        "(`--task-eval trainer.task_eval:validation_task`).",
    )


def _section(cls: type[Section]) -> Any:
    return Field(default_factory=cls, description=(cls.__doc__ or "").strip())


class Settings(Section):
    """Where things live, and the core's sections."""

    home: Path = Field(Path(".lettingo"), description="Folder for the broker's data, models, registry, worker state.")
    dataset: Path = Field(Path("../shared/data/ml-latest-small"), description="Dataset used by the demo and replay.")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="`json`: one JSON object a line, with `user_id`, `profile_id`, `model_version` fields where "
        "they apply (python-json-logger).",
    )
    cache_dir: Path | None = Field(
        None,
        description="Folder of the sentence encoder's embedding cache; unset means `<home>/cache`. Tests point "
        "their workers at the repository's `.lettingo/cache`, so each one does not re-embed the catalogue.",
    )
    reader_path: Path | None = Field(
        None,
        description="Frozen embedding reader (f_Rec) folder for streamed task evaluation, checksum verified; unset: "
        "build or reuse the cached reader for `LETTINGO_DATASET` under `<home>/models` (a cold build takes "
        "minutes; the worker loads it in a background thread).",
    )

    limits: LimitsSettings = _section(LimitsSettings)
    worker: WorkerSettings = _section(WorkerSettings)
    drift: DriftSettings = _section(DriftSettings)
    explore: ExploreSettings = _section(ExploreSettings)
    regen: RegenSettings = _section(RegenSettings)
    pairs: PairsSettings = _section(PairsSettings)
    eval: EvalSettings = _section(EvalSettings)
    bounds: BoundsSettings = _section(BoundsSettings)
    trainer: TrainerSettings = _section(TrainerSettings)

    @model_validator(mode="before")
    @classmethod
    def _sections_read_the_environment(cls, data: Any) -> Any:
        """A section given as a dict is built by its own class, so the variables it does not name still apply
        (``Settings(kafka={"bootstrap": ...})`` keeps ``LETTINGO_KAFKA_SECURITY_PROTOCOL``)."""
        if not isinstance(data, dict):
            return data
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:  # a flat name of another layout, or a typo: never silently dropped
            raise ValueError(f"{cls.__name__} has no field {', '.join(unknown)}")
        built = dict(data)
        for name, field in cls.model_fields.items():
            section = _section_class(field)
            if section is None or isinstance(built.get(name), Section):
                continue
            given = built.get(name, {})
            extra = sorted(set(given) - set(section.model_fields))
            if extra:
                raise ValueError(f"{name} ({section.__name__}) has no field {', '.join(extra)}")
            try:
                built[name] = section(**given)
            except ValidationError as e:  # named by variable, as the section's own error would be
                raise ValueError("; ".join(_problems(e))) from None
        return built

    @classmethod
    def load(cls, **values: Any) -> Self:
        """The settings of an entry point: invalid ones raise :class:`ConfigError`, one line per setting."""
        try:
            return cls(**values)
        except ValidationError as e:
            raise ConfigError(describe_validation_error(e)) from None

    def replace(self, **sections: dict[str, Any] | Any) -> Self:
        """A copy with some fields changed; a section's changes are given as a dict of its fields."""
        update: dict[str, Any] = {}
        for name, value in sections.items():
            if name not in type(self).model_fields:
                raise ValueError(f"{type(self).__name__} has no field {name}")
            current = getattr(self, name)
            if isinstance(current, BaseModel):
                unknown = sorted(set(value) - set(type(current).model_fields))
                if unknown:  # model_copy would set them silently
                    raise ValueError(f"{name} ({type(current).__name__}) has no field {', '.join(unknown)}")
                value = current.model_copy(update=value)
            update[name] = value
        return self.model_copy(update=update)

    def path(self, *parts: str) -> Path:
        return self.home.joinpath(*parts)

    @property
    def cache_path(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.path("cache")

    def input_limits(self) -> InputLimits:
        return self.limits.input_limits()


def _section_class(field: FieldInfo) -> type[Section] | None:
    kind = field.annotation
    return kind if isinstance(kind, type) and issubclass(kind, Section) else None


def env_name(section: type[BaseSettings], name: str) -> str:
    """The environment variable of one field."""
    field = section.model_fields[name]
    if isinstance(field.validation_alias, str):
        return field.validation_alias.upper()
    return (str(section.model_config.get("env_prefix", "")) + name).upper()


def iter_fields(settings: type[Section] | Section) -> Iterator[tuple[str, type[Section], str, FieldInfo]]:
    """``(attribute path, section class, field name, field)`` for every field, sections expanded in order."""
    cls = settings if isinstance(settings, type) else type(settings)
    for name, field in cls.model_fields.items():
        section = _section_class(field)
        if section is None:
            yield name, cls, name, field
        else:
            for inner, inner_field in section.model_fields.items():
                yield f"{name}.{inner}", section, inner, inner_field


def value_at(settings: Section, path: str) -> Any:
    value: Any = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value


def env_items(settings: Section) -> list[tuple[str, Any]]:
    """``(LETTINGO_NAME, value)`` of every setting in force; secrets stay :class:`pydantic.SecretStr` (masked)."""
    return [(env_name(section, name), value_at(settings, path)) for path, section, name, _ in iter_fields(settings)]


def describe_validation_error(error: ValidationError) -> str:
    """``invalid settings: LETTINGO_NAME: what is wrong`` for each invalid setting, on one line."""
    return "invalid settings: " + "; ".join(_problems(error))


def _problems(error: ValidationError) -> list[str]:
    owners = {cls.__name__: cls for cls in _all_sections(Section)}
    cls = owners.get(error.title)
    parts = []
    for item in error.errors():
        where = item["loc"][0] if item["loc"] else None
        name = env_name(cls, where) if cls and isinstance(where, str) and where in cls.model_fields else where
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{name}: {message}" if name else message)
    return parts


def _all_sections(root: type[Section]) -> Iterator[type[Section]]:
    yield root
    for sub in root.__subclasses__():
        yield from _all_sections(sub)


def installed_settings() -> type[Settings]:
    """The settings class of the layers installed in this process: the most extended subclass of
    :class:`Settings` imported so far (the stream layer's once its commands are loaded), else the core's."""
    leaves = [cls for cls in _subclasses(Settings) if not cls.__subclasses__()]
    return max(leaves, key=lambda cls: len(list(iter_fields(cls))))


def _subclasses(root: type[Settings]) -> Iterator[type[Settings]]:
    yield root
    for sub in root.__subclasses__():
        yield from _subclasses(sub)


def _default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "unset"
    value = field.default
    if value is None:
        return "unset"
    if value == "":
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def settings_table(cls: type[Settings]) -> str:
    """The README's settings table: one row per variable, grouped by section, from the fields' descriptions."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for _, section, name, field in iter_fields(cls):
        description = (field.description or "").replace("|", "\\|")
        rows.append(f"| `{env_name(section, name)}` | {_default_text(field)} | {description} |")
    return "\n".join(rows) + "\n"

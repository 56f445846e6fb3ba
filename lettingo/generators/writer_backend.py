"""``writer`` backend: the simple profile writers behind the generator interface (CPU, instant).

``writer:titles`` uses one writer; ``writer:mix`` picks a writer at random for each sample; ``writer:genres,era``
picks among the named ones.
"""

from __future__ import annotations

import random
import time

from lettingo.generators.base import Generation, Generator, sample_seed
from lettingo.generators.decoding import OFF, Decoding
from lettingo.prompts.profile import ProfilePrompt
from lettingo.writers import WRITERS, get_writer

WRITER_VERSION = "writers-1"


class WriterGenerator(Generator):
    def __init__(self, names: list[str]) -> None:
        if not names:
            raise ValueError("writer: name at least one writer, or 'mix'")
        self.names = list(WRITERS) if names == ["mix"] else names
        self.writers = [get_writer(n) for n in self.names]
        self.name = "writer:" + ",".join(names)
        self.model_version = WRITER_VERSION
        self.decoding = OFF  # writers neither loop nor run on

    def _generate(
        self,
        prompts: list[ProfilePrompt],
        n: int,
        temperature: float,
        max_new_tokens: int,
        seed: int,
        decoding: Decoding,
    ) -> list[list[Generation]]:
        """Temperature, token limits and decoding controls do not apply to writers; ``seed`` makes the draws
        reproducible."""
        out = []
        for prompt in prompts:
            started = time.perf_counter()
            rng = random.Random(sample_seed(seed, prompt))
            picks = [rng.randrange(len(self.names)) for _ in range(n)]
            texts = [(self.names[i], self.writers[i](prompt.entries, rng)) for i in picks]
            latency = time.perf_counter() - started
            # Each generation names the writer that made it, so a mix keeps its provenance.
            out.append(
                [Generation(t, 0, len(t.split()), latency, f"writer:{w}", self.model_version, seed) for w, t in texts]
            )
        return out

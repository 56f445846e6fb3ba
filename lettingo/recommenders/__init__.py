"""Recommenders f_Rec behind one interface: the paper's LLM judge and a CPU embedding reader."""

from lettingo.recommenders.base import (
    RankingPrediction,
    RankingQuery,
    Recommender,
    SentimentPrediction,
    SentimentQuery,
    Task,
    TextCompleter,
)
from lettingo.recommenders.completers import GeneratorCompleter, is_judge_spec, load_judge
from lettingo.recommenders.encoder import TextEncoder
from lettingo.recommenders.judge import LLMJudge
from lettingo.recommenders.negatives import NegativeSampler, RankingCandidates
from lettingo.recommenders.reader import EmbeddingReader
from lettingo.recommenders.scorer import ReaderChecksumError
from lettingo.recommenders.training import ReaderTrainingConfig, build_or_load_reader, train_reader

__all__ = [
    "EmbeddingReader",
    "GeneratorCompleter",
    "LLMJudge",
    "NegativeSampler",
    "RankingCandidates",
    "RankingPrediction",
    "RankingQuery",
    "ReaderChecksumError",
    "ReaderTrainingConfig",
    "Recommender",
    "SentimentPrediction",
    "SentimentQuery",
    "Task",
    "TextCompleter",
    "TextEncoder",
    "build_or_load_reader",
    "is_judge_spec",
    "load_judge",
    "train_reader",
]

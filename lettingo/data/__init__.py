"""Datasets: loaders for MovieLens and JSONL interactions, sentiment labels and the evaluation split."""

from lettingo.data.labels import LabelScheme, Sentiment
from lettingo.data.loaders import DatasetFormatError, load_dataset
from lettingo.data.split import DatasetSplit, SplitConfig, UserGroup, UserSplit, split_dataset
from lettingo.data.types import Dataset, Item, Rating

__all__ = [
    "Dataset",
    "DatasetFormatError",
    "DatasetSplit",
    "Item",
    "LabelScheme",
    "Rating",
    "Sentiment",
    "SplitConfig",
    "UserGroup",
    "UserSplit",
    "load_dataset",
    "split_dataset",
]

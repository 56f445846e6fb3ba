"""Loaders for the ml-latest CSV format, the classic MovieLens-100K format and a generic JSONL.

``load_dataset(path)`` picks the format from what the folder (or file) holds.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from pathlib import Path

from lettingo.data.types import Dataset, Item, Rating
from lettingo.errors import InputError

_YEAR = re.compile(r"\((\d{4})\)\s*$")
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


class DatasetFormatError(InputError):
    """The path does not hold a dataset in a format we read, or a row is malformed."""


def _year_of(title: str) -> int | None:
    m = _YEAR.search(title)
    return int(m.group(1)) if m else None


def _group(ratings: list[Rating]) -> dict[str, list[Rating]]:
    by_user: dict[str, list[Rating]] = defaultdict(list)
    for r in ratings:
        by_user[r.user_id].append(r)
    return dict(by_user)


def load_movielens_csv(folder: Path) -> Dataset:
    """ml-latest / ml-latest-small: movies.csv, ratings.csv and (optional) tags.csv."""
    tags: dict[str, list[str]] = defaultdict(list)
    tags_file = folder / "tags.csv"
    if tags_file.exists():
        with tags_file.open(newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                tag = row["tag"].strip().lower()
                if tag and tag not in tags[row["movieId"]]:
                    tags[row["movieId"]].append(tag)
    items: dict[str, Item] = {}
    with (folder / "movies.csv").open(newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            try:
                genres = () if row["genres"] == "(no genres listed)" else tuple(row["genres"].split("|"))
                title = row["title"].strip()
                items[row["movieId"]] = Item(
                    row["movieId"], title, genres, _year_of(title), tuple(tags.get(row["movieId"], ()))
                )
            except (KeyError, AttributeError) as e:
                raise DatasetFormatError(f"{folder / 'movies.csv'} line {n}: missing column {e}") from e
    ratings: list[Rating] = []
    with (folder / "ratings.csv").open(newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            try:
                ratings.append(Rating(row["userId"], row["movieId"], float(row["rating"]), int(row["timestamp"])))
            except (KeyError, ValueError, TypeError) as e:
                raise DatasetFormatError(f"{folder / 'ratings.csv'} line {n}: {e}") from e
    return Dataset(folder.name, items, _group(ratings), rating_scale=(0.5, 5.0))


def load_movielens_100k(folder: Path) -> Dataset:
    """MovieLens-100K: ``u.data`` (user, item, rating, timestamp; tabs) and ``u.item`` (pipes, 19 genre flags)."""
    items: dict[str, Item] = {}
    with (folder / "u.item").open(encoding="latin-1") as f:
        for n, line in enumerate(f, start=1):
            parts = line.rstrip("\n").split("|")
            if len(parts) < 5 + len(ML100K_GENRES):
                raise DatasetFormatError(f"{folder / 'u.item'} line {n}: expected 24 '|'-separated fields")
            flags = parts[-len(ML100K_GENRES) :]
            genres = tuple(g for g, flag in zip(ML100K_GENRES, flags, strict=True) if flag == "1" and g != "unknown")
            title = parts[1].strip()
            year = _year_of(title)
            if year is None and parts[2][-4:].isdigit():
                year = int(parts[2][-4:])
            items[parts[0]] = Item(parts[0], title, genres, year)
    ratings: list[Rating] = []
    with (folder / "u.data").open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            parts = line.split()
            if len(parts) != 4:
                raise DatasetFormatError(f"{folder / 'u.data'} line {n}: expected 4 tab-separated fields")
            try:
                ratings.append(Rating(parts[0], parts[1], float(parts[2]), int(parts[3])))
            except ValueError as e:
                raise DatasetFormatError(f"{folder / 'u.data'} line {n}: {e}") from e
    return Dataset(folder.name, items, _group(ratings), rating_scale=(1.0, 5.0))


def load_jsonl(path: Path) -> Dataset:
    """Generic JSONL, one interaction a line: ``{"user_id", "item_id", "rating", "ts"}`` plus optional
    ``"title"``, ``"attributes"`` (list) and ``"year"`` describing the item. Lines without a rating are skipped
    as non-rating events only when ``"kind"`` says so (``view``, ``click``, ...)."""
    items: dict[str, Item] = {}
    ratings: list[Rating] = []
    low, high = float("inf"), float("-inf")
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                item_id = str(obj["item_id"])
                if item_id not in items or obj.get("title"):
                    items[item_id] = Item(
                        item_id,
                        str(obj.get("title") or item_id),
                        tuple(obj.get("attributes") or ()),
                        obj.get("year"),
                    )
                if obj.get("rating") is None:
                    if obj.get("kind", "rating") == "rating":
                        raise KeyError("rating")
                    continue
                rating = float(obj["rating"])
                ratings.append(Rating(str(obj["user_id"]), item_id, rating, int(obj["ts"])))
                low, high = min(low, rating), max(high, rating)
            except (KeyError, ValueError, TypeError) as e:
                raise DatasetFormatError(f"{path} line {n}: {type(e).__name__}: {e}") from e
    if not ratings:
        raise DatasetFormatError(f"{path}: no rating events")
    return Dataset(path.stem, items, _group(ratings), rating_scale=(low, high))


def load_dataset(path: str | Path) -> Dataset:
    """Load a dataset folder (ml-latest CSV or MovieLens-100K) or a ``.jsonl`` file."""
    p = Path(path)
    if p.is_file() and p.suffix in {".jsonl", ".json"}:
        return load_jsonl(p)
    if (p / "ratings.csv").exists() and (p / "movies.csv").exists():
        return load_movielens_csv(p)
    if (p / "u.data").exists() and (p / "u.item").exists():
        return load_movielens_100k(p)
    if not p.exists():
        raise DatasetFormatError(f"{p}: no such file or folder")
    raise DatasetFormatError(
        f"{p}: not a dataset; expected a folder with ratings.csv + movies.csv (ml-latest), "
        "u.data + u.item (MovieLens-100K), or a .jsonl file of interactions"
    )

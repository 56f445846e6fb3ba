"""Plain typed values for a ratings dataset."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    title: str
    attributes: tuple[str, ...] = ()  # genres for MovieLens
    year: int | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rating:
    user_id: str
    item_id: str
    rating: float
    ts: int

    @property
    def order_key(self) -> tuple[int, str]:
        """Time order with ties broken by item id (numerically when ids are numbers)."""
        return (self.ts, self.item_id.zfill(12) if self.item_id.isdigit() else self.item_id)


@dataclass(slots=True)
class Dataset:
    """Items and each user's ratings, sorted by :attr:`Rating.order_key`."""

    name: str
    items: dict[str, Item]
    ratings_by_user: dict[str, list[Rating]]
    rating_scale: tuple[float, float] = (0.5, 5.0)
    item_popularity: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for ratings in self.ratings_by_user.values():
            ratings.sort(key=lambda r: r.order_key)
        if not self.item_popularity:
            counts: dict[str, int] = {}
            for ratings in self.ratings_by_user.values():
                for r in ratings:
                    counts[r.item_id] = counts.get(r.item_id, 0) + 1
            self.item_popularity = counts

    @property
    def n_ratings(self) -> int:
        return sum(len(r) for r in self.ratings_by_user.values())

    @property
    def integer_scale(self) -> bool:
        return all(float(r.rating).is_integer() for rs in self.ratings_by_user.values() for r in rs[:50])

    def all_ratings_in_time_order(self) -> list[Rating]:
        out = [r for rs in self.ratings_by_user.values() for r in rs]
        out.sort(key=lambda r: (r.order_key, r.user_id))
        return out

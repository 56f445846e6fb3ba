"""The registry's mutable state: which version is champion, the champion history, and status changes.

Version folders never change once published; everything that does change lives in one small JSON object
(``state.json`` beside the versions) that is replaced in a single write, so readers never see half a change.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from lettingo.records import ModelStatus

STATE_NAME = "state.json"


class RegistryState(BaseModel):
    history: list[int] = Field(
        default_factory=list, description="Champions in the order they were promoted; the last one is the champion."
    )
    statuses: dict[int, ModelStatus] = Field(
        default_factory=dict, description="Status changes after publication (rolled_back)."
    )

    @property
    def champion(self) -> int | None:
        return self.history[-1] if self.history else None

    def promoted(self, version: int) -> RegistryState:
        statuses = {v: s for v, s in self.statuses.items() if v != version}
        return RegistryState(history=[*self.history, version], statuses=statuses)

    def rolled_back(self) -> RegistryState:
        """The state after taking the champion back: the previous champion (or none) is restored."""
        current = self.champion
        if current is None:
            return self
        history = [v for v in self.history if v != current]
        return RegistryState(history=history, statuses={**self.statuses, current: ModelStatus.ROLLED_BACK})

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json(indent=2).encode()

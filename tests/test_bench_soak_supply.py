"""The soak's input: each phase gets exactly the events it asks for, and no event id repeats across phases (a
repeated id is a duplicate the workers skip, so a phase would measure less work than it sent)."""

from bench.soak import EventSupply


def test_phases_get_what_they_ask_for_and_never_repeat_an_id() -> None:
    supply = EventSupply()
    size = supply.pass_size
    phases = [supply.take(n) for n in (size // 3, size + 7, 5)]
    assert [len(p) for p in phases] == [size // 3, size + 7, 5]
    ids = [e.event_id for p in phases for e in p]
    assert len(ids) == len(set(ids))

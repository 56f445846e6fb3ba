"""The demo report names what became of a trained round that is not the champion from the registry, not by
assuming that every such round was refused."""

from lettingo.records import ModelStatus
from streams.demo.report import round_label


def test_a_round_the_gate_passed_is_not_called_refused():
    assert round_label(ModelStatus.CANDIDATE, {"passed": True}) == "passed the gate, not yet promoted"


def test_a_refused_round_is_called_refused():
    assert round_label(ModelStatus.REFUSED, {"passed": False}) == "refused by the gate"
    assert round_label(ModelStatus.CANDIDATE, {}) == "refused by the gate"


def test_a_rolled_back_round_is_called_rolled_back():
    assert round_label(ModelStatus.ROLLED_BACK, {"passed": True}) == "rolled back"

"""Penalty points: each offence is its own member, points add, decay and ban."""
from __future__ import annotations

from pole_chain.net import Offence
from pole_chain.net.peer_score import PeerScore


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_offences_of_equal_weight_stay_distinct():
    """Equal weights must not make one offence an alias of another (the ban log names it)."""
    assert Offence.BAD_RESPONSE is not Offence.INVALID_GOSSIP
    assert Offence.BAD_RESPONSE.name == "BAD_RESPONSE"
    assert Offence.INVALID_CHAIN.name == "INVALID_CHAIN"
    assert len({offence.name for offence in Offence}) == len(Offence.__members__) == 7


def test_points_add_up_to_a_ban_and_halve_with_time():
    clock = Clock()
    score = PeerScore(threshold=100.0, half_life=10.0, ban_seconds=60.0, clock=clock)
    assert score.penalise("p", Offence.INVALID_CHAIN) is False
    clock.now = 10.0  # one half-life: 50 -> 25
    assert score.points("p") == 25.0
    assert score.penalise("p", Offence.BAD_RESPONSE) is False  # 25 + 25
    assert score.penalise("p", Offence.INVALID_CHAIN) is True  # 100: banned
    assert score.is_banned("p")
    clock.now = 70.0
    assert not score.is_banned("p")
    assert score.points("p") == 0.0

"""Admission: who may open a stream now, with the reason code and message of a refusal."""

from __future__ import annotations

from streaming.admission import Admission, Decision
from streaming.config import ServerConfig


def never_read() -> float:
    raise AssertionError("engine load read although the limit is off")


def test_a_server_with_room_admits() -> None:
    admission = Admission(ServerConfig(max_sessions=2))
    decision = admission.decide(sessions=1, engine_load=lambda: 0.2, behind=[False])
    assert decision.admitted and decision == Decision("admitted")


def test_shutting_down_refuses_before_anything_else() -> None:
    admission = Admission(ServerConfig(max_sessions=1))
    decision = admission.decide(
        sessions=5, engine_load=lambda: 1.0, behind=[True], shutting_down=True
    )
    assert decision == Decision("shutting_down", "server shutting down")
    assert not decision.admitted


def test_the_session_limit_refuses_as_full() -> None:
    admission = Admission(ServerConfig(max_sessions=3))
    decision = admission.decide(sessions=3, engine_load=lambda: 0.0, behind=[])
    assert decision == Decision("full", "server full: 3 sessions in use")


def test_a_busy_engine_refuses_as_overloaded() -> None:
    admission = Admission(ServerConfig(max_engine_load=0.8))
    decision = admission.decide(sessions=1, engine_load=lambda: 0.93, behind=[False])
    assert decision.reason == "overloaded"
    assert decision.message == (
        "server overloaded: the model was busy 93% of the last 5 s (limit 80%); try again later"
    )


def test_engine_load_limit_of_one_turns_the_check_off() -> None:
    admission = Admission(ServerConfig(max_engine_load=1.0))
    assert admission.decide(sessions=0, engine_load=never_read, behind=[]).admitted


def test_streams_behind_real_time_refuse_as_overloaded() -> None:
    admission = Admission(ServerConfig(lag_warning_s=2.0, max_engine_load=1.0))
    decision = admission.decide(sessions=3, engine_load=never_read, behind=[False, True, True])
    assert decision == Decision(
        "overloaded",
        "server overloaded: 2 of 3 streams are more than 2 s behind real time; try again later",
    )

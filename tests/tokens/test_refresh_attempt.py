"""Which failed refresh requests are sent again (``tokens.refresh._Attempt``): an answer lost
after sending is owed one resend, a grace period allows more but only inside the retry budget,
and a failure known not to have been processed is retried inside the budget."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx

from personal_connectors.oauth.errors import ProviderUnreachable
from personal_connectors.tokens.refresh import _Attempt


def lost_answer() -> Exception:
    try:
        raise httpx.ReadTimeout("no answer")
    except httpx.ReadTimeout:
        try:
            raise ProviderUnreachable("ReadTimeout") from None
        except ProviderUnreachable as exc:
            return exc


def never_sent() -> Exception:
    try:
        raise httpx.ConnectError("refused")
    except httpx.ConnectError:
        try:
            raise ProviderUnreachable("ConnectError") from None
        except ProviderUnreachable as exc:
            return exc


def after(seconds: float) -> Any:
    return SimpleNamespace(seconds_since_start=seconds)


def test_without_a_grace_period_a_lost_answer_is_sent_once_more_even_past_the_budget() -> None:
    attempt = _Attempt(None, grace_seconds=0, budget=1.0)
    assert attempt.worth_retrying(lost_answer()) and not attempt.stop(after(5.0))
    assert attempt.uncertain
    assert not attempt.worth_retrying(lost_answer())  # the one resend is spent


def test_a_row_already_in_doubt_gets_no_further_resend() -> None:
    attempt = _Attempt(None, grace_seconds=0, budget=1.0)
    attempt.doubt()
    doubted = _Attempt(attempt.uncertain_since, grace_seconds=0, budget=1.0)
    assert not doubted.worth_retrying(lost_answer())


def test_inside_a_grace_period_resends_stop_at_the_budget() -> None:
    attempt = _Attempt(None, grace_seconds=3600, budget=1.0)
    for _ in range(5):
        assert attempt.worth_retrying(lost_answer())
    assert not attempt.stop(after(0.5))
    assert attempt.stop(after(1.5))  # not for the whole hour of the grace period


def test_a_request_never_sent_is_retried_inside_the_budget_and_leaves_no_doubt() -> None:
    attempt = _Attempt(None, grace_seconds=0, budget=1.0)
    assert attempt.worth_retrying(never_sent())
    assert not attempt.stop(after(0.5)) and attempt.stop(after(1.5))
    assert not attempt.uncertain

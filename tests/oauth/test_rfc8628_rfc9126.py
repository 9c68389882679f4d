"""The parts of RFC 8628 and RFC 9126 that are pure rules: answer shapes, intervals, URLs."""

from __future__ import annotations

from typing import Any

import pytest

from personal_connectors.oauth import rfc8628, rfc9126
from personal_connectors.oauth.errors import ProviderBadAnswer

DEVICE_ANSWER = {
    "device_code": "secret-device-code",
    "user_code": "WDJB-MJHT",
    "verification_uri": "https://example.com/device",
    "expires_in": 1800,
}


def test_device_answer_defaults_the_interval_to_five_and_hides_the_device_code() -> None:
    device = rfc8628.parse_device_authorization(DEVICE_ANSWER)
    assert device.interval == 5 and device.expires_in == 1800
    assert device.verification_uri_complete is None
    assert "secret-device-code" not in repr(device)


def test_device_answer_accepts_googles_verification_url_and_caps_hostile_numbers() -> None:
    answer = {**DEVICE_ANSWER, "verification_uri": None, "verification_url": "https://g.co/x"}
    device = rfc8628.parse_device_authorization({**answer, "interval": 99999, "expires_in": 10**9})
    assert device.verification_uri == "https://g.co/x"
    assert device.interval == rfc8628.MAX_INTERVAL
    assert device.expires_in == rfc8628.MAX_EXPIRES_IN


@pytest.mark.parametrize(
    "answer",
    [
        [],
        {**DEVICE_ANSWER, "device_code": ""},
        {**DEVICE_ANSWER, "user_code": None},
        {k: v for k, v in DEVICE_ANSWER.items() if k != "expires_in"},
        {**DEVICE_ANSWER, "interval": 0},
        {**DEVICE_ANSWER, "interval": "soon"},
    ],
)
def test_unusable_device_answers_are_refused(answer: Any) -> None:
    with pytest.raises(ProviderBadAnswer):
        rfc8628.parse_device_authorization(answer)


def test_slow_down_adds_five_seconds_and_pending_keeps_the_interval() -> None:
    assert rfc8628.next_interval(5, rfc8628.SLOW_DOWN) == 10
    assert rfc8628.next_interval(10, rfc8628.AUTHORIZATION_PENDING) == 10
    assert rfc8628.next_interval(rfc8628.MAX_INTERVAL, rfc8628.SLOW_DOWN) == rfc8628.MAX_INTERVAL


def test_pushed_parameters_come_from_the_built_url_without_a_second_client_id() -> None:
    url = "https://as.example/authorize?response_type=code&client_id=c1&state=s&scope=a+b"
    basic = rfc9126.pushed_parameters(url, client_auth_method="client_secret_basic")
    assert basic == {"response_type": "code", "client_id": "c1", "state": "s", "scope": "a b"}
    post = rfc9126.pushed_parameters(url, client_auth_method="client_secret_post")
    assert "client_id" not in post


def test_pushed_answer_and_the_short_authorization_url() -> None:
    pushed = rfc9126.parse_pushed_response({"request_uri": "urn:x:1", "expires_in": 60})
    url = rfc9126.authorization_url("https://as.example/authorize?tenant=t", "c 1", "urn:x:1")
    assert url == "https://as.example/authorize?tenant=t&client_id=c+1&request_uri=urn%3Ax%3A1"
    assert pushed.request_uri == "urn:x:1"
    for bad in (
        {"request_uri": "urn:x"},
        {"expires_in": 60},
        {"request_uri": "u", "expires_in": True},
    ):
        with pytest.raises(ProviderBadAnswer):
            rfc9126.parse_pushed_response(bad)

"""accept_forwarded: the pure check behind the per-queue forwarding endpoint."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from email_flow_app.channels.errors import PermanentError
from email_flow_app.channels.forwarding import ForwardRejected, accept_forwarded
from tests.channels.helpers import make_message

SECRET = "s3cret-token"
RAW = make_message(1)


def test_valid_post_returns_the_raw_bytes_unchanged():
	assert accept_forwarded(RAW, "message/rfc822", SECRET, SECRET, 10_000) is RAW
	assert accept_forwarded(RAW, "application/octet-stream; charset=binary", SECRET, SECRET, 10_000) == RAW


@pytest.mark.parametrize(
	("body", "content_type", "provided", "expected", "limit", "status"),
	[
		(RAW, "message/rfc822", "wrong", SECRET, 10_000, 403),
		(RAW, "message/rfc822", "", "", 10_000, 403),
		(RAW, "application/json", SECRET, SECRET, 10_000, 400),
		(RAW, "", SECRET, SECRET, 10_000, 400),
		(RAW, "message/rfc822", SECRET, SECRET, 10, 413),
		(b"   ", "message/rfc822", SECRET, SECRET, 10_000, 400),
		(b"<html>not mail</html>\r\n", "message/rfc822", SECRET, SECRET, 10_000, 400),
	],
)
def test_rejections_carry_an_http_status(body, content_type, provided, expected, limit, status):
	with pytest.raises(ForwardRejected) as caught:
		accept_forwarded(body, content_type, provided, expected, limit)
	assert caught.value.http_status == status
	assert isinstance(caught.value, PermanentError) and str(caught.value) == caught.value.reason


@given(st.binary(max_size=2000), st.text(max_size=40), st.text(max_size=40))
def test_never_raises_anything_but_forward_rejected(body, content_type, provided):
	try:
		assert accept_forwarded(body, content_type, provided, SECRET, 1000) == body
	except ForwardRejected as err:
		assert err.http_status in (400, 403, 413)


def test_every_refused_secret_gets_the_same_answer():
	answers = set()
	for provided, expected in (("wrong", SECRET), ("", SECRET), (SECRET, ""), (SECRET, None), ("", "")):
		with pytest.raises(ForwardRejected) as caught:
			accept_forwarded(RAW, "message/rfc822", provided, expected, 10_000)
		answers.add((caught.value.http_status, caught.value.reason))
	assert answers == {(403, "forbidden")}


def test_a_body_shorter_than_its_content_length_is_refused_as_cut():
	assert accept_forwarded(RAW, "message/rfc822", SECRET, SECRET, 10_000, declared_length=len(RAW)) == RAW
	with pytest.raises(ForwardRejected) as caught:
		accept_forwarded(RAW[:-5], "message/rfc822", SECRET, SECRET, 10_000, declared_length=len(RAW))
	assert caught.value.http_status == 413 and "cut" in caught.value.reason

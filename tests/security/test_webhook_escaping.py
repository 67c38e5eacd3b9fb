"""What a ticket's author writes (its reason, a rejection's note) reaches chat receivers as text,
never as markup: no Slack `<!channel>` or disguised `<http://evil|click>` links, no DingTalk
mentions. Checked on the exact bodies the webhook worker posts.
"""

from __future__ import annotations

from ferry_api.domain.notices import Notice, body_of

HOSTILE = "<!channel> see <http://evil.example|the release notes> & <@U024BE7LH> *now*"
DING = "@所有人 @13800138000 read [the notes](http://evil.example) **now** <b>x</b>"


def notice(reason: str, detail: str = "") -> Notice:
    return Notice(
        event="rejected",
        ticket_id="0123456789abcdef",
        app="shop",
        kind="deploy",
        author="dev",
        reason=reason,
        by="lead",
        detail=detail,
    )


def test_slack_gets_the_reason_escaped_as_mrkdwn_requires() -> None:
    body = body_of(notice(HOSTILE, detail="<!here> too"), "slack")
    assert set(body) == {"text"}
    text = body["text"]
    assert "<" not in text and ">" not in text
    assert (
        "deploy by dev: &lt;!channel&gt; see &lt;http://evil.example|the release notes&gt; "
        "&amp; &lt;@U024BE7LH&gt; *now*"
    ) in text
    assert "note: &lt;!here&gt; too" in text
    assert text.startswith("[Ferry] shop: ticket 01234567 rejected by lead")


def test_an_ampersand_is_escaped_once_and_first() -> None:
    text = body_of(notice("a &lt; b && c > d"), "slack")["text"]
    assert "deploy by dev: a &amp;lt; b &amp;&amp; c &gt; d" in text


def test_dingtalk_gets_no_mention_and_no_markup_it_would_render() -> None:
    body = body_of(notice(DING, detail="@all ok"), "dingtalk")
    assert body["msgtype"] == "text"
    assert "at" not in body  # nobody is ever notified by a mention
    content = body["text"]["content"]
    assert "@" not in content
    at = "\N{FULLWIDTH COMMERCIAL AT}"  # looks like @, mentions nobody
    assert f"deploy by dev: {at}所有人 {at}13800138000 read [the notes](http://evil.example)" in (
        content
    )
    assert f"note: {at}all ok" in content


def test_the_plain_json_format_carries_the_reason_as_written() -> None:
    body = body_of(notice(HOSTILE), "json")
    assert body["reason"] == HOSTILE  # JSON receivers get data, not text to display

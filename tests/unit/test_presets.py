"""decide/presets.py: the panes of each layout preset, as tables over 1 to PANE_CAP + 1 streams; no servers."""

from __future__ import annotations

import itertools
import re
from decimal import Decimal

import pytest

from rtc_recording.api import fields
from rtc_recording.api.recording import Layout, Pane, Subscriber
from rtc_recording.decide.presets import PANE_CAP, preset_panes, video_streams

PRESETS = {
    "Grid": Layout(preset="Grid"),
    "Speaker": Layout(preset="Speaker", large_user_id="u0"),
    "ScreenShare": Layout(preset="ScreenShare", large_user_id="u0"),
}
# The vendor's number format as the operator writes it: a plain decimal, at most 7 places, no trailing zero.
NUMBER = re.compile(r"^(0|1|0[.][0-9]{0,6}[1-9])$")


def cameras(n: int, preset: str = "Grid") -> list[Subscriber]:
    """n streams with video, u0 first: u0's screen for ScreenShare, else cameras."""
    first = Subscriber(user_id="u0", media="Video", source="Screen" if preset == "ScreenShare" else "Camera")
    return [first] + [Subscriber(user_id=f"u{i}") for i in range(1, n)]


def box(p: Pane) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """(left, top, right, bottom), exactly as decimals."""
    left, top, width, height = (Decimal(v) for v in (p.left, p.top, p.width, p.height))
    return left, top, left + width, top + height


def overlap(a: Pane, b: Pane) -> bool:
    (al, at, ar, ab), (bl, bt, br, bb) = box(a), box(b)
    return al < br and bl < ar and at < bb and bt < ab


TABLE = [(preset, n) for preset in PRESETS for n in range(1, PANE_CAP + 2)]


@pytest.mark.parametrize("preset, n", TABLE, ids=[f"{p}-{n}" for p, n in TABLE])
def test_every_pane_is_inside_the_frame_without_overlaps_in_the_vendors_format(preset, n):
    subscribers = cameras(n, preset)
    panes = preset_panes(PRESETS[preset], subscribers)
    assert len(panes) == min(n, PANE_CAP)  # beyond the cap: the first PANE_CAP streams only
    for p in panes:
        for value in (p.left, p.top, p.width, p.height):
            assert NUMBER.match(value) and fields._FRACTION.match(value), value  # the CRD's format too
        left, top, right, bottom = box(p)
        assert 0 <= left < right <= 1 and 0 <= top < bottom <= 1, p
    assert [a for a, b in itertools.combinations(panes, 2) if overlap(a, b)] == []
    shown = [(p.user_id, p.source) for p in panes]
    assert shown == video_streams(subscribers)[: len(panes)]  # the large stream is listed first here


# As kubectl explain rtcrec.spec.layout.preset says: (columns, rows) by the number of streams.
GRID_SHAPES = {1: (1, 1), 2: (2, 1), 3: (2, 2), 5: (3, 2), 7: (3, 3), 10: (4, 3), 13: (4, 4), 17: (5, 4)}


@pytest.mark.parametrize("n", range(1, PANE_CAP + 1))
def test_grid_shapes(n):
    panes = preset_panes(PRESETS["Grid"], cameras(n))
    columns, rows = GRID_SHAPES[max(k for k in GRID_SHAPES if k <= n)]
    assert (len([p for p in panes if p.top == "0"]), len({p.top for p in panes})) == (columns, rows)
    if n == columns * rows:  # a full grid covers the picture exactly
        assert sum(Decimal(p.width) * Decimal(p.height) for p in panes) == 1


def test_grid_of_five_centres_the_last_row():
    panes = preset_panes(PRESETS["Grid"], cameras(5))
    assert [(p.user_id, p.left, p.top, p.width, p.height) for p in panes] == [
        ("u0", "0", "0", "0.3333333", "0.5"),
        ("u1", "0.3333333", "0", "0.3333334", "0.5"),
        ("u2", "0.6666667", "0", "0.3333333", "0.5"),
        ("u3", "0.1666667", "0.5", "0.3333333", "0.5"),
        ("u4", "0.5", "0.5", "0.3333333", "0.5"),
    ]


def test_speaker_puts_the_large_user_top_left_and_the_others_in_an_l():
    subscribers = [Subscriber(user_id=u) for u in ("bob", "carol", "alice", "dave", "erin", "frank")]
    panes = preset_panes(Layout(preset="Speaker", large_user_id="alice"), subscribers)
    assert [(p.user_id, p.source, p.left, p.top, p.width, p.height) for p in panes] == [
        ("alice", "Camera", "0", "0", "0.75", "0.75"),
        ("bob", "Camera", "0.75", "0", "0.25", "0.25"),  # down the right edge
        ("carol", "Camera", "0.75", "0.25", "0.25", "0.25"),
        ("dave", "Camera", "0.75", "0.5", "0.25", "0.25"),
        ("erin", "Camera", "0.75", "0.75", "0.25", "0.25"),
        ("frank", "Camera", "0", "0.75", "0.25", "0.25"),  # then along the bottom
    ]


@pytest.mark.parametrize("others, m", [(1, 4), (7, 4), (8, 5), (10, 6), (16, 9)])
def test_thumbnails_shrink_so_that_everyone_fits(others, m):
    large, *thumbnails = preset_panes(PRESETS["Speaker"], cameras(others + 1))
    for p in thumbnails:  # 1/m, to the 7th decimal (the difference of two rounded edges)
        assert abs(Decimal(p.width) - Decimal(1) / m) <= Decimal("1e-7")
        assert abs(Decimal(p.height) - Decimal(1) / m) <= Decimal("1e-7")
    assert large.width == large.height  # the picture's shape
    assert Decimal(large.width) + Decimal(thumbnails[0].width) == 1  # the large pane takes the rest


def test_alone_the_large_user_fills_the_picture():
    subscribers = [Subscriber(user_id="u0"), Subscriber(user_id="listener", media="Audio")]
    (pane,) = preset_panes(PRESETS["Speaker"], subscribers)
    assert (pane.user_id, pane.left, pane.top, pane.width, pane.height) == ("u0", "0", "0", "1", "1")


def test_screen_share_shows_the_screen_large_and_the_sharers_camera_as_a_thumbnail():
    subscribers = [
        Subscriber(user_id="alice"),
        Subscriber(user_id="bob"),
        Subscriber(user_id="alice", media="Video", source="Screen"),
    ]
    panes = preset_panes(Layout(preset="ScreenShare", large_user_id="alice"), subscribers)
    assert [(p.user_id, p.source, p.width) for p in panes] == [
        ("alice", "Screen", "0.75"),
        ("alice", "Camera", "0.25"),
        ("bob", "Camera", "0.25"),
    ]


def test_which_streams_get_a_pane():
    subscribers = [
        Subscriber(user_id="alice", media="Audio"),  # heard, not shown
        Subscriber(user_id="bob", media="Video"),
        Subscriber(user_id="bob", media="Audio"),
        Subscriber(user_id="carol"),
        Subscriber(user_id="carol", media="Video"),  # the same camera again: one pane
        Subscriber(user_id="carol", media="Video", source="Screen"),
    ]
    assert video_streams(subscribers) == [("bob", "Camera"), ("carol", "Camera"), ("carol", "Screen")]
    assert [p.user_id for p in preset_panes(PRESETS["Grid"], subscribers)] == ["bob", "carol", "carol"]


def test_more_streams_than_the_cap_show_the_first_ones():
    subscribers = cameras(PANE_CAP + 1)
    assert [p.user_id for p in preset_panes(PRESETS["Grid"], subscribers)] == [f"u{i}" for i in range(PANE_CAP)]
    speaker = Layout(preset="Speaker", large_user_id=f"u{PANE_CAP}")  # the large user listed last is still shown
    shown = [p.user_id for p in preset_panes(speaker, subscribers)]
    assert shown == [f"u{PANE_CAP}"] + [f"u{i}" for i in range(PANE_CAP - 1)]

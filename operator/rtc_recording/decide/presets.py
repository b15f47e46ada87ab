"""Layout presets: the panes of spec.layout.preset, computed from spec.subscribers.

Who gets a pane: each subscribed stream with video, a (userId, source) of a subscriber whose media is
AudioVideo or Video, once, in the order spec.subscribers first lists it. Audio-only subscribers are
mixed into the sound and have no pane (the vendor refuses them in a layout).

The vendor's rules: a coordinate is a string, a fraction of the picture from 0 to 1; every pane's
(UserId, SourceType) is subscribed with video. The page caps no panes, but SubscribeUserIdList holds
at most 17 entries, so there are never more than PANE_CAP streams with video; should there be more,
the first PANE_CAP are shown (the large stream always) and the rest are heard only. Coordinates are
edges of a grid rounded to 7 decimals (a third is "0.3333333") and a width or height is the difference
of two rounded edges, so neighbouring panes meet exactly and no pane reaches past "1".

Grid: everyone the same size, left to right and top to bottom, in ceil(sqrt(n)) columns and as
many rows as needed; a last row that is not full is centred.
Speaker and ScreenShare: one stream large in the top left corner, (m-1)/m of the picture's width
and height (so it keeps the picture's shape), and the others as thumbnails of 1/m, down the right
edge from the top and then along the bottom from the left: an L around the large pane, 2m-1 places.
m is 4 (a quarter) while up to 7 others fit, and grows with more. Alone, the large stream fills
the picture. Speaker shows largeUserId's camera large, ScreenShare their screen; everyone else,
that user's other stream too, is a thumbnail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

from rtc_recording.api.recording import Layout, Pane, Source, Subscriber

PANE_CAP = 17  # spec.subscribers' maximum (the vendor's SubscribeUserIdList): one pane per stream fits
_PLACES = Decimal("1e-7")
_THUMBNAILS = 4  # the largest thumbnail is a quarter of the picture's width and height

Stream = tuple[str, Source]  # (userId, source)
Box = tuple[Fraction, Fraction, Fraction, Fraction]  # left, top, right, bottom


def preset_panes(layout: Layout, subscribers: Sequence[Subscriber]) -> list[Pane]:
    """The panes of layout.preset for these subscribers (layout.preset is set)."""
    streams = video_streams(subscribers)
    if layout.preset == "Grid":
        boxes = grid(min(len(streams), PANE_CAP))
    else:
        # the CRD and the model hold largeUserId to a subscribed stream with video of these presets
        assert layout.large_user_id is not None
        large: Stream = (layout.large_user_id, "Screen" if layout.preset == "ScreenShare" else "Camera")
        streams = [large, *(s for s in streams if s != large)]
        boxes = large_and_thumbnails(min(len(streams), PANE_CAP) - 1)
    return [_pane(stream, box) for stream, box in zip(streams, boxes, strict=False)]


def video_streams(subscribers: Sequence[Subscriber]) -> list[Stream]:
    """Each subscribed (userId, source) with video, once, in the order first listed."""
    return list(dict.fromkeys((s.user_id, s.source) for s in subscribers if s.media != "Audio"))


def grid(n: int) -> list[Box]:
    columns = math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns) if n else 0
    boxes = []
    for i in range(n):
        row, column = divmod(i, columns)
        in_row = min(columns, n - row * columns)
        left = Fraction(columns - in_row, 2 * columns) + Fraction(column, columns)  # the last row centred
        boxes.append((left, Fraction(row, rows), left + Fraction(1, columns), Fraction(row + 1, rows)))
    return boxes


def large_and_thumbnails(others: int) -> list[Box]:
    """The large pane first, then one thumbnail per other stream."""
    if others == 0:
        return [(Fraction(0), Fraction(0), Fraction(1), Fraction(1))]
    m = max(_THUMBNAILS, math.ceil((others + 1) / 2))  # the L around the large pane has 2m - 1 places
    edge = Fraction(m - 1, m)
    places = [(m - 1, row) for row in range(m)] + [(column, m - 1) for column in range(m - 1)]
    return [(Fraction(0), Fraction(0), edge, edge)] + [
        (Fraction(column, m), Fraction(row, m), Fraction(column + 1, m), Fraction(row + 1, m))
        for column, row in places[:others]
    ]


def _pane(stream: Stream, box: Box) -> Pane:
    left, top, right, bottom = map(_rounded, box)
    return Pane(
        user_id=stream[0],
        source=stream[1],
        left=_text(left),
        top=_text(top),
        width=_text(right - left),
        height=_text(bottom - top),
    )


def _rounded(edge: Fraction) -> Decimal:
    return (Decimal(edge.numerator) / Decimal(edge.denominator)).quantize(_PLACES, ROUND_HALF_EVEN)


def _text(value: Decimal) -> str:
    """The vendor's number format: a plain decimal string, "0" to "1", no exponent, no trailing zeros."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text

"""Single fields of an RtcRecording spec: their types, with the CRD's patterns and CEL rules mirrored.

Each message names what is wrong the way the API server's CEL message does, so a spec refused by
the model reads like one refused by the CRD (tests/api checks the two agree on a corpus).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Literal, get_args

from pydantic import AfterValidator, StringConstraints

if TYPE_CHECKING:  # annotations only: recording.py imports this module
    from rtc_recording.api.recording import Subscriber

# The recording regions. The CRDs, the chart's values schema and aliyun.ENDPOINTS spell the same
# list (a unit test holds them to it); the emulator, the other side of the wire, has its own.
Region = Literal["cn-shanghai", "ap-southeast-1", "us-east-1"]
REGIONS: tuple[Region, ...] = get_args(Region)


_DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# URL schemes are case-insensitive (RFC 3986): HTTPS:// is https://.
_HTTP_URL = r"^[hH][tT][tT][pP][sS]?://\S+$"
# spec.notify.url: also no user information (the operator may relay to it).
_NOTIFY_URL = r"^[hH][tT][tT][pP][sS]?://[^/?#@\s]+([/?#]\S*)?$"
# The CRD's CEL regexes, written without backslashes so that CEL and Python read them alike.
_FRACTION = re.compile(r"^(0*[.][0-9]+|0+([.][0-9]*)?|0*1([.]0*)?)$")
_DIRECTORY = re.compile(r"^[A-Za-z0-9_-]+$")
_OSS_REGION_ENDPOINT = re.compile(rf"^oss-({'|'.join(REGIONS)})(-internal)?[.]aliyuncs[.]com$")
_REGION_NAMES = f"{', '.join(REGIONS[:-1])} or {REGIONS[-1]}"  # "cn-shanghai, ap-southeast-1 or us-east-1"
_NAME_VARIABLES = ("{AppId}", "{ChannelId}", "{UserId}", "{RecordMode}", "{SourceType}", "{StreamType}", "{StartTime}")
_SLICE_VARIABLES = (*_NAME_VARIABLES, "{Sequence}")
UPLOAD_FORMATS = ("SLICE", "HLS", "MP4", "MP3")


def one_rule(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def first(messages) -> str:
    """The CRD's messageExpressions name the first offending element: list.map(...).filter(m, m != '')[0]."""
    return next(m for m in messages if m)


def _human(variables: tuple[str, ...]) -> str:
    return ", ".join(variables[:-1]) + " and " + variables[-1]


def _name_rules(*required: str, variables: tuple[str, ...], what: str):
    """fileNamePattern and sliceNamePattern: the CRD's three rules, every failing one reported."""

    def check(pattern: str) -> str:
        tokens = pattern.split("_")
        problems = []
        if not all(t in variables for t in tokens):
            problems.append(
                first(
                    ""
                    if t in variables
                    else f'"{t}" is not a variable: a {what} is variables joined by "_", with no '
                    f"other text, from {_human(variables)}, each variable at most once"
                    for t in tokens
                )
            )
        if not all(pattern.find(v) == pattern.rfind(v) for v in variables):
            problems.append(
                first(
                    ""
                    if pattern.find(v) == pattern.rfind(v)
                    else f"{v} appears more than once: each variable may appear at most once"
                    for v in variables
                )
            )
        if not all(v in pattern for v in required):
            problems.append(
                f"must contain {' and '.join(required)} (the page requires "
                f"{'both' if len(required) > 1 else 'it'} in a pattern of one's own)"
            )
        one_rule(not problems, "; ".join(problems))
        return pattern

    return AfterValidator(check)


def _matching(regex: re.Pattern, message: str):
    def check(value: str) -> str:
        one_rule(bool(regex.fullmatch(value)), message)
        return value

    return AfterValidator(check)


def _oss_endpoint_rule(endpoint: str) -> str:
    one_rule(
        bool(_OSS_REGION_ENDPOINT.fullmatch(endpoint)),
        f"{endpoint} is not the OSS endpoint of a recording region: use oss-<region>.aliyuncs.com or "
        f"oss-<region>-internal.aliyuncs.com (region {_REGION_NAMES}), without scheme; "
        "the region of the endpoint must match the recording region, and a custom domain (CNAME) names no region",
    )
    return endpoint


def _upload_format_rule(value: str) -> str:
    one_rule(value.upper() in UPLOAD_FORMATS, "must be SLICE, HLS, MP4 or MP3, in any case")
    return value


def upload_formats_once(formats: list[str]) -> list[str]:
    upper = [f.upper() for f in formats]
    twice = [u for u in upper if upper.count(u) > 1]
    if twice:
        raise ValueError(f"{twice[0]} is named more than once (formats are case-insensitive)")
    return formats


def joined_path_rule(dirs: list[str]) -> list[str]:
    one_rule(
        sum(map(len, dirs)) + len(dirs) <= 128,
        "the joined path (directories plus one slash each) must be at most 128 characters",
    )
    return dirs


def unique(key):
    """A list-type map or set: the apiserver (server-side apply) refuses duplicate keys."""

    def check(items: list) -> list:
        keys = [key(item) for item in items]
        for k in keys:
            one_rule(keys.count(k) == 1, f"duplicate entries for key [{k}]")
        return items

    return AfterValidator(check)


def subscribed_once(subscribers: list[Subscriber]) -> list[Subscriber]:
    """The CRD's rule on spec.subscribers (an atomic list: the rule, not a map key, says why)."""
    keys = [(s.user_id, s.media, s.source) for s in subscribers]
    twice = [k for k in keys if keys.count(k) > 1]
    if twice:
        user, media, source = twice[0]
        raise ValueError(
            f"{user} is subscribed twice with media {media} and source {source}: the second entry is the same stream, "
            "so it would record nothing new (in Individual mode it would write the same files); remove it, or change "
            "its media or source to record another of the user's streams"
        )
    return subscribers


Id = Annotated[str, StringConstraints(min_length=1, max_length=64)]
DnsName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=_DNS_NAME)]
DnsLabel = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
HttpUrl = Annotated[str, StringConstraints(max_length=2048, pattern=_HTTP_URL)]
NotifyUrl = Annotated[str, StringConstraints(max_length=2048, pattern=_NOTIFY_URL)]
Fraction = Annotated[
    str,
    StringConstraints(max_length=32),
    _matching(
        _FRACTION, 'must be a decimal number from 0 to 1 written as a string, e.g. "0", "0.5", ".5", "0.3333333" or "1"'
    ),
]


Directory = Annotated[
    str,
    StringConstraints(min_length=1, max_length=127),
    _matching(
        _DIRECTORY,
        'a directory name may contain only letters (a-z, A-Z), digits, "-" and "_": '
        'no "/", "." or spaces (give each level as its own element)',
    ),
]


# 79 and 90: the longest valid patterns (every variable once).
FileNamePattern = Annotated[
    str,
    StringConstraints(max_length=79),
    _name_rules("{StartTime}", variables=_NAME_VARIABLES, what="file name pattern"),
]


SliceNamePattern = Annotated[
    str,
    StringConstraints(max_length=90),
    _name_rules("{StartTime}", "{Sequence}", variables=_SLICE_VARIABLES, what="slice name pattern"),
]


OssEndpoint = Annotated[str, StringConstraints(min_length=1, max_length=253), AfterValidator(_oss_endpoint_rule)]
UploadFormat = Annotated[str, StringConstraints(max_length=16), AfterValidator(_upload_format_rule)]

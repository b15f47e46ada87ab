"""The operator's one timestamp format: RFC 3339 in UTC, to the second, with a Z
("2026-11-26T12:00:00Z"). It is Kubernetes' metav1.Time (status times, Events, annotations) and the
vendor's x-acs-date header. A Lease's renewTime is a MicroTime: the same with microseconds.

Pure: no I/O, nothing of the operator imported. (The emulator, the other side of the wire, reads
x-acs-date with its own copy of the format.)
"""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"
MICRO_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # metav1.MicroTime


def stamp(at: datetime) -> str:
    """`at` as a timestamp; a naive datetime is taken to be UTC already."""
    return (at.astimezone(UTC) if at.tzinfo else at).strftime(FORMAT)


def now() -> str:
    return stamp(datetime.now(UTC))


def micro_now() -> str:
    return datetime.now(UTC).strftime(MICRO_FORMAT)


def parse(text: str) -> datetime:
    """A timestamp as Kubernetes or a credential plugin writes it (RFC 3339, any offset, any fraction), in UTC."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)

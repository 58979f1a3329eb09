"""How a lateness is said, the same in ``grade``'s summary, ``report``, ``grades.csv`` and the
summary page."""

from __future__ import annotations


def duration(seconds: float) -> str:
    """A lateness a person reads: "18 s", "2 h 24 min", "1 d 2 h" (whole seconds)."""
    seconds = round(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"

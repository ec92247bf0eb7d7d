"""The canonical emotion names and the emotion sets users choose from.

Every corpus maps its own labels onto these names once, in its module's label table.
"""
from __future__ import annotations

from collections.abc import Sequence

#: Every canonical emotion a corpus reader may produce, in a fixed order.
ALL_EMOTIONS: tuple[str, ...] = (
    "angry", "happy", "sad", "fearful", "disgust", "neutral", "calm", "surprised", "boredom",
)

#: The default label set (the original project's six classes).
DEFAULT_EMOTIONS: tuple[str, ...] = ("angry", "happy", "sad", "fearful", "disgust", "neutral")


def resolve_emotions(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """Turn a user's emotion choice into a tuple of canonical names.

    ``None`` or ``"default"`` gives the default six, ``"all"`` every canonical emotion, and a
    comma-separated string or a sequence an explicit set (kept in canonical order).
    Raises ValueError naming any unknown emotion and the valid choices.
    """
    if spec is None or spec == "default":
        return DEFAULT_EMOTIONS
    if spec == "all":
        return ALL_EMOTIONS
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec)]
    names = [n for n in names if n]
    unknown = sorted(set(names) - set(ALL_EMOTIONS))
    if unknown or not names:
        raise ValueError(
            f"unknown emotion(s) {', '.join(unknown) or '(none given)'}; choose 'default', 'all' "
            f"or a comma-separated list of: {', '.join(ALL_EMOTIONS)}"
        )
    return tuple(e for e in ALL_EMOTIONS if e in names)

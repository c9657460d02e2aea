"""Parsing of `--input-shape` values: `1x3x224x224` or `NAME=1x3x224x224`."""

from __future__ import annotations

from edgec.errors import EdgecError


def parse_dims(text: str, option: str = "--input-shape") -> tuple[int, ...]:
    """'1x3x224x224' -> (1, 3, 224, 224); every dim a positive integer."""
    parts = text.strip().lower().split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if not dims or any(d < 1 for d in dims):
        raise EdgecError(f"{option} '{text}': expected positive integers joined by 'x', e.g. 1x3x224x224")
    return dims


def parse_input_shapes(values: list[str] | tuple[str, ...]) -> dict[str | None, tuple[int, ...]]:
    """['input=1x3x8x8', ...] -> {'input': (1, 3, 8, 8)}; a value without NAME= maps to key None."""
    shapes: dict[str | None, tuple[int, ...]] = {}
    for value in values:
        name, sep, dims = value.rpartition("=")
        key = name if sep else None
        if sep and not name:
            raise EdgecError(f"--input-shape '{value}': empty input name before '='")
        if key in shapes:
            raise EdgecError(f"--input-shape given twice for {'input ' + repr(key) if key else 'the input'}")
        shapes[key] = parse_dims(dims)
    return shapes

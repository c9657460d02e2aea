"""Parsing of `--input-shape` values: `1x3x224x224`, `NAME=1x3x224x224`, or with named symbolic dims,
`NAME=Nx3x224x224` (the dim stays symbolic, called N: fix H and W, keep the batch dynamic)."""

from __future__ import annotations

import re

from edgec.errors import EdgecError

_DIM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_dims(text: str, option: str = "--input-shape", symbolic: bool = False) -> tuple[int | str, ...]:
    """'1x3x224x224' -> (1, 3, 224, 224): positive integers joined by 'x'; with `symbolic`, a dim may also be a
    name (letters, digits and _, starting with a letter, no 'x'), which stays a symbolic dim of that name."""
    parts = text.strip().split("x")
    dims: list[int | str] = []
    for part in parts:
        if part.isdigit() and int(part) >= 1:
            dims.append(int(part))
        elif symbolic and _DIM_NAME.match(part):
            dims.append(part)
        else:
            dims = []
            break
    if not dims:
        what = "positive integers or dim names" if symbolic else "positive integers"
        example = "1x3x224x224 or Nx3x224x224" if symbolic else "1x3x224x224"
        raise EdgecError(f"{option} '{text}': expected {what} joined by 'x', e.g. {example}")
    return tuple(dims)


def parse_input_shapes(values: list[str] | tuple[str, ...],
                       symbolic: bool = True) -> dict[str | None, tuple[int | str, ...]]:
    """['input=1x3x8x8', 'mask=Nx8'] -> {'input': (1, 3, 8, 8), 'mask': ('N', 8)}; a value without NAME= maps
    to key None. `symbolic=False`: concrete dims only (what `bench` feeds)."""
    shapes: dict[str | None, tuple[int | str, ...]] = {}
    for value in values:
        name, sep, dims = value.rpartition("=")
        key = name if sep else None
        if sep and not name:
            raise EdgecError(f"--input-shape '{value}': empty input name before '='")
        if key in shapes:
            raise EdgecError(f"--input-shape given twice for {'input ' + repr(key) if key else 'the input'}")
        shapes[key] = parse_dims(dims, symbolic=symbolic)
    return shapes

"""Whether Julia is set up for pyzygote, decided without starting Julia."""

from __future__ import annotations


def julia_is_set_up() -> bool:
    return False

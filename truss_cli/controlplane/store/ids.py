"""Short random ids, shaped like Baseten's model and deployment ids (8 lowercase alphanumerics).

36**8 (about 2.8e12) values: the chance that two of 10,000 rows collide is about 2e-5, and a
collision is a primary-key error, never a silent overwrite. Random rather than sequential so an
id reveals nothing about how many models exist and cannot be guessed from a neighbour's.
"""

from __future__ import annotations

import secrets

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 8


def new_id() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(ID_LENGTH))

"""Hooks of the schemathesis run (daemon/tests/schemathesis.sh).

The document lists the photo types a multipart part may declare; schemathesis cannot make bytes
of every one of them by itself, so each gets a strategy: a few arbitrary bytes, which the daemon
refuses as the document says (415) unless they happen to be the photo they claim to be.
"""

import schemathesis
from hypothesis import strategies as st

for media_type in ("image/jpeg", "image/png", "image/webp", "image/heif"):
    schemathesis.openapi.media_type(media_type, st.binary(min_size=1, max_size=64))

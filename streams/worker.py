"""The worker entry point: ``faust -A streams.worker worker`` (or ``spm worker``).

Builds the app from the environment's settings after creating the topics it needs (the broker
does not create topics itself), so a worker with a fresh prefix starts on an empty cluster.
"""

from __future__ import annotations

from streams.app import create_app
from streams.settings import get_settings
from streams.topics import ensure_topics

settings = get_settings()
ensure_topics(settings)
app = create_app(settings)

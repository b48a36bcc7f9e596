"""Benchmarks (``make bench``): each module is a script, ``python -m bench.<name>``.

They start the API, the bot and the dev server with fixed, short secrets: development mode
(``TRANSCRIBER_DEV_MODE``, see :mod:`core.credentials`) accepts them, in this process and the
servers it starts.
"""

import os

os.environ.setdefault("TRANSCRIBER_DEV_MODE", "1")

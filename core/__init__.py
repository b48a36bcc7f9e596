"""What every process of the product shares (the API, the bot, the storage package).

Modules:

* ``credentials``: secrets anyone could guess, refused at start unless ``TRANSCRIBER_DEV_MODE``
  is on (the API, the bot and the dev server check them).
* ``errors``: the one exception tree of the product (``TranscriberError`` and below), with
  ``.retryable``; the API maps it to HTTP in ``api.errors``.
* ``logs``: log-line formatting (text or JSON) for every process.
* ``transcripts``: transcripts as documents (SRT, WebVTT, TXT, DOCX, JSON), pure functions over
  segment rows; the API's downloads and the bot's file transcriber render through them.

``core`` imports nothing from ``api``, ``bot`` or ``store``.
"""

"""Shared test helpers: database (``db``), network namespaces (``netns``), audio (``audio``)."""

"""HTTP side of transcript downloads: content types and file names per format.

The renderers themselves live in :mod:`core.transcripts` (the bot uses them too).
"""

from __future__ import annotations

import re

from core.transcripts import ExportFormat

__all__ = ["CONTENT_TYPES", "content_disposition", "filename"]

CONTENT_TYPES: dict[ExportFormat, str] = {
    ExportFormat.SRT: "application/x-subrip; charset=utf-8",
    ExportFormat.VTT: "text/vtt; charset=utf-8",
    ExportFormat.TXT: "text/plain; charset=utf-8",
    ExportFormat.DOCX: "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ExportFormat.JSON: "application/json; charset=utf-8",
}


def filename(slug: str, fmt: ExportFormat) -> str:
    """ASCII file name for Content-Disposition (slugs are ASCII by construction)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", slug) or "transcript"
    return f"{safe}.{fmt.value}"


def content_disposition(slug: str, fmt: ExportFormat) -> str:
    return f'attachment; filename="{filename(slug, fmt)}"'

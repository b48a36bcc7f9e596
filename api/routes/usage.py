"""Usage and cost: per session (rows + totals), and reports of a space or a user by day,
participant, user or session over a date range; JSON or CSV.

Billing follows storage (``store.money``): each participant track bills
``ceil(audio_seconds / 60)`` minutes at the price it started with; totals are sums of rows.
Usage of deleted sessions stays in space and user reports (billing history).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence

from aiohttp import web
from pydantic import BaseModel

from api.auth import Principal, Role
from api.context import context, principal
from api.errors import Forbidden, ValidationFailed
from api.http import json_model, parse_body, parse_query
from api.openapi import Operation, Reply
from api.ratelimit import enforce
from api.routes.common import scoped_session
from api.schemas import (
    MAX_REPORT_DAYS,
    GroupBy,
    QuotaOut,
    QuotaUpdate,
    SessionUsage,
    TrackUsageOut,
    UsageFilterQuery,
    UsageFormatQuery,
    UsageGroupOut,
    UsageReport,
    UsageReportQuery,
    UsageSummary,
    UsageSummaryOut,
    UsageTotals,
)
from store import records

_CSV = {"text/csv": {"type": "string"}}


def _totals(items: Iterable[records.UsageTotals]) -> list[UsageTotals]:
    return [UsageTotals.model_validate(t, from_attributes=True) for t in items]


# a spreadsheet reads a cell starting with one of these as a formula (or strips it and then does)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A cell safe to open in a spreadsheet: text that would start a formula gets a leading
    ``'`` (OWASP's CSV injection advice); numbers, dates and other values pass unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def csv_response(rows: Sequence[BaseModel], model: type[BaseModel], name: str) -> web.Response:
    """Rows as RFC 4180 CSV with a header line, UTF-8; text cells neutralised (:func:`csv_cell`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    columns = list(model.model_fields)
    writer.writerow(columns)
    for row in rows:
        # text fields are str in Python; Decimals and dates are only strings once in JSON form
        data = row.model_dump(mode="json")
        raw = row.model_dump()
        writer.writerow(
            [
                "" if data[c] is None else csv_cell(data[c]) if isinstance(raw[c], str) else data[c]
                for c in columns
            ]
        )
    return web.Response(
        body=buffer.getvalue().encode("utf-8"),
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{name}"',
        },
    )


async def session_usage(request: web.Request) -> web.Response:
    scoped = await scoped_session(request)
    query = parse_query(request, UsageFormatQuery)
    if query.format == "csv":
        enforce(request, "export")
    usage = await context(request).store.usage.session_usage(scoped.session.id)
    rows = [TrackUsageOut.model_validate(r, from_attributes=True) for r in usage.rows]
    if query.format == "csv":
        return csv_response(rows, TrackUsageOut, f"{scoped.session.slug}-usage.csv")
    return json_model(
        SessionUsage(slug=scoped.session.slug, rows=rows, totals=_totals(usage.totals))
    )


def report_range(query: UsageFilterQuery, today: dt.date) -> tuple[dt.date, dt.date]:
    """Inclusive UTC days; defaults: this month so far, or the month of the given end."""
    date_to = query.date_to or max(today, query.date_from or today)
    date_from = query.date_from or date_to.replace(day=1)
    if date_to >= dt.date.max or date_from >= dt.date.max:
        # the report ends at midnight after date_to: that day must exist
        raise ValidationFailed(f"to: must be before {dt.date.max.isoformat()}")
    if date_to < date_from:
        raise ValidationFailed("to: is before from")
    if (date_to - date_from).days >= MAX_REPORT_DAYS:
        raise ValidationFailed(f"to: the range is longer than {MAX_REPORT_DAYS} days")
    return date_from, date_to


def _group_out(group_by: GroupBy, group: records.UsageGroup) -> UsageGroupOut:
    key = {
        GroupBy.DAY: group.day.isoformat() if group.day else None,
        GroupBy.WEEK: _iso_week(group.day) if group.day else None,
        GroupBy.MONTH: group.day.strftime("%Y-%m") if group.day else None,
        GroupBy.USER: group.user_id,
        GroupBy.SESSION: group.session_slug,
        GroupBy.PARTICIPANT: group.participant_identity,
    }[group_by]
    t = group.totals
    return UsageGroupOut(
        key=key or "",
        day=group.day,
        user_id=group.user_id,
        session_slug=group.session_slug,
        session_title=group.session_title,
        participant_identity=group.participant_identity,
        participant_name=group.participant_name,
        currency=t.currency,
        tracks=t.tracks,
        audio_seconds=t.audio_seconds,
        speech_seconds=t.speech_seconds,
        billed_minutes=t.billed_minutes,
        total_cost=t.total_cost,
    )


def _iso_week(day: dt.date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def _report_user(who: Principal, query: UsageFilterQuery) -> str | None:
    """The user filter: any for admins; members see their own usage only."""
    if who.role >= Role.ADMIN:
        return query.user_id
    if query.user_id is not None and query.user_id != who.user_id:
        raise Forbidden("members may only see their own usage")
    return who.user_id


def _report_window(query: UsageFilterQuery) -> tuple[dt.date, dt.date, dt.datetime, dt.datetime]:
    date_from, date_to = report_range(query, dt.datetime.now(dt.UTC).date())
    start = dt.datetime.combine(date_from, dt.time(), dt.UTC)
    end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(), dt.UTC)
    return date_from, date_to, start, end


async def usage_report(request: web.Request) -> web.Response:
    who = principal(request)
    space_id = who.require_space()
    query = parse_query(request, UsageReportQuery)
    if query.format == "csv":
        enforce(request, "export")
    user_id = _report_user(who, query)
    date_from, date_to, start, end = _report_window(query)
    report = await context(request).store.usage.usage_report(
        start=start,
        end=end,
        group_by=records.UsageGroupBy(query.group_by.value),
        space_id=space_id,
        user_id=user_id,
    )
    rows = [_group_out(query.group_by, g) for g in report.groups]
    if query.format == "csv":
        name = f"usage-{date_from.isoformat()}-{date_to.isoformat()}-{query.group_by.value}.csv"
        return csv_response(rows, UsageGroupOut, name)
    return json_model(
        UsageReport(
            space_id=space_id,
            date_from=date_from,
            date_to=date_to,
            group_by=query.group_by,
            user_id=user_id,
            rows=rows,
            totals=_totals(report.totals),
        )
    )


async def usage_summary(request: web.Request) -> web.Response:
    who = principal(request)
    space_id = who.require_space()
    query = parse_query(request, UsageFilterQuery)
    user_id = _report_user(who, query)
    date_from, date_to, start, end = _report_window(query)
    summary = await context(request).store.usage.usage_summary(
        start=start, end=end, space_id=space_id, user_id=user_id
    )
    rows = [UsageSummaryOut.model_validate(t, from_attributes=True) for t in summary]
    if query.format == "csv":
        enforce(request, "export")
        name = f"usage-summary-{date_from.isoformat()}-{date_to.isoformat()}.csv"
        return csv_response(rows, UsageSummaryOut, name)
    return json_model(
        UsageSummary(
            space_id=space_id, date_from=date_from, date_to=date_to, user_id=user_id, totals=rows
        )
    )


async def _quota(request: web.Request, space_id: str, *, with_use: bool = True) -> QuotaOut:
    ctx = context(request)
    own, minutes = await ctx.store.usage.space_quota_override(space_id)
    return QuotaOut(
        space_id=space_id,
        monthly_minutes=minutes if own else ctx.limits.monthly_minutes_quota,
        source="space" if own else "default",
        used_minutes=await ctx.store.usage.monthly_minutes_used(space_id) if with_use else None,
    )


async def get_quota(request: web.Request) -> web.Response:
    """The quota for everyone in the space; the space's use only for admins (a member's own use
    is in ``GET /api/usage``)."""
    who = principal(request)
    space_id = who.require_space()
    return json_model(await _quota(request, space_id, with_use=who.role >= Role.ADMIN))


async def put_quota(request: web.Request) -> web.Response:
    who = principal(request)
    who.require(Role.SERVICE)
    space_id = who.require_space()
    body = await parse_body(request, QuotaUpdate)
    await context(request).store.usage.set_space_quota(space_id, body.monthly_minutes)
    return json_model(await _quota(request, space_id))


async def delete_quota(request: web.Request) -> web.Response:
    who = principal(request)
    who.require(Role.SERVICE)
    space_id = who.require_space()
    await context(request).store.usage.clear_space_quota(space_id)
    return json_model(await _quota(request, space_id))


OPERATIONS = [
    Operation(
        "GET", "/api/sessions/{slug}/usage", session_usage, "getSessionUsage",
        "Usage and cost of one session: a row per track, totals; ?format=csv", "usage",
        replies=(Reply(200, "Rows and totals (or CSV rows)", SessionUsage, media=_CSV),),
        query=UsageFormatQuery, errors=(429,),
    ),
    Operation(
        "GET", "/api/usage", usage_report, "getUsageReport",
        "Usage report of the space (admins) or the caller (members), grouped, over dates",
        "usage", replies=(Reply(200, "Groups and totals (or CSV rows)", UsageReport, media=_CSV),),
        query=UsageReportQuery, errors=(429,),
    ),
    Operation(
        "GET", "/api/usage/summary", usage_summary, "getUsageSummary",
        "Totals of the usage report's filter: sessions, minutes, cost, average session length",
        "usage",
        replies=(Reply(200, "Totals per currency (or CSV rows)", UsageSummary, media=_CSV),),
        query=UsageFilterQuery,
    ),
    Operation(
        "GET", "/api/quota", get_quota, "getQuota",
        "The space's monthly transcription quota and (admins) this month's use", "usage",
        replies=(Reply(200, "Quota and use", QuotaOut),),
        description="Members see the quota only (used_minutes is null): the space's use is "
        "admin information; a member's own use is in GET /api/usage.",
    ),
    Operation(
        "PUT", "/api/quota", put_quota, "setQuota",
        "Set the space's own monthly quota (admin key only)", "usage",
        replies=(Reply(200, "Quota and use", QuotaOut),), body=QuotaUpdate,
    ),
    Operation(
        "DELETE", "/api/quota", delete_quota, "clearQuota",
        "Return the space to the default quota (admin key only)", "usage",
        replies=(Reply(200, "Quota and use", QuotaOut),),
    ),
]  # fmt: skip

"""Storage: SQLAlchemy 2 async models, Alembic migrations, the repository the API and the bot use,
and the embedded PostgreSQL that serves when ``DATABASE_URL`` is unset.

Modules: ``models`` (schema), ``repository`` (every query), ``records`` (values in and out),
``engine`` (engine/session factories), ``database`` (start-up: resolve, migrate, connect),
``embedded`` (embedded server), ``migrate`` (Alembic from code and ``transcriber migrate``),
``notify`` (LISTEN/NOTIFY for jobs), ``money`` (billing arithmetic), ``errors``, ``settings``.
"""

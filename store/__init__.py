"""Storage shared by the API and the bot: SQLAlchemy 2 async models, Alembic migrations glue,
focused stores over one base, and the embedded PostgreSQL that serves when ``DATABASE_URL`` is
unset.

``Store(sessionmaker)`` (:mod:`store.stores`) holds the stores:

* ``sessions`` (:mod:`store.sessions`): sessions, the lifecycle sweeper, participants;
* ``transcripts`` (:mod:`store.transcripts`): final segments, pages, search, exports;
* ``usage`` (:mod:`store.usage`, SQL of reports in :mod:`store.reports`): track usage, reports,
  quotas, limits;
* ``jobs`` (:mod:`store.jobs`): transcription jobs and their notifications.

Every store is a :class:`store.base.StoreBase`: one transaction per method (or one read without
a transaction), foreign exceptions translated once into :mod:`core.errors`, rows mapped into the
records of :mod:`store.records` by column name.

Other modules: ``models`` (schema), ``engine`` (engine/session factories), ``database``
(start-up: resolve, migrate, connect), ``embedded`` (embedded server), ``migrate`` (Alembic from
code and ``transcriber migrate``), ``notify`` (LISTEN/NOTIFY for jobs), ``money`` (billing
arithmetic), ``enums``, ``settings`` (database, and the price and limits both processes read).
"""

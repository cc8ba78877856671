"""The catalog: SQLAlchemy models, sessions, queries, retention; migrations live in db/migrations/."""

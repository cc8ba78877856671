"""The catalog: models, sessions, queries and retention; migrations are in db/migrations/."""

"""Alembic environment of the catalog: the URL comes from whoever runs the migrations.

slurm_ckpt.db.migrate passes it in the config's attributes; a plain `alembic`
command line needs `sqlalchemy.url`. The settings are never read here.
"""

from __future__ import annotations

from alembic import context

from slurm_ckpt.db.models import Base
from slurm_ckpt.db.session import make_engine
from slurm_ckpt.errors import CatalogSchemaError

config = context.config


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise CatalogSchemaError(
            "catalog migrations need the database URL: use slurm_ckpt.db.migrate "
            "or `ckpt-admin db`, or set sqlalchemy.url"
        )
    return str(url)


def run_offline() -> None:
    context.configure(url=_url(), target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                compare_type=True,
                # SQLite alters tables by copying them; batch mode does that for us.
                render_as_batch=connection.dialect.name == "sqlite",
                # Our SQLite connections emit BEGIN themselves, so DDL is transactional there too.
                transactional_ddl=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()

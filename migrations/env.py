"""Alembic environment for the fqvae registry.

fqvae runs migrations through `fqvae_cli.registry.migrate`, which passes an open connection inside a
write transaction (so an upgrade is all-or-nothing on SQLite and PostgreSQL alike). Run by hand with
`alembic -c migrations/alembic.ini ...`, it connects to sqlalchemy.url from the ini file if set, else to
$FQVAE_DB, else to the workspace registry."""

from __future__ import annotations

from alembic import context

from fqvae_cli.registry.schema import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    from fqvae_cli import paths

    return config.get_main_option("sqlalchemy.url") or paths.registry_url()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif config.attributes.get("connection") is not None:
    _configure(config.attributes["connection"])
else:
    from fqvae_cli.registry.migrate import make_engine

    engine = make_engine(_url(), foreign_keys=False, pooled=False)
    try:
        with engine.connect() as conn:
            _configure(conn)
    finally:
        engine.dispose()

"""Alembic's environment for the history store: online only, on the connection history.db hands over."""

from alembic import context
from sqlalchemy import create_engine

from history.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # the alembic command line: `alembic -x url=postgresql+psycopg://… upgrade head`
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    with create_engine(url).connect() as conn:
        context.configure(connection=conn, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
        conn.commit()
else:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()

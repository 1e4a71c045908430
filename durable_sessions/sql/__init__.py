"""The SQL adapter: schema, migrations and the store on SQLite and PostgreSQL."""

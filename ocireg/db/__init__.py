"""The metadata store: schema, migrations and one backend per database."""

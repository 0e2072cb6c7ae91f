"""The results registry: every run's config, metrics and artifacts in one SQL database.

`store.Registry` is the API (the only code that reads and writes rows), `schema` the tables,
`migrate` engines, schema versions and upgrades."""

"""The `mailer` command. Each module here with `register(app)` adds its commands."""

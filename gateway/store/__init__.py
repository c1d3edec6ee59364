"""The store: readings kept in the SQLite outbox until the broker has them."""

"""The core every layer may use: the reading model, errors, device health, clock, backoff."""

"""The running gateway: app, supervisor, scheduler, watchdog, notify, metrics."""

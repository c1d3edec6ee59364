"""Device drivers: each one an ``async with`` object that turns a device into samples."""

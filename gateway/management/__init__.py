"""Remote management: commands from the platform and their replies."""

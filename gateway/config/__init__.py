"""The gateway's config: TOML and environment parsed once into frozen typed models."""

"""One folder per paper of the course; each registers its presets, layers and claims on import."""

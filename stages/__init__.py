"""DVC stage scripts: each reads its section of params.yaml and calls pipeline/."""

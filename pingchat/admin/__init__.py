"""Live administration: the SSH manhole and its helpers."""

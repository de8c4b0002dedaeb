"""The soak: a long mixed load against one pingchat server (``python -m bench.soak``)."""

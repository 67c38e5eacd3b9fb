"""The rsync agent against a real `rsync --daemon` (module per app, authenticated user)."""

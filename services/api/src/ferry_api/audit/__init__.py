"""`ferry-api audit`: read the event log directly and check it (hash chain, every read model
rebuilt and compared), replay it to a moment, list what went live on a host, export it."""

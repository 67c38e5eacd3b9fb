"""What follows the log or the bus in the background, each started by bootstrap.py (none imports
it): the process manager, report ingest, host-sync deadlines, webhooks and their deliveries,
agents' heartbeats."""

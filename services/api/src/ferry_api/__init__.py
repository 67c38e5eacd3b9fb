"""Ferry's API, the only writer of the event log. The folders tell the flow:

http/ -> commands/ -> domain/       a request: load, decide, append
workers/ (started by bootstrap.py)  what follows the log and the bus
readmodels/                         projections and what the routes read
runtime.py                          the ports every layer gets (store, bus, projector)
"""

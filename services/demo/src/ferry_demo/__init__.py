"""Ferry's demo (`make run`): composes the API and the three agents in one process."""

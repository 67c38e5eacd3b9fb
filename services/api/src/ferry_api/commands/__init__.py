"""What a caller asks (the routes, `ferry-api create-admin`, the demo): submit and act on
tickets, publish (release versions), apps, users and their tokens, webhooks. Each command loads
what it decides on, lets the domain decide, and appends the events: load -> decide -> append."""

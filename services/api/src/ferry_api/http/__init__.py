"""The API over HTTP: the FastAPI app (asgi.py), one router per resource (routes/), who is calling
(auth.py), the one mapping of errors to status codes (errors.py), request metrics, and the web
UI's static files (web/)."""

"""The demo: a Progress-like SQLite source (hyphenated names, reserved words, composite keys) and its changes."""

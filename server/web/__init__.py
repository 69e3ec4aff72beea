"""Read-only HTTP pages of the scoring database: leaderboards and per-submission reports (`server.web.http`)."""

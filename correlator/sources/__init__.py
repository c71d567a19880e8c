"""Where events come from: log files on disk (the embedded default)."""

"""Where incidents and kept-aside records are written."""

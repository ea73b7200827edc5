"""Views: one typed analysis result -> what a command writes (files by name) and shows (terminal)."""

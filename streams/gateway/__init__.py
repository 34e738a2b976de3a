"""The gateway: the front door for game frontends (issue 13)."""

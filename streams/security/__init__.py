"""Who may do what: command signatures, the permission policy, and (at the gateway)
tokens, rate limits and the audit trail.

The gateway verifies who a sender is and signs each command it admits
(:mod:`.signing`); the physics worker verifies that signature and applies
:mod:`.policy` again on the world's own state, so a raw Kafka producer can
neither impersonate a player nor act beyond a player's rights.
"""
